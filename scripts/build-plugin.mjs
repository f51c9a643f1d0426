#!/usr/bin/env node
// `npm run plugin`: builds shiplog as a Docker managed plugin on the dockerd the docker CLI talks to
// (DOCKER_HOST is respected) and creates it as <name>:latest and <name>:<package.json version>.
//
//   1. docker build (the Dockerfile; build stage runs `npm ci`, so --network host for the registry)
//   2. docker create + docker export → <dir>/rootfs, config.json → <dir>/config.json
//   3. docker plugin create <name>:latest <dir>, docker plugin create <name>:<version> <dir>
//      (each with /opt/shiplog/plugin-ref naming it: dockerd 20.10 refuses a second plugin whose
//      rootfs is byte for byte one it already holds, "content sha256:… already exists")
//   4. when dockerd is local (no DOCKER_HOST, or unix://): creates the host directories config.json
//      mounts (/var/lib/shiplog, /var/log/shiplog) if missing: `docker plugin enable` fails without them
//
// Environment:
//   NODE_IMAGE       base image of both stages (default: the Dockerfile's, node:24-bookworm-slim)
//   PLUGIN_NAME      plugin name without tag (default shiplog)
//   PLUGIN_DIR       where rootfs/ and config.json are assembled (default dist/plugin)
//   PLUGIN_REPLACE=1 remove existing plugins of those names first (docker plugin rm -f); without it an
//                    existing name is an error, since removing a plugin in use stops its logging
//   BUILD_CA_FILE    PEM file of extra CAs the build stage's npm must trust (a TLS-intercepting proxy);
//                    default NODE_EXTRA_CA_CERTS. Only certificates node does not already trust are passed.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';

const root = path.resolve(import.meta.dirname, '..');
const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const name = process.env.PLUGIN_NAME || 'shiplog';
const dir = path.resolve(process.env.PLUGIN_DIR || path.join(root, 'dist/plugin'));
const image = `${name.replace(/[^a-z0-9._/-]/g, '-')}-rootfs:${version}`;
const tags = [`${name}:latest`, `${name}:${version}`];
const started = Date.now();

function log(msg) {
  process.stdout.write(`[plugin ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
}

/** Runs a command; resolves with its stdout (stderr passes through); rejects on a non-zero exit. */
function run(cmd, args, { capture = false, quiet = false } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', capture ? 'pipe' : quiet ? 'ignore' : 'inherit', quiet ? 'ignore' : 'inherit'] });
    let out = '';
    child.stdout?.on('data', (b) => { out += b; });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`))));
  });
}

const succeeds = (cmd, args) => run(cmd, args, { quiet: true }).then(() => true, () => false);

/** The PEM certificates of `file` that node's built-in store lacks (a whole system bundle is mostly duplicates). */
function extraCertificates(file) {
  const pem = fs.readFileSync(file, 'utf8');
  const norm = (s) => s.replace(/\s+/g, '');
  const known = new Set(tls.rootCertificates.map(norm));
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).filter((c) => !known.has(norm(c))).join('\n');
}

/** docker export <container> | tar -x -C <dest> */
function exportInto(container, dest) {
  return new Promise((resolve, reject) => {
    const exp = spawn('docker', ['export', container], { stdio: ['ignore', 'pipe', 'inherit'] });
    const tar = spawn('tar', ['-x', '-C', dest], { stdio: ['pipe', 'inherit', 'inherit'] });
    exp.stdout.pipe(tar.stdin);
    let pending = 2;
    let failed;
    const done = (what) => (code) => {
      if (code !== 0 && failed === undefined) failed = new Error(`${what} exited ${code}`);
      if (--pending === 0) (failed ? reject(failed) : resolve());
    };
    exp.on('error', reject).on('close', done('docker export'));
    tar.on('error', reject).on('close', done('tar -x'));
  });
}

async function main() {
  for (const tag of tags) {
    if (!(await succeeds('docker', ['plugin', 'inspect', tag]))) continue;
    if (process.env.PLUGIN_REPLACE !== '1') {
      throw new Error(`plugin ${tag} exists. To replace it: docker plugin disable -f ${tag} && docker plugin rm ${tag} (or PLUGIN_REPLACE=1); containers logging through it lose their logger`);
    }
    log(`removing existing plugin ${tag}`);
    await run('docker', ['plugin', 'rm', '-f', tag]);
  }

  const buildArgs = ['build', '--network', 'host', '-t', image];
  if (process.env.NODE_IMAGE) buildArgs.push('--build-arg', `NODE_IMAGE=${process.env.NODE_IMAGE}`);
  const caFile = process.env.BUILD_CA_FILE || process.env.NODE_EXTRA_CA_CERTS;
  if (caFile && fs.existsSync(caFile)) {
    const extra = extraCertificates(caFile);
    if (extra !== '') buildArgs.push('--build-arg', `EXTRA_CA_CERTS=${extra}`);
  }
  log(`docker build -t ${image}${process.env.NODE_IMAGE ? ` (NODE_IMAGE=${process.env.NODE_IMAGE})` : ''}`);
  await run('docker', [...buildArgs, root]);

  log(`exporting the image filesystem into ${dir}/rootfs`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, 'rootfs'), { recursive: true });
  const container = (await run('docker', ['create', image], { capture: true })).trim();
  try {
    await exportInto(container, path.join(dir, 'rootfs'));
  } finally {
    await run('docker', ['rm', '-f', container], { quiet: true }).catch(() => undefined);
  }
  fs.copyFileSync(path.join(root, 'config.json'), path.join(dir, 'config.json'));

  for (const tag of tags) {
    log(`docker plugin create ${tag}`);
    fs.writeFileSync(path.join(dir, 'rootfs/opt/shiplog/plugin-ref'), `${tag}\n`);
    await run('docker', ['plugin', 'create', tag, dir]);
  }

  const host = process.env.DOCKER_HOST ?? '';
  if (host === '' || host.startsWith('unix://')) {
    const { mounts = [] } = JSON.parse(fs.readFileSync(path.join(root, 'config.json'), 'utf8'));
    for (const m of mounts) {
      if (m.type !== 'bind' || fs.existsSync(m.source)) continue;
      fs.mkdirSync(m.source, { recursive: true, mode: m.name === 'state' ? 0o700 : 0o755 });
      log(`created ${m.source} (mount '${m.name}': dockerd refuses to enable a plugin whose bind-mount source is missing)`);
    }
  }
  log(`done. Next: docker plugin set ${name} … (optional, while disabled), then docker plugin enable --timeout 86400 ${name}`);
}

main().catch((err) => {
  process.stderr.write(`build-plugin: ${err.message}\n`);
  process.exit(1);
});
