/**
 * Helpers for end-to-end tests against the real private dockerd: run docker commands, start the built
 * driver (dist/) as a plain-process plugin with its own state and file-sink directories, and wait for
 * conditions (polling a condition with a deadline, where no event exists to await).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect, inject } from 'vitest';
import { pipeSize } from '../../src/pipe-size.js';

export const root = path.resolve(import.meta.dirname, '../..');
export const IMAGE = 'shiplog-test/busybox';
/**
 * The driver name tests use (socket /run/docker/plugins/<name>.sock). Set SHIPLOG_E2E_NAME to run two
 * suites on one host at once; set SHIPLOG_E2E_DOCKERD_DIR to give each its own dockerd.
 */
export const DRIVER_NAME = process.env.SHIPLOG_E2E_NAME ?? 'shiplog-e2e';

export interface DockerResult {
  code: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

export function dockerEnv(host = inject('dockerHost')): NodeJS.ProcessEnv {
  return { ...process.env, DOCKER_HOST: host };
}

/** Runs the docker CLI; never throws on a non-zero exit (tests assert on it). */
export function docker(args: string[], opts: { host?: string; input?: string } = {}): Promise<DockerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('docker', args, { env: dockerEnv(opts.host), stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code: code ?? -1, stdout: stdoutBytes.toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), stdoutBytes });
    });
    // A CLI that exits without reading its stdin (most commands) closes the pipe: an EPIPE here is
    // no failure of the command, which its exit code reports. Without a listener it was an uncaught
    // exception failing whichever test ran (seen once in 20 containers x 10k lines).
    child.stdin.on('error', () => undefined);
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

/** docker, failing the test with stderr when the command fails. */
export async function dockerOk(args: string[], opts: { host?: string } = {}): Promise<DockerResult> {
  const r = await docker(args, opts);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let delay = 10;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 200);
  }
}

export interface DriverProcess {
  readonly name: string;
  readonly socket: string;
  readonly stateDir: string;
  readonly filesDir: string;
  readonly output: () => string;
  /** SIGTERM, resolves with the exit code. */
  stop(): Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Resolves when the process has exited, with the signal that ended it (null: it exited by itself). */
  readonly exited: Promise<NodeJS.Signals | null>;
  readonly child: ChildProcess;
}

export interface DriverOptions {
  name?: string;
  env?: Record<string, string>;
  stateDir?: string;
  filesDir?: string;
}

/** Starts `node dist/src/main.js` listening on /run/docker/plugins/<name>.sock; resolves once it accepts connections. */
export async function startDriver(opts: DriverOptions = {}): Promise<DriverProcess> {
  const name = opts.name ?? DRIVER_NAME;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `${name}-`));
  const stateDir = opts.stateDir ?? path.join(work, 'state');
  const filesDir = opts.filesDir ?? path.join(work, 'files');
  const socket = `/run/docker/plugins/${name}.sock`;
  const child = spawn(process.execPath, [path.join(root, 'dist/src/main.js')], {
    env: {
      ...process.env, SOCKET: socket, STATE_DIR: stateDir, LOG_OPT_FILE_PATH: `${filesDir}/{{.Name}}.log`, LOG_LEVEL: 'debug',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (b: Buffer) => { output += b.toString(); });
  child.stderr?.on('data', (b: Buffer) => { output += b.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const exitSignal = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  await waitFor(`driver ${name} listening`, async () => {
    if (child.exitCode !== null) throw new Error(`driver exited ${child.exitCode}: ${output}`);
    return output.includes('shiplog listening') && (await canConnect(socket)) ? true : undefined;
  }, 20_000);
  return {
    name, socket, stateDir, filesDir, child, exited: exitSignal,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      const code = await exited;
      // A test asserts the exit code; what the driver said is what explains a wrong one.
      if (code !== 0) process.stderr.write(`driver ${name} exited ${code}; its last output:\n${output.slice(-6000)}\n`);
      return code;
    },
    kill: async (signal = 'SIGKILL') => {
      if (child.exitCode === null) child.kill(signal);
      await exited;
    },
  };
}

function canConnect(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socket);
    c.on('connect', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

export interface FileSinkLine {
  time: string;
  source: string;
  container_id: string;
  container_name: string;
  image_name: string;
  image_id: string;
  tag: string;
  attrs?: Record<string, string>;
  truncated?: boolean;
  message: string;
}

export function readFileSink(driver: DriverProcess, container: string): FileSinkLine[] {
  const file = path.join(driver.filesDir, `${container}.log`);
  if (!fs.existsSync(file)) return [];
  const text = fs.readFileSync(file, 'utf8');
  // Only whole lines: the sink may be in the middle of writing the last one.
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as FileSinkLine);
}

/** Waits until the file sink holds at least `count` lines for `container`. */
export function waitForFileSink(driver: DriverProcess, container: string, count: number, timeoutMs = 30_000): Promise<FileSinkLine[]> {
  return waitFor(`${count} lines in the file sink for ${container}`, () => {
    const lines = readFileSink(driver, container);
    return lines.length >= count ? lines : undefined;
  }, timeoutMs);
}

let counter = 0;
/** A container name unique within this test run. */
export function uniqueName(prefix: string): string {
  counter++;
  return `${prefix}-${process.pid}-${counter}`;
}

/** Bytes of the FIFO frame dockerd writes for a stdout line (length prefix, source, time_nano, line; newline stripped). */
export function fifoFrameBytes(line: string): number {
  return 4 + 2 + 6 + 1 + 9 + 1 + 1 + Buffer.byteLength(line);
}

/** Bytes of the FIFO frames of lines `<name> <i>` for each i of `lines`. */
export function fifoFramesBytes(name: string, lines: readonly number[]): number {
  return lines.reduce((sum, i) => sum + fifoFrameBytes(`${name} ${i}`), 0);
}

/** What `docker logs <name>` prints on stdout, as lines. */
export async function dockerLogLines(name: string): Promise<string[]> {
  return (await dockerOk(['logs', name])).stdout.split('\n').filter((l) => l !== '');
}

/**
 * What one `kill -9` may cost docker logs (README, "What a kill -9 can lose"): nothing, or the one
 * FIFO read the reader had taken from the pipe and not yet saved — a single run of consecutive
 * lines: the frames wholly inside that read (64 KiB, or, for a read grown past that because the ones
 * before it came back full with fewer than 1,024 entries, fewer than 2,048 frames; fifo.ts ReadSizer),
 * and the frames it cut at either end
 * (a 1 MiB pipe holds more than a read takes, so a read can end inside a frame; the restarted
 * reader drops the carried head of the first and resyncs past the tail of the last).
 * `missing` holds line numbers of `<name> <i>`, ascending.
 */
export function expectAtMostOneFifoRead(missing: readonly number[], name: string): void {
  if (missing.length === 0) return;
  const first = missing[0] as number;
  expect(missing, 'one run of consecutive lines').toEqual(missing.map((_, k) => first + k));
  const inside = missing.slice(1, -1);
  const bytes = fifoFramesBytes(name, inside);
  if (bytes > 65_536) expect(inside.length, `one FIFO read between the two frames it may cut: ${bytes} bytes, so a grown read, of fewer than 2,048 frames`).toBeLessThan(2048);
}

/**
 * The kernel buffer of the FIFO dockerd opened for container `id` (F_GETPIPE_SZ), found through the
 * driver's stream journal in `stateDir`; `hostPath` maps the journalled path (the plugin's view) to
 * the host's. The extra read end opened for the call reads nothing.
 */
export function fifoPipeBytes(stateDir: string, id: string, hostPath: (file: string) => string = (f) => f): number {
  const streams = path.join(stateDir, 'streams');
  const entry = fs.readdirSync(streams).filter((n) => n.endsWith('.json'))
    .map((n) => JSON.parse(fs.readFileSync(path.join(streams, n), 'utf8')) as { file: string; info: { ContainerID: string } })
    .find((e) => e.info.ContainerID === id);
  if (entry === undefined) throw new Error(`no journalled stream for container ${id}`);
  const fd = fs.openSync(hostPath(entry.file), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const size = pipeSize(fd);
    if ('error' in size) throw new Error(`F_GETPIPE_SZ on ${entry.file}: ${size.error}`);
    return size.bytes;
  } finally {
    fs.closeSync(fd);
  }
}
