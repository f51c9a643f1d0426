/**
 * The metrics endpoint, a small node:http server apart from the plugin socket (dockerd never sees
 * it): GET /metrics (Prometheus text) and GET /health (JSON: each sink instance ok or retrying, with
 * its last error and backlog). It listens on METRICS_ADDRESS: `host:port` (`127.0.0.1:9464`,
 * `[::1]:9464`, `:9464` for every interface) or an absolute unix socket path. Off when empty.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import type { ShiplogMetrics } from './metrics.js';

export type ListenAddress = { readonly host: string; readonly port: number } | { readonly path: string };

/** Parses METRICS_ADDRESS; '' → undefined (off). Throws with a reason for the settings error message. */
export function parseListenAddress(text: string): ListenAddress | undefined {
  if (text === '') return undefined;
  if (text.startsWith('/')) return { path: text };
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (m === null || port > 65535) throw new Error('is not host:port (e.g. 127.0.0.1:9464, [::1]:9464, :9464) or an absolute unix socket path');
  // '' = every interface (node picks :: or 0.0.0.0)
  return { host: m[1] ?? m[2] ?? '', port };
}

export function describeAddress(address: ListenAddress): string {
  return 'path' in address ? address.path : `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
}

export interface MetricsServer {
  /** Where it listens (with the real port when 0 was asked for). */
  readonly address: ListenAddress;
  close(): Promise<void>;
}

export async function startMetricsServer(address: ListenAddress, metrics: ShiplogMetrics, logger: Logger): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if (url === '/metrics') {
      metrics.registry.metrics().then(
        (text) => { res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(req.method === 'HEAD' ? undefined : text); },
        (err: unknown) => {
          logger.error({ err }, 'collecting metrics failed');
          res.writeHead(500, { 'Content-Type': 'text/plain' }).end('collecting metrics failed\n');
        },
      );
      return;
    }
    if (url === '/health') {
      // Always 200: a sink that retries is shiplog doing its job, not a reason to restart it. Read `status`.
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(req.method === 'HEAD' ? undefined : `${JSON.stringify(metrics.health())}\n`);
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try /metrics or /health\n');
  });

  if ('path' in address) {
    await fs.promises.mkdir(path.dirname(address.path), { recursive: true });
    await fs.promises.rm(address.path, { force: true }); // a stale socket file makes listen fail
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => { server.off('error', reject); resolve(); };
    if ('path' in address) server.listen(address.path, done);
    else if (address.host === '') server.listen(address.port, done);
    else server.listen(address.port, address.host, done);
  });
  server.on('error', (err) => logger.error({ err }, 'metrics server error'));
  const bound = server.address();
  const actual: ListenAddress = bound !== null && typeof bound === 'object' ? { host: (bound as AddressInfo).address, port: (bound as AddressInfo).port } : address;
  logger.info({ address: describeAddress(actual) }, 'metrics listening (/metrics, /health)');
  return {
    address: actual,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
