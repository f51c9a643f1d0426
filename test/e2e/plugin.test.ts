/**
 * shiplog as a managed plugin on the real private dockerd: `npm run plugin` builds the image from the
 * local `shiplog-test/node` base (no registry), exports the rootfs and runs `docker plugin create`;
 * then enable, settings, metrics, a disable/enable cycle and an upgrade while containers log, and the
 * daemon.json default on a second dockerd.
 *
 * The build is the slow part (vfs storage, `npm ci` in the build stage): once per run. To iterate on
 * the tests alone, SHIPLOG_E2E_PLUGIN_DIR=<dir> reuses a plugin directory an earlier run (or
 * `PLUGIN_DIR=<dir> npm run plugin`) left, instead of building.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DRIVER_NAME, IMAGE, docker, dockerEnv, dockerOk, fifoPipeBytes, root, uniqueName, waitFor } from './harness.js';
import { type FakeRegistry, startRegistry } from './registry.js';

const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
/** Managed plugins are named by `docker plugin create`: a name of this suite's own. */
const PLUGIN = `${DRIVER_NAME}-managed`;
const REF = `${PLUGIN}:${version}`;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-plg-'));
const stateDir = path.join(work, 'state');
const filesDir = path.join(work, 'files');
const prebuilt = process.env.SHIPLOG_E2E_PLUGIN_DIR;
const pluginDir = prebuilt ?? path.join(work, 'plugin');
const containers: string[] = [];
let metricsPort = 0;
let registry: FakeRegistry | undefined;

interface SinkLine { source: string; container_name: string; message: string }

function sinkLines(dir: string, container: string): SinkLine[] {
  const file = path.join(dir, `${container}.log`);
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as SinkLine);
}

function waitForSink(dir: string, container: string, count: number, timeoutMs = 60_000): Promise<SinkLine[]> {
  return waitFor(`${count} lines in the file sink for ${container}`, () => {
    const lines = sinkLines(dir, container);
    return lines.length >= count ? lines : undefined;
  }, timeoutMs);
}

async function pluginId(ref: string, host?: string): Promise<string> {
  return (await dockerOk(['plugin', 'inspect', '-f', '{{.Id}}', ref], host === undefined ? {} : { host })).stdout.trim();
}

function dockerdLog(dir = inject('dockerdDir')): string {
  return fs.readFileSync(path.join(dir, 'dockerd.log'), 'utf8');
}

/** shiplog's own log lines (JSON, relayed by dockerd with plugin=<id>) at `level` (pino numbers). */
function pluginLogLines(id: string, level: number): string[] {
  return dockerdLog().split('\n').filter((l) => l.includes(`plugin=${id}`) && l.includes(`\\"level\\":${level},`));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    }).on('error', reject);
  });
}

function httpGet(urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: metricsPort, path: urlPath }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => { body += c; }).on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

/** Prometheus samples as `name{labels}` → value (label order as prom-client prints it). */
async function scrape(): Promise<(name: string, labels?: Record<string, string>) => number> {
  const r = await httpGet('/metrics');
  expect(r.status).toBe(200);
  const samples = r.body.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(l);
    if (m === null) throw new Error(`unparsable: ${l}`);
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    return { name: m[1] as string, labels, value: Number(m[3]) };
  });
  return (name, labels = {}) => samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);
}

/** Runs `cmd`; resolves with its output, rejects with it when it fails. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { out += b.toString(); });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${out.slice(-4000)}`))));
  });
}

/** A container printing line1..lineN, one every `ms` milliseconds. */
function counter(n: number, ms: number): string[] {
  return ['sh', '-c', `i=0; while [ $i -lt ${n} ]; do i=$((i+1)); echo line$i; sleep ${ms / 1000}; done`];
}
const numbered = (n: number): string[] => Array.from({ length: n }, (_, i) => `line${i + 1}`);

beforeAll(async () => {
  // The plugin image's base: this machine's node, npm and busybox (no registry needed).
  execFileSync('bash', [path.join(root, 'scripts/dockerd-up.sh'), inject('dockerdDir')], {
    env: { ...process.env, SHIPLOG_NODE_IMAGE: '1' }, stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (const ref of [REF, `${PLUGIN}:latest`]) await docker(['plugin', 'rm', '-f', ref]); // an earlier run's
  fs.mkdirSync(stateDir);
  fs.mkdirSync(filesDir);

  const started = Date.now();
  if (prebuilt === undefined) {
    await run(process.execPath, [path.join(root, 'scripts/build-plugin.mjs')], {
      ...dockerEnv(), PLUGIN_NAME: PLUGIN, NODE_IMAGE: 'shiplog-test/node', PLUGIN_DIR: pluginDir, PLUGIN_REPLACE: '1',
    });
    console.log(`npm run plugin (docker build, export, 2 x docker plugin create) took ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } else {
    fs.writeFileSync(path.join(pluginDir, 'rootfs/opt/shiplog/plugin-ref'), `${REF}\n`);
    fs.copyFileSync(path.join(root, 'config.json'), path.join(pluginDir, 'config.json'));
    await dockerOk(['plugin', 'create', REF, pluginDir]);
  }
  expect((await dockerOk(['plugin', 'inspect', '-f', '{{.Enabled}}', REF])).stdout.trim()).toBe('false');

  metricsPort = await freePort();
  await dockerOk(['plugin', 'set', REF, `state.source=${stateDir}`, `files.source=${filesDir}`, `METRICS_ADDRESS=127.0.0.1:${metricsPort}`]);
  await dockerOk(['plugin', 'enable', '--timeout', '120', REF]);
}, 900_000);

afterAll(async () => {
  await registry?.close();
  for (const c of containers) await docker(['rm', '-f', c]);
  for (const ref of [REF, `${PLUGIN}:latest`]) await docker(['plugin', 'rm', '-f', ref]);
  fs.rmSync(work, { recursive: true, force: true }); // the rootfs alone is ~150 MB
});

/** Pids whose command line contains `text`. */
function processesWith(text: string): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(text)) pids.push(Number(name));
    } catch { /* gone meanwhile */ }
  }
  return pids;
}

/** A process's environment, one VAR=value per entry. */
function environOf(pid: number): string[] {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** `docker run -d` with the plugin as log driver; the container is removed after the file. */
async function start(args: string[], extra: string[] = []): Promise<string> {
  const name = uniqueName('plg');
  containers.push(name);
  await dockerOk(['run', '-d', '--name', name, '--log-driver', REF, ...extra, IMAGE, ...args]);
  return name;
}

describe('managed plugin on a real dockerd', () => {
  it('docker plugin create + enable: docker run --log-driver <plugin>:<tag> writes the file sink through the files mount; docker logs works', async () => {
    expect((await dockerOk(['plugin', 'inspect', '-f', '{{.Enabled}}', REF])).stdout.trim()).toBe('true');
    const name = await start(['sh', '-c', 'echo out1; echo err1 >&2; echo out2'], ['--log-opt', 'tag={{.Name}}']);
    await dockerOk(['wait', name]);
    const lines = await waitForSink(filesDir, name, 3);
    expect(lines.filter((l) => l.source === 'stdout').map((l) => l.message)).toEqual(['out1', 'out2']);
    expect(lines.filter((l) => l.source === 'stderr').map((l) => l.message)).toEqual(['err1']);
    expect(lines.every((l) => l.container_name === name)).toBe(true);
    const logs = await dockerOk(['logs', name]);
    expect(logs.stdout).toBe('out1\nout2\n');
    expect(logs.stderr).toBe('err1\n');
    // The store is on the host, in the state mount's source.
    const id = (await dockerOk(['inspect', '-f', '{{.Id}}', name])).stdout.trim();
    expect(fs.readdirSync(path.join(stateDir, 'containers', id))).toContain('container.log');
  });

  it('docker plugin set LOG_LEVEL=debug is refused while enabled, and takes effect after disable, set, enable (NODE_OPTIONS too)', async () => {
    const id = await pluginId(REF);
    expect(pluginLogLines(id, 30).length).toBeGreaterThan(0); // info lines ('shiplog listening') reach dockerd's log
    expect(pluginLogLines(id, 20)).toEqual([]);
    const refused = await docker(['plugin', 'set', REF, 'LOG_LEVEL=debug']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/enabled|active/i);

    // The plugin's node process (in the host's PID namespace) runs with config.json's default Node flags …
    const nodeOptions = (): string[] => processesWith('/opt/shiplog/dist/src/main.js').flatMap((pid) => environOf(pid).filter((v) => v.startsWith('NODE_OPTIONS=')));
    expect(nodeOptions()).toEqual(['NODE_OPTIONS=--max-semi-space-size=4']);
    await dockerOk(['plugin', 'disable', REF]);
    await dockerOk(['plugin', 'set', REF, 'LOG_LEVEL=debug', 'NODE_OPTIONS=--max-semi-space-size=8']);
    await dockerOk(['plugin', 'enable', '--timeout', '120', REF]);
    // … and with what `docker plugin set` gave instead.
    expect(nodeOptions()).toContain('NODE_OPTIONS=--max-semi-space-size=8');
    const name = await start(['echo', 'debug me']);
    await dockerOk(['wait', name]);
    const cid = (await dockerOk(['inspect', '-f', '{{.Id}}', name])).stdout.trim();
    // 'stream ended' is a debug line: it reaches dockerd's log only at debug level.
    await waitFor('the debug line of this container\'s stream in dockerd\'s log', () =>
      pluginLogLines(id, 20).some((l) => l.includes('stream ended') && l.includes(cid)) ? true : undefined);
    expect((await dockerOk(['plugin', 'inspect', '-f', '{{json .Settings.Env}}', REF])).stdout).toContain('LOG_LEVEL=debug');
  });

  it('/metrics counts a run exactly and /health reports the live file-sink instance', async () => {
    const before = await scrape();
    const name = await start(['sh', '-c', 'for i in 1 2 3 4 5; do echo metric-line-$i; done; echo oops >&2; read x'], ['-i']);
    await waitForSink(filesDir, name, 6);

    const health = JSON.parse((await httpGet('/health')).body) as { status: string; streams: number; sinks: { sink: string; instance: string; state: string; backlogBytes: number }[] };
    expect(health.status).toBe('ok');
    expect(health.streams).toBeGreaterThanOrEqual(1);
    expect(health.sinks).toContainEqual(expect.objectContaining({ sink: 'file', instance: `/var/log/shiplog/${name}.log`, state: 'ok', backlogBytes: 0 }));
    const live = await scrape();
    expect(live('shiplog_container_lines_total', { container_name: name })).toBe(6);
    expect(live('shiplog_streams')).toBeGreaterThanOrEqual(1);
    // Inside the plugin's rootfs (koffi from its npm ci), without extra capabilities: PIPE_SIZE's 1 MiB.
    // dockerd makes a managed plugin's FIFOs under its propagated mount (protocol.md 3.1, ScopedPath).
    const propagated = path.join((await dockerOk(['info', '-f', '{{.DockerRootDir}}'])).stdout.trim(), 'plugins', await pluginId(REF), 'propagated-mount');
    const cid = (await dockerOk(['inspect', '-f', '{{.Id}}', name])).stdout.trim();
    expect(fifoPipeBytes(stateDir, cid, (file) => path.join(propagated, path.relative('/run/docker/logging', file)))).toBe(1 << 20);
    expect(live('shiplog_fifo_pipe_resize_refused_total')).toBe(0);

    await dockerOk(['kill', name]);
    await dockerOk(['wait', name]);
    const delta = async (n: string, labels?: Record<string, string>): Promise<number> => (await scrape())(n, labels) - before(n, labels);
    // The stream ends after StopLogging; its counters move into the totals.
    await waitFor('the stream of the killed container to end', async () => ((await delta('shiplog_plugin_requests_total', { call: 'LogDriver.StopLogging' })) === 1 ? true : undefined));
    await waitFor('the file sink to report the 6 lines delivered', async () => ((await delta('shiplog_sink_records_delivered_total', { sink: 'file' })) === 6 ? true : undefined));
    expect(await delta('shiplog_fifo_entries_total')).toBe(6);
    expect(await delta('shiplog_lines_total')).toBe(6);
    // One frame per line: 4-byte length + source (2 + 6) + time_nano (1 + 9-byte varint) + line (2 + length).
    expect(await delta('shiplog_fifo_read_bytes_total')).toBe(5 * (24 + 'metric-line-1'.length) + (24 + 'oops'.length));
    expect(await delta('shiplog_sink_records_received_total', { sink: 'file' })).toBe(6);
    expect(await delta('shiplog_fifo_frames_skipped_total')).toBe(0);
    expect(await delta('shiplog_plugin_requests_total', { call: 'LogDriver.StartLogging' })).toBe(1);
    expect(await delta('shiplog_plugin_requests_total', { call: 'LogDriver.ReadLogs' })).toBe(0);
    expect((await scrape())('shiplog_container_lines_total', { container_name: name })).toBe(0); // series gone with the stream

    expect((await dockerOk(['logs', name])).stdout.split('\n')).toHaveLength(6);
    expect(await delta('shiplog_plugin_requests_total', { call: 'LogDriver.ReadLogs' })).toBe(1);
    expect((await scrape())('shiplog_store_bytes')).toBeGreaterThan(0);
    expect((await scrape())('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect((await httpGet('/metrics')).body).toContain('# TYPE nodejs_eventloop_lag_seconds gauge');
  });

  it('docker plugin disable -f / enable while a container logs: every line in docker logs and the file sink, once, in order', async () => {
    const n = 400;
    const name = await start(counter(n, 10));
    const atDisable = (await waitForSink(filesDir, name, 20)).length;
    await dockerOk(['plugin', 'disable', '-f', REF]);
    await dockerOk(['plugin', 'enable', '--timeout', '120', REF]);
    await dockerOk(['wait', name]);
    expect(atDisable).toBeLessThan(n); // the cycle happened while the container was logging
    const lines = await waitForSink(filesDir, name, n);
    expect(lines.map((l) => l.message)).toEqual(numbered(n));
    expect((await dockerOk(['logs', name])).stdout).toBe(`${numbered(n).join('\n')}\n`);
    const cid = (await dockerOk(['inspect', '-f', '{{.Id}}', name])).stdout.trim().slice(0, 12);
    expect(pluginLogLines(await pluginId(REF), 30).some((l) => l.includes('re-attached to a FIFO from before the restart') && l.includes(cid))).toBe(true);
  });

  it('docker plugin upgrade (from a registry) while a container logs: every line in docker logs and the file sink, once, in order', async () => {
    registry = await startRegistry();
    const remote = `${registry.host}/${PLUGIN}:next`;
    fs.writeFileSync(path.join(pluginDir, 'rootfs/opt/shiplog/plugin-ref'), `${remote}\n`);
    await dockerOk(['plugin', 'create', remote, pluginDir]);
    await dockerOk(['plugin', 'push', remote]);
    await dockerOk(['plugin', 'rm', remote]);

    const n = 400;
    const name = await start(counter(n, 10));
    const atDisable = (await waitForSink(filesDir, name, 20)).length;
    const id = await pluginId(REF);
    await dockerOk(['plugin', 'disable', '-f', REF]);
    await dockerOk(['plugin', 'upgrade', '--grant-all-permissions', '--skip-remote-check', REF, remote]);
    // dockerd keeps `docker plugin set` env values across an upgrade, but not mount sources: they live
    // in the plugin's config, which the upgrade replaces. Set them again before enabling.
    const mounts = JSON.parse((await dockerOk(['plugin', 'inspect', '-f', '{{json .Config.Mounts}}', REF])).stdout) as { Name: string; Source: string }[];
    expect(mounts.map((m) => [m.Name, m.Source])).toEqual([['state', '/var/lib/shiplog'], ['files', '/var/log/shiplog']]);
    expect((await dockerOk(['plugin', 'inspect', '-f', '{{json .Settings.Env}}', REF])).stdout).toContain(`METRICS_ADDRESS=127.0.0.1:${metricsPort}`);
    await dockerOk(['plugin', 'set', REF, `state.source=${stateDir}`, `files.source=${filesDir}`]);
    await dockerOk(['plugin', 'enable', '--timeout', '120', REF]);
    await dockerOk(['wait', name]);
    expect(atDisable).toBeLessThan(n);

    // The same plugin (id, settings) now runs the pushed rootfs.
    expect(await pluginId(REF)).toBe(id);
    const rootfs = path.join(inject('dockerdDir'), 'root/plugins', id, 'rootfs');
    expect(fs.readFileSync(path.join(rootfs, 'opt/shiplog/plugin-ref'), 'utf8')).toBe(`${remote}\n`);
    expect((await dockerOk(['plugin', 'inspect', '-f', '{{.PluginReference}}', REF])).stdout.trim()).toBe(remote);

    const lines = await waitForSink(filesDir, name, n);
    expect(lines.map((l) => l.message)).toEqual(numbered(n));
    expect((await dockerOk(['logs', name])).stdout).toBe(`${numbered(n).join('\n')}\n`);
    // The FIFO outlived the old rootfs (propagatedMount keeps it outside), so the new code re-attached.
    const cid = (await dockerOk(['inspect', '-f', '{{.Id}}', name])).stdout.trim().slice(0, 12);
    expect(pluginLogLines(id, 30).some((l) => l.includes('re-attached to a FIFO from before the restart') && l.includes(cid))).toBe(true);
  });

  it('daemon.json "log-driver": "<plugin>:<tag>" on a second dockerd: containers log through the managed plugin by default', async () => {
    const dir = path.join(work, 'dj');
    const djState = path.join(work, 'dj-state');
    const djFiles = path.join(work, 'dj-files');
    fs.mkdirSync(djState);
    fs.mkdirSync(djFiles);
    const up = (extra = ''): string => {
      const out = execFileSync('bash', [path.join(root, 'scripts/dockerd-up.sh'), dir], {
        encoding: 'utf8', env: { ...process.env, DOCKERD_EXTRA_ARGS: extra }, stdio: ['ignore', 'pipe', 'inherit'],
      });
      return /DOCKER_HOST=(\S+)/.exec(out)?.[1] as string;
    };
    const down = (): void => { execFileSync('bash', [path.join(root, 'scripts/dockerd-down.sh'), dir]); };
    try {
      // dockerd refuses to start with a default log driver it cannot find, so the plugin is installed
      // first, then the daemon restarts with daemon.json (it enables its plugins before resolving it).
      let host = up();
      fs.writeFileSync(path.join(pluginDir, 'rootfs/opt/shiplog/plugin-ref'), `${REF}\n`);
      await dockerOk(['plugin', 'create', REF, pluginDir], { host });
      await dockerOk(['plugin', 'set', REF, `state.source=${djState}`, `files.source=${djFiles}`], { host });
      await dockerOk(['plugin', 'enable', '--timeout', '120', REF], { host });
      down();
      const config = path.join(work, 'daemon.json');
      fs.writeFileSync(config, JSON.stringify({ 'log-driver': REF, 'log-opts': { tag: 'dflt-{{.Name}}' } }));
      host = up(`--config-file ${config}`);

      const name = uniqueName('dj');
      await dockerOk(['run', '--name', name, IMAGE, 'sh', '-c', 'echo via-default; echo e >&2'], { host });
      const inspect = JSON.parse((await dockerOk(['inspect', name], { host })).stdout)[0] as { HostConfig: { LogConfig: { Type: string } } };
      expect(inspect.HostConfig.LogConfig.Type).toBe(REF);
      const lines = await waitForSink(djFiles, name, 2);
      expect(lines.map((l) => l.message).sort()).toEqual(['e', 'via-default']);
      const logs = await dockerOk(['logs', name], { host });
      expect(logs.stdout).toBe('via-default\n');
      expect(logs.stderr).toBe('e\n');
      await dockerOk(['rm', name], { host });
      await dockerOk(['plugin', 'rm', '-f', REF], { host });
    } finally {
      down();
    }
  });
});
