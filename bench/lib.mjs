/**
 * Helpers shared by the benchmark phases: the docker CLI, /proc readings (CPU seconds, peak RSS,
 * load), the private dockerd, and starting the processes under test (shiplog, the null plugin,
 * fake-es) as separate processes so each one's CPU and memory can be read on its own.
 */
import { execFileSync, fork, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const ROOT = path.resolve(import.meta.dirname, '..');
export const IMAGE = 'shiplog-test/busybox';
export const DOCKERD_DIR = process.env.SHIPLOG_BENCH_DOCKERD_DIR ?? '/tmp/sl-bench-dockerd';
export const SHIPLOG_NAME = 'shiplog-bench';
export const NULL_NAME = 'nullplugin-bench';
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

export { sleep };

export function log(...args) {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${args.join(' ')}\n`);
}

// --- docker ------------------------------------------------------------------------------------

let dockerHost = process.env.DOCKER_HOST;

/** Starts (or reuses) the private dockerd of scripts/dockerd-up.sh in DOCKERD_DIR. */
export function dockerdUp() {
  const out = execFileSync('bash', [path.join(ROOT, 'scripts/dockerd-up.sh'), DOCKERD_DIR], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const host = /DOCKER_HOST=(\S+)/.exec(out)?.[1];
  if (host === undefined) throw new Error(`dockerd-up.sh printed no DOCKER_HOST: ${out}`);
  dockerHost = host;
  return host;
}

export function dockerdDown() {
  execFileSync('bash', [path.join(ROOT, 'scripts/dockerd-down.sh'), DOCKERD_DIR], { stdio: 'inherit' });
}

export function dockerdPid() {
  return Number(fs.readFileSync(path.join(DOCKERD_DIR, 'docker.pid'), 'utf8').trim());
}

/**
 * Runs the docker CLI. `stdout`: 'capture' (default), 'null' (to /dev/null, for timing reads) or
 * 'count' (bytes counted, not kept). Never throws on a non-zero exit.
 */
export function docker(args, { stdout = 'capture', timeoutMs = 600_000 } = {}) {
  return new Promise((resolve, reject) => {
    const nullFd = stdout === 'null' ? fs.openSync('/dev/null', 'w') : undefined;
    const child = spawn('docker', args, {
      env: { ...process.env, DOCKER_HOST: dockerHost },
      stdio: ['ignore', nullFd ?? 'pipe', 'pipe'],
    });
    if (nullFd !== undefined) fs.closeSync(nullFd);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const out = [];
    let bytes = 0;
    let err = '';
    child.stdout?.on('data', (b) => { bytes += b.length; if (stdout === 'capture') out.push(b); });
    child.stderr.on('data', (b) => { err += b.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr: err, bytes });
    });
  });
}

export async function dockerOk(args, opts) {
  const r = await docker(args, opts);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r;
}

export async function dockerVersion() {
  const r = await docker(['version', '--format', '{{.Server.Version}} (API {{.Server.APIVersion}})']);
  return r.stdout.trim();
}

export async function dockerInfo(format) {
  return (await docker(['info', '--format', format])).stdout.trim();
}

/** Removes every container of this dockerd (it is private to the benchmark). */
export async function removeAllContainers() {
  const ids = (await docker(['ps', '-aq'])).stdout.split('\n').filter((s) => s !== '');
  if (ids.length > 0) await docker(['rm', '-f', ...ids]);
}

// --- /proc ---------------------------------------------------------------------------------------

/** utime + stime of a process, all threads, in seconds (0 when it is gone). */
export function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/**
 * CPU seconds of a process per thread, user and system time apart. Diff two readings with
 * diffThreadCpu: `main` is the JavaScript thread, `helpers` every other thread (V8's GC helpers and
 * libuv's threadpool: fs.promises, zlib; node 20 names them all "node", so they cannot be told apart).
 */
export function threadCpu(pid) {
  const out = new Map();
  let tids = [];
  try { tids = fs.readdirSync(`/proc/${pid}/task`); } catch { return out; }
  for (const tid of tids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(tid, { comm, user: Number(f[11]) / CLK_TCK, sys: Number(f[12]) / CLK_TCK });
    } catch { /* thread ended */ }
  }
  return out;
}

export function diffThreadCpu(before, after, pid) {
  const kinds = {};
  for (const [tid, a] of after) {
    const b = before.get(tid) ?? { user: 0, sys: 0 };
    const kind = tid === String(pid) ? 'main' : 'helpers';
    const k = (kinds[kind] ??= { user: 0, sys: 0 });
    k.user += a.user - b.user;
    k.sys += a.sys - b.sys;
  }
  return kinds;
}

/** VmHWM (peak RSS) and VmRSS in KiB. */
export function memoryKiB(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const get = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { hwm: get('VmHWM'), rss: get('VmRSS') };
  } catch {
    return { hwm: 0, rss: 0 };
  }
}

/** Resets VmHWM to the current RSS (writing 5 to clear_refs), so a peak covers one run only. */
export function resetPeakRss(pid) {
  try { fs.writeFileSync(`/proc/${pid}/clear_refs`, '5'); } catch { /* not ours or gone */ }
}

export function loadAverage() {
  return fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}

/** Busy and total jiffies of the whole machine (first line of /proc/stat). */
export function machineJiffies() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

/** Waits until `pids` together use less than `maxShare` of one core over `windowMs` (or `timeoutMs` passes). */
export async function settle(pids, { windowMs = 400, maxShare = 0.08, timeoutMs = 8000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const before = pids.reduce((s, p) => s + cpuSeconds(p), 0);
    await sleep(windowMs);
    const used = pids.reduce((s, p) => s + cpuSeconds(p), 0) - before;
    if (used / (windowMs / 1000) < maxShare || Date.now() > deadline) return;
  }
}

/** `promise`, or a rejection when `plugin` exits first or `ms` pass first. */
export function bounded(promise, { plugin, ms, what }) {
  let timer;
  const guards = [new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no end after ${ms / 1000} s`)), ms); })];
  if (plugin !== undefined) guards.push(plugin.exited.then((c) => { throw new Error(`${plugin.name} exited (${c}) during ${what}: ${plugin.output().slice(-300).replace(/\s+/g, ' ')}`); }));
  for (const g of guards) g.catch(() => undefined);
  return Promise.race([promise, ...guards]).finally(() => clearTimeout(timer));
}

export async function waitFor(what, probe, timeoutMs, intervalMs = 25) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

function canConnect(socket) {
  return new Promise((resolve) => {
    const c = net.connect(socket);
    c.on('connect', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

// --- machine ---------------------------------------------------------------------------------------

export async function describeMachine() {
  const cpu = os.cpus();
  const mem = fs.readFileSync('/proc/meminfo', 'utf8');
  const memTotal = Number(/^MemTotal:\s+(\d+)/m.exec(mem)?.[1] ?? 0);
  let commit = '';
  let dirty = 0;
  try {
    commit = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    dirty = execFileSync('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src', 'sinks'], { encoding: 'utf8' }).split('\n').filter((l) => l !== '').length;
  } catch { /* not a checkout */ }
  return {
    nproc: Number(execFileSync('nproc', { encoding: 'utf8' }).trim()),
    cpuModel: cpu[0]?.model ?? 'unknown',
    memGiB: Math.round((memTotal / 1024 / 1024) * 10) / 10,
    kernel: os.release(),
    node: process.version,
    shiplogNodeOptions: pluginNodeOptions(),
    dockerd: await dockerVersion(),
    dockerCli: execFileSync('docker', ['--version'], { encoding: 'utf8' }).trim(),
    storageDriver: await dockerInfo('{{.Driver}}'),
    commit,
    dirtyFiles: dirty,
  };
}

// --- snapshot of the code under test ------------------------------------------------------------------

/**
 * Copies dist/ (and proto/) into `dir`, with node_modules linked, so a rebuild by someone else in the
 * shared checkout during a run does not change the code being measured. Returns the snapshot root.
 */
export function snapshotDist(dir) {
  const app = path.join(dir, 'app');
  fs.rmSync(app, { recursive: true, force: true });
  fs.mkdirSync(app, { recursive: true });
  fs.cpSync(path.join(ROOT, 'dist'), path.join(app, 'dist'), { recursive: true });
  fs.cpSync(path.join(ROOT, 'proto'), path.join(app, 'proto'), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(app, 'package.json'));
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(app, 'node_modules'));
  return app;
}

// --- processes under test ---------------------------------------------------------------------------

/** The NODE_OPTIONS value config.json gives the managed plugin by default ('' when none). */
export function pluginNodeOptions() {
  const config = JSON.parse(fs.readFileSync(path.join(ROOT, 'config.json'), 'utf8'));
  return config.env.find((e) => e.name === 'NODE_OPTIONS')?.value ?? '';
}

/**
 * A plugin process (shiplog or the null plugin) listening on /run/docker/plugins/<name>.sock; its
 * output goes to a file in its work dir.
 */
export async function startPlugin({ kind, app, workDir, env = {}, nodeArgs = [] }) {
  const name = kind === 'null' ? NULL_NAME : SHIPLOG_NAME;
  const socket = `/run/docker/plugins/${name}.sock`;
  fs.mkdirSync(workDir, { recursive: true });
  const outFile = path.join(workDir, `${kind}.out`);
  const outFd = fs.openSync(outFile, 'a');
  const script = kind === 'null' ? path.join(ROOT, 'bench/null-plugin.mjs') : path.join(app, 'dist/src/main.js');
  const stateDir = path.join(workDir, 'state');
  const filesDir = path.join(workDir, 'files');
  const child = spawn(process.execPath, [...nodeArgs, script], {
    env: {
      ...process.env,
      // shiplog as shipped: the managed plugin's default Node flags (config.json), as `npm start` has them too.
      ...(kind === 'null' ? {} : { NODE_OPTIONS: pluginNodeOptions() }),
      SOCKET: socket,
      STATE_DIR: stateDir,
      LOG_OPT_FILE_PATH: `${filesDir}/{{.Name}}.log`,
      // One file per container for the whole run, so delivery can be counted by newlines.
      LOG_OPT_FILE_MAX_SIZE: '100g',
      STORE_BUDGET: '8g',
      BENCH_FIFO_LOG: path.join(workDir, 'fifos.txt'),
      ...env,
    },
    stdio: ['ignore', outFd, outFd],
  });
  fs.closeSync(outFd);
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
  const output = () => { try { return fs.readFileSync(outFile, 'utf8'); } catch { return ''; } };
  const listening = kind === 'null' ? 'nullplugin listening' : 'shiplog listening';
  await waitFor(`${name} listening`, async () => {
    if (child.exitCode !== null) throw new Error(`${name} exited ${child.exitCode}: ${output().slice(-2000)}`);
    return output().includes(listening) && (await canConnect(socket));
  }, 30_000, 20);
  return {
    name, socket, stateDir, filesDir, workDir, pid: child.pid, child, output,
    /** Resolves with the exit code or signal when the process ends (for racing against a run). */
    exited,
    get alive() { return child.exitCode === null && child.signalCode === null; },
    /** The FIFOs dockerd handed this process (null plugin: its log; shiplog: its journal of live streams). */
    fifos() {
      if (kind === 'null') {
        try { return fs.readFileSync(path.join(workDir, 'fifos.txt'), 'utf8').split('\n').filter((l) => l !== ''); } catch { return []; }
      }
      const dir = path.join(stateDir, 'streams');
      try {
        return fs.readdirSync(dir).filter((n) => n.endsWith('.json')).map((n) => JSON.parse(fs.readFileSync(path.join(dir, n), 'utf8')).file);
      } catch { return []; }
    },
    async stop(timeoutMs = 30_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}

/**
 * Reads FIFOs to EOF and discards: when a plugin died mid-run, dockerd blocks the containers on their
 * full pipes (and `docker rm -f` with them) until someone reads. Returns a function that stops.
 */
export function drainFifos(paths) {
  const sockets = [];
  for (const p of paths) {
    try {
      const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      const s = new net.Socket({ fd, readable: true, writable: false, allowHalfOpen: true });
      s.on('data', () => undefined);
      s.on('end', () => s.destroy());
      s.on('error', () => s.destroy());
      sockets.push(s);
    } catch { /* gone already */ }
  }
  return () => { for (const s of sockets) s.destroy(); };
}

/** Asks the null plugin for its counters (streams started/ended, bytes read). */
export function nullPluginStats(socket) {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let data = '';
    c.on('connect', () => c.write('POST /Bench.Stats HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'));
    c.on('data', (b) => { data += b.toString(); });
    c.on('end', () => {
      try { resolve(JSON.parse(data.slice(data.indexOf('\r\n\r\n') + 4))); } catch (err) { reject(err); }
    });
    c.on('error', reject);
  });
}

/** GET `path` from an HTTP server on a unix socket; resolves with the body. */
export function httpGetUnix(socket, urlPath) {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let data = '';
    c.on('connect', () => c.write(`GET ${urlPath} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    c.on('data', (b) => { data += b.toString(); });
    c.on('end', () => resolve(data.slice(data.indexOf('\r\n\r\n') + 4)));
    c.on('error', reject);
  });
}

/** One unlabelled sample of a Prometheus text exposition (NaN when absent). */
export function metricValue(text, name) {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m === null ? NaN : Number(m[1]);
}

/**
 * Waits until shiplog's store has gzipped every rotated file (it does so once a container's log has
 * been quiet for a second): that CPU is the run's, spent after it. Returns when (performance.now());
 * at once for a build without the metric.
 */
export async function storeCompressed(metricsSocket) {
  await waitFor('store compressions', async () => {
    const n = metricValue(await httpGetUnix(metricsSocket, '/metrics'), 'shiplog_store_segments_to_compress');
    return Number.isNaN(n) || n === 0;
  }, 120_000, 50);
  return performance.now();
}

/** fake-es (test/support/fake-es.ts) in its own process; stats over IPC. */
export async function startFakeEs(workDir) {
  fs.mkdirSync(workDir, { recursive: true });
  const outFd = fs.openSync(path.join(workDir, 'fake-es.out'), 'a');
  const child = fork(path.join(ROOT, 'bench/fake-es-server.mjs'), [workDir], {
    execArgv: ['--max-old-space-size=8192'],
    stdio: ['ignore', outFd, outFd, 'ipc'],
  });
  fs.closeSync(outFd);
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  const pending = [];
  let ready;
  const readyP = new Promise((resolve, reject) => {
    ready = resolve;
    child.once('exit', (code) => reject(new Error(`fake-es exited ${code} before it was ready`)));
  });
  child.on('message', (m) => {
    if (m.url !== undefined) ready(m.url);
    else if (m.stats !== undefined) pending.shift()?.(m.stats);
  });
  const url = await readyP;
  return {
    url, pid: child.pid,
    stats: () => new Promise((resolve) => { pending.push(resolve); child.send('stats'); }),
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

// --- delivery probes --------------------------------------------------------------------------------

/** Counts newlines of a growing file incrementally (only the new bytes are read each time). */
export class LineCounter {
  constructor(file) {
    this.file = file;
    this.offset = 0;
    this.lines = 0;
    this.buf = Buffer.allocUnsafe(1 << 20);
  }

  poll() {
    let fd;
    try { fd = fs.openSync(this.file, 'r'); } catch { return this.lines; }
    try {
      for (;;) {
        const n = fs.readSync(fd, this.buf, 0, this.buf.length, this.offset);
        if (n <= 0) break;
        this.offset += n;
        const chunk = this.buf.subarray(0, n);
        for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) this.lines++;
      }
    } finally {
      fs.closeSync(fd);
    }
    return this.lines;
  }
}

// --- statistics --------------------------------------------------------------------------------------

export function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 === 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

export function minMax(xs) {
  const v = xs.filter((x) => Number.isFinite(x));
  return v.length === 0 ? [NaN, NaN] : [Math.min(...v), Math.max(...v)];
}
