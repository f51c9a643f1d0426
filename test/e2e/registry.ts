/**
 * A minimal Docker Registry (HTTP API v2) in memory, for `docker plugin push` and `docker plugin
 * upgrade` on a machine with no registry: blob uploads (monolithic or chunked, cross-repo mount
 * refused), blob HEAD/GET, manifest PUT/HEAD/GET by tag or digest. No auth; dockerd treats
 * 127.0.0.0/8 as an insecure (plain HTTP) registry by default. Tests only.
 */
import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

interface Manifest { readonly body: Buffer; readonly type: string; readonly digest: string }

export interface FakeRegistry {
  /** host:port, the prefix of plugin references pushed here (e.g. `127.0.0.1:5123/shiplog:next`). */
  readonly host: string;
  /** Requests served, as `METHOD path` (for assertions and debugging). */
  readonly log: readonly string[];
  close(): Promise<void>;
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export async function startRegistry(): Promise<FakeRegistry> {
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, Manifest>();
  const uploads = new Map<string, Buffer[]>();
  const log: string[] = [];

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://registry');
      const body = Buffer.concat(chunks);
      const method = req.method ?? 'GET';
      log.push(`${method} ${url.pathname}${url.search}`);
      res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
      const send = (status: number, headers: Record<string, string | number> = {}, payload?: Buffer): void => {
        res.writeHead(status, { 'Content-Length': payload?.length ?? 0, ...headers });
        res.end(method === 'HEAD' ? undefined : payload);
      };
      const notFound = (code: string): void => {
        const err = Buffer.from(JSON.stringify({ errors: [{ code, message: code.toLowerCase().replace(/_/g, ' ') }] }));
        res.writeHead(404, { 'Content-Type': 'application/json', 'Content-Length': err.length });
        res.end(method === 'HEAD' ? undefined : err);
      };

      if (url.pathname === '/v2/' || url.pathname === '/v2') return send(200, { 'Content-Type': 'application/json' }, Buffer.from('{}'));

      let m = /^\/v2\/(.+)\/blobs\/uploads\/([^/]*)$/.exec(url.pathname);
      if (m !== null) {
        const name = m[1] as string;
        let id = m[2] as string;
        if (method === 'POST') {
          id = randomUUID();
          uploads.set(id, [body]);
          const digest = url.searchParams.get('digest');
          if (digest !== null) return finish(name, id, digest);
          return send(202, { 'Location': `/v2/${name}/blobs/uploads/${id}`, 'Docker-Upload-UUID': id, 'Range': '0-0' });
        }
        const parts = uploads.get(id);
        if (parts === undefined) return notFound('BLOB_UPLOAD_UNKNOWN');
        parts.push(body);
        if (method === 'PATCH') {
          const size = parts.reduce((n, p) => n + p.length, 0);
          return send(202, { 'Location': `/v2/${name}/blobs/uploads/${id}`, 'Docker-Upload-UUID': id, 'Range': `0-${Math.max(0, size - 1)}` });
        }
        if (method === 'PUT') return finish(name, id, url.searchParams.get('digest') ?? '');
        return send(405);
      }

      m = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
      if (m !== null) {
        const blob = blobs.get(m[2] as string);
        if (blob === undefined) return notFound('BLOB_UNKNOWN');
        return send(200, { 'Content-Type': 'application/octet-stream', 'Docker-Content-Digest': m[2] as string }, blob);
      }

      m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url.pathname);
      if (m !== null) {
        const key = `${m[1]}@${m[2]}`;
        if (method === 'PUT') {
          const digest = sha256(body);
          const manifest = { body, type: req.headers['content-type'] ?? 'application/vnd.docker.distribution.manifest.v2+json', digest };
          manifests.set(key, manifest);
          manifests.set(`${m[1]}@${digest}`, manifest);
          return send(201, { 'Location': `/v2/${m[1]}/manifests/${digest}`, 'Docker-Content-Digest': digest });
        }
        const manifest = manifests.get(key);
        if (manifest === undefined) return notFound('MANIFEST_UNKNOWN');
        return send(200, { 'Content-Type': manifest.type, 'Docker-Content-Digest': manifest.digest }, manifest.body);
      }
      return notFound('NAME_UNKNOWN');

      function finish(name: string, id: string, digest: string): void {
        const blob = Buffer.concat(uploads.get(id) ?? []);
        uploads.delete(id);
        if (sha256(blob) !== digest) {
          const err = Buffer.from(JSON.stringify({ errors: [{ code: 'DIGEST_INVALID', message: `digest ${digest} does not match ${sha256(blob)}` }] }));
          res.writeHead(400, { 'Content-Type': 'application/json', 'Content-Length': err.length });
          res.end(err);
          return;
        }
        blobs.set(digest, blob);
        send(201, { 'Location': `/v2/${name}/blobs/${digest}`, 'Docker-Content-Digest': digest });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    log,
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}
