import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import zlib from 'node:zlib';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeEntry, encodeEntry, frame } from '../src/entry.js';
import { LogEntry } from '../src/generated/entry.js';
import { ReadSession } from '../src/store/read-session.js';
import { LogStore, type ContainerLogWriter, type ReadRequest, type RotationOptions } from '../src/store/store.js';
import { bigIntToParts, partsToBigInt } from '../src/time.js';

// ---- helpers ------------------------------------------------------------------------------------

const T0 = 1_795_452_233_000_000_000n;
const ID_A = 'a'.repeat(64);
const ID_B = 'b'.repeat(64);
const ID_C = 'c'.repeat(64);
const NO_ROTATION: RotationOptions = { maxSize: 1e9, maxFile: 1, compress: false };

interface TestEntry {
  source?: string;
  t: bigint;
  line: string;
  partial?: { id: string; ordinal: number; last: boolean };
}

interface OutFrame {
  source: string;
  t: bigint;
  line: string;
}

/** The LogEntry bytes dockerd would send, partial metadata included. */
function entryBytes(e: TestEntry): Uint8Array {
  if (!e.partial) return encodeEntry(e.source ?? 'stdout', bigIntToParts(e.t), Buffer.from(e.line));
  const parts = bigIntToParts(e.t);
  return LogEntry.encode({
    source: e.source ?? 'stdout',
    timeNano: { low: parts.low, high: parts.high, unsigned: false } as never,
    line: Buffer.from(e.line),
    partial: true,
    partialLogMetadata: e.partial,
  }).finish();
}

function fifoFrame(e: TestEntry): Buffer {
  return frame(entryBytes(e));
}

function add(writer: ContainerLogWriter, e: TestEntry): void {
  const f = fifoFrame(e);
  writer.add(f, 4, f.length, bigIntToParts(e.t));
}

/** `count` stdout entries with times T0 + (first+i)µs and lines "line-<n>", flushed `perFlush` at a time. */
function writeNumbered(writer: ContainerLogWriter, first: number, count: number, perFlush = 1): void {
  for (let i = 0; i < count; i++) {
    const n = first + i;
    add(writer, { t: tAt(n), line: `line-${n}` });
    if ((i + 1) % perFlush === 0) writer.flush();
  }
  writer.flush();
}

function tAt(n: number): bigint {
  return T0 + BigInt(n) * 1000n;
}

function numbers(frames: OutFrame[]): number[] {
  return frames.map((f) => Number(/^line-(\d+)\n$/.exec(f.line)?.[1] ?? Number.NaN));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/** Splits a ReadLogs body into frames; fails if it does not end on a frame boundary. */
function splitFrames(body: Buffer): OutFrame[] {
  const frames: OutFrame[] = [];
  let pos = 0;
  while (pos < body.length) {
    expect(body.length - pos).toBeGreaterThanOrEqual(4);
    const n = body.readUInt32BE(pos);
    expect(body.length - pos - 4).toBeGreaterThanOrEqual(n);
    const e = decodeEntry(body.subarray(pos + 4, pos + 4 + n));
    frames.push({ source: e.source, t: partsToBigInt(e.timeNano), line: Buffer.from(e.line).toString() });
    pos += 4 + n;
  }
  return frames;
}

/** A Writable that keeps what it is given; can hold writes back to exercise backpressure. */
class Collector extends Writable {
  readonly chunks: Buffer[] = [];
  private held: (() => void)[] = [];
  private holding = false;
  private watchers: { frames: number; resolve: () => void }[] = [];

  constructor(highWaterMark = 16 * 1024) {
    super({ highWaterMark });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.chunks.push(chunk);
    const count = this.frames().length;
    this.watchers = this.watchers.filter((w) => (count >= w.frames ? (w.resolve(), false) : true));
    if (this.holding) this.held.push(() => done());
    else done();
  }

  body(): Buffer {
    return Buffer.concat(this.chunks);
  }

  frames(): OutFrame[] {
    return splitFrames(this.body());
  }

  untilFrames(count: number): Promise<void> {
    if (this.frames().length >= count) return Promise.resolve();
    return new Promise((resolve) => this.watchers.push({ frames: count, resolve }));
  }

  hold(): void {
    this.holding = true;
  }

  releaseHeld(): void {
    this.holding = false;
    const held = this.held;
    this.held = [];
    for (const done of held) done();
  }
}

interface LogLine {
  level: number;
  msg: string;
  container?: string;
  bytes?: number;
  segment?: string;
}

const roots: string[] = [];
const stores: LogStore[] = [];

afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  for (const r of roots.splice(0)) fs.rmSync(r, { recursive: true, force: true });
});

function tempRoot(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'shiplog-store-'));
  roots.push(root);
  return root;
}

async function openStore(root: string, budgetBytes = 1024 ** 3): Promise<{ store: LogStore; logs: LogLine[] }> {
  const logs: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) });
  const store = new LogStore({ root, budgetBytes, logger });
  await store.init();
  stores.push(store);
  return { store, logs };
}

async function readAll(store: LogStore, id: string, request: Partial<ReadRequest> = {}): Promise<OutFrame[]> {
  const out = new Collector();
  await store.read(id, { tail: -1, follow: false, ...request }, out);
  return out.frames();
}

/** Closes the store (which waits for running compressions) and opens a fresh one on the same root. */
async function reopen(store: LogStore, root: string, budgetBytes?: number): Promise<{ store: LogStore; logs: LogLine[] }> {
  await store.close();
  return openStore(root, budgetBytes);
}

function containerFiles(root: string, id: string): string[] {
  return fs.readdirSync(path.join(root, id)).sort();
}

/** Parses a store file into its records' LogEntry bodies, checking header == footer. */
function storedBodies(file: string): Buffer[] {
  let data = fs.readFileSync(file);
  if (file.endsWith('.gz')) data = zlib.gunzipSync(data);
  const bodies: Buffer[] = [];
  let pos = 0;
  while (pos < data.length) {
    const n = data.readUInt32BE(pos);
    expect(data.readUInt32BE(pos + 4 + n)).toBe(n);
    bodies.push(data.subarray(pos + 4, pos + 4 + n));
    pos += n + 8;
  }
  return bodies;
}

/** Rotation that puts exactly one flush in each segment (rotate before any write to a non-empty file). */
const ONE_FLUSH_PER_SEGMENT = (maxFile: number, compress: boolean): RotationOptions => ({ maxSize: 1, maxFile, compress });

// ---- tests --------------------------------------------------------------------------------------

describe('LogStore append and read', () => {
  it('round-trips entries: stored exactly as received, read back as ReadLogs frames with newline rules and only stdout/stderr', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w = store.openWriter(ID_A, NO_ROTATION);
    const entries: TestEntry[] = [
      { t: tAt(1), line: 'hello' },
      { source: 'stderr', t: tAt(2), line: 'oops\r' },
      { source: 'journal', t: tAt(3), line: 'not for docker logs' },
      { t: tAt(4), line: 'part-1/', partial: { id: 'p1', ordinal: 1, last: false } },
      { t: tAt(4), line: 'part-2/', partial: { id: 'p1', ordinal: 2, last: false } },
      { t: tAt(4), line: 'end', partial: { id: 'p1', ordinal: 3, last: true } },
      { t: tAt(5), line: 'noeol', partial: { id: 'p2', ordinal: 1, last: false } },
      { t: tAt(6), line: '' },
    ];
    // The driver hands views into a larger chunk that it reuses: the store must copy.
    const chunk = Buffer.concat(entries.map(fifoFrame));
    let pos = 0;
    for (const e of entries) {
      const n = chunk.readUInt32BE(pos) + 4;
      w.add(chunk, pos + 4, pos + n, bigIntToParts(e.t));
      pos += n;
    }
    w.flush();
    chunk.fill(0);

    const bodies = storedBodies(path.join(root, ID_A, 'container.log'));
    expect(bodies.map((b) => Buffer.from(b).toString('hex'))).toEqual(entries.map((e) => Buffer.from(entryBytes(e)).toString('hex')));

    const frames = await readAll(store, ID_A);
    expect(frames).toEqual([
      { source: 'stdout', t: tAt(1), line: 'hello\n' },
      { source: 'stderr', t: tAt(2), line: 'oops\r\n' },
      { source: 'stdout', t: tAt(4), line: 'part-1/' },
      { source: 'stdout', t: tAt(4), line: 'part-2/' },
      { source: 'stdout', t: tAt(4), line: 'end\n' },
      { source: 'stdout', t: tAt(5), line: 'noeol' },
      { source: 'stdout', t: tAt(6), line: '\n' },
    ]);
  });

  it('writes one record per entry with header == footer, and the file grows by exactly the flushed bytes', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w = store.openWriter(ID_A, NO_ROTATION);
    add(w, { t: tAt(1), line: 'x' });
    add(w, { t: tAt(2), line: 'yy' });
    const file = path.join(root, ID_A, 'container.log');
    expect(fs.statSync(file).size).toBe(0); // nothing before flush
    w.flush();
    const expected = [fifoFrame({ t: tAt(1), line: 'x' }), fifoFrame({ t: tAt(2), line: 'yy' })].reduce((n, f) => n + f.length + 4, 0);
    expect(fs.statSync(file).size).toBe(expected);
    expect(store.totalBytes).toBe(expected);
    expect(storedBodies(file)).toHaveLength(2);
  });

  it('resolves with nothing written for an unknown container id', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const out = new Collector();
    await store.read(ID_B, { tail: -1, follow: true }, out);
    await store.read('../etc', { tail: -1, follow: false }, out);
    expect(out.chunks).toHaveLength(0);
  });

  it('keeps the bytes of a 1 MB-ish entry intact but refuses to store one over 1e6 bytes', async () => {
    const root = tempRoot();
    const { store, logs } = await openStore(root);
    const w = store.openWriter(ID_A, NO_ROTATION);
    const big = 'z'.repeat(999_000);
    add(w, { t: tAt(1), line: big });
    add(w, { t: tAt(2), line: 'z'.repeat(1_000_001) });
    add(w, { t: tAt(3), line: 'after' });
    w.flush();
    const frames = await readAll(store, ID_A);
    expect(frames.map((f) => f.line.length)).toEqual([999_001, 6]);
    expect(logs.some((l) => l.level === 40 && l.msg.includes('over 1 MB'))).toBe(true);
  });
});

describe('LogStore rotation', () => {
  it('rotates like the local driver: shift .N-1 to .N, drop beyond max-file, current to .1', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w = store.openWriter(ID_A, ONE_FLUSH_PER_SEGMENT(3, false));
    writeNumbered(w, 0, 5, 1); // five flushes: five segments, three kept
    expect(containerFiles(root, ID_A)).toEqual(['container.log', 'container.log.1', 'container.log.2']);
    const lines = (f: string): string[] => storedBodies(path.join(root, ID_A, f)).map((b) => Buffer.from(decodeEntry(b).line).toString());
    expect(lines('container.log')).toEqual(['line-4']);
    expect(lines('container.log.1')).toEqual(['line-3']);
    expect(lines('container.log.2')).toEqual(['line-2']);
    expect(numbers(await readAll(store, ID_A))).toEqual([2, 3, 4]);
  });

  it('with max-file 1 unlinks and recreates the current file', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w = store.openWriter(ID_A, ONE_FLUSH_PER_SEGMENT(1, true));
    writeNumbered(w, 0, 3, 1);
    expect(containerFiles(root, ID_A)).toEqual(['container.log']);
    expect(numbers(await readAll(store, ID_A))).toEqual([2]);
  });

  it('compresses rotated segments in Docker format, lastTime in the gzip Extra field, never leaving a temp file', async () => {
    const root = tempRoot();
    const first = await openStore(root);
    const w = first.store.openWriter(ID_A, ONE_FLUSH_PER_SEGMENT(4, true));
    writeNumbered(w, 0, 8, 2); // four segments of two entries: [0,1] … [6,7]
    w.release();
    const { store } = await reopen(first.store, root);
    expect(containerFiles(root, ID_A)).toEqual(['container.log', 'container.log.1.gz', 'container.log.2.gz', 'container.log.3.gz']);
    const gz = fs.readFileSync(path.join(root, ID_A, 'container.log.1.gz'));
    expect(gz[3]! & 0x04).toBe(4); // FEXTRA
    const extra = gz.subarray(12, 12 + gz.readUInt16LE(10)).toString();
    expect(JSON.parse(extra)).toEqual({ lastTime: '2026-11-23T16:43:53.000005000Z' }); // entry 5
    expect(storedBodies(path.join(root, ID_A, 'container.log.1.gz'))).toHaveLength(2);
    expect(numbers(await readAll(store, ID_A))).toEqual(range(0, 8));
  });

  it('takes the newest writer\'s rotation options', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w1 = store.openWriter(ID_A, NO_ROTATION);
    writeNumbered(w1, 0, 3, 1);
    expect(containerFiles(root, ID_A)).toEqual(['container.log']);
    const w2 = store.openWriter(ID_A, ONE_FLUSH_PER_SEGMENT(2, false));
    w1.release();
    writeNumbered(w2, 3, 2, 1);
    expect(containerFiles(root, ID_A)).toEqual(['container.log', 'container.log.1']);
    expect(numbers(await readAll(store, ID_A))).toEqual([3, 4]);
  });
});

describe('LogStore tail', () => {
  /** 4 segments of 5 entries each (0-4, 5-9, 10-14, 15-19), optionally the rotated ones compressed. */
  async function fourSegments(compress: boolean): Promise<{ store: LogStore; root: string }> {
    const root = tempRoot();
    const first = await openStore(root);
    const w = first.store.openWriter(ID_A, ONE_FLUSH_PER_SEGMENT(10, compress));
    writeNumbered(w, 0, 20, 5);
    w.release();
    const { store } = await reopen(first.store, root);
    const expected = compress
      ? ['container.log', 'container.log.1.gz', 'container.log.2.gz', 'container.log.3.gz']
      : ['container.log', 'container.log.1', 'container.log.2', 'container.log.3'];
    expect(containerFiles(root, ID_A)).toEqual(expected);
    return { store, root };
  }

  for (const compress of [false, true]) {
    const kind = compress ? 'compressed' : 'plain';
    it(`returns exactly the last N entries on and across ${kind} segment boundaries`, async () => {
      const { store } = await fourSegments(compress);
      expect(numbers(await readAll(store, ID_A, { tail: 5 }))).toEqual(range(15, 20)); // exactly the current file
      expect(numbers(await readAll(store, ID_A, { tail: 10 }))).toEqual(range(10, 20)); // exactly two segments
      expect(numbers(await readAll(store, ID_A, { tail: 6 }))).toEqual(range(14, 20)); // one into .1
      expect(numbers(await readAll(store, ID_A, { tail: 16 }))).toEqual(range(4, 20)); // into the oldest
      expect(numbers(await readAll(store, ID_A, { tail: 20 }))).toEqual(range(0, 20));
      expect(numbers(await readAll(store, ID_A, { tail: 1 }))).toEqual([19]);
    });
  }

  it('tail 0 sends nothing; tail larger than the count sends everything; -1 sends all', async () => {
    const { store } = await fourSegments(true);
    expect(await readAll(store, ID_A, { tail: 0 })).toEqual([]);
    expect(numbers(await readAll(store, ID_A, { tail: 1000 }))).toEqual(range(0, 20));
    expect(numbers(await readAll(store, ID_A, { tail: -1 }))).toEqual(range(0, 20));
  });

  it('counts only entries a reader is sent (stdout/stderr)', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w = store.openWriter(ID_A, NO_ROTATION);
    add(w, { t: tAt(1), line: 'line-1' });
    add(w, { t: tAt(2), line: 'line-2' });
    add(w, { source: 'other', t: tAt(3), line: 'x' });
    add(w, { source: 'stderr', t: tAt(4), line: 'line-4' });
    w.flush();
    expect(numbers(await readAll(store, ID_A, { tail: 2 }))).toEqual([2, 4]);
  });

  it('reads only the end of a large plain file for a small tail (via the footers)', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w = store.openWriter(ID_A, NO_ROTATION);
    writeNumbered(w, 0, 20_000, 1000);
    const file = path.join(root, ID_A, 'container.log');
    // Break the start of the file: a forward scan would hit it, a footer walk from the end does not.
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4, 0);
    fs.closeSync(fd);
    expect(numbers(await readAll(store, ID_A, { tail: 3 }))).toEqual([19_997, 19_998, 19_999]);
  });
});

describe('LogStore since/until', () => {
  it('starts at the first entry >= since and stops after the last entry <= until, on segment boundaries', async () => {
    const root = tempRoot();
    const first = await openStore(root);
    const w = first.store.openWriter(ID_A, ONE_FLUSH_PER_SEGMENT(10, true));
    writeNumbered(w, 0, 20, 5);
    w.release();
    const { store } = await reopen(first.store, root);
    expect(numbers(await readAll(store, ID_A, { since: tAt(10) }))).toEqual(range(10, 20)); // first entry of a segment
    expect(numbers(await readAll(store, ID_A, { since: tAt(9) }))).toEqual(range(9, 20)); // last entry of a segment
    expect(numbers(await readAll(store, ID_A, { since: tAt(9) + 1n }))).toEqual(range(10, 20));
    expect(numbers(await readAll(store, ID_A, { until: tAt(4) }))).toEqual(range(0, 5));
    expect(numbers(await readAll(store, ID_A, { until: tAt(5) - 1n }))).toEqual(range(0, 5));
    expect(numbers(await readAll(store, ID_A, { since: tAt(4), until: tAt(15) }))).toEqual(range(4, 16));
    expect(numbers(await readAll(store, ID_A, { since: tAt(20) }))).toEqual([]);
  });

  it('skips whole compressed segments whose lastTime is older than since without reading them', async () => {
    const root = tempRoot();
    const first = await openStore(root);
    const w = first.store.openWriter(ID_A, ONE_FLUSH_PER_SEGMENT(10, true));
    writeNumbered(w, 0, 20, 5);
    w.release();
    await first.store.close();
    // Garble the deflate data of the oldest segment (entries 0-4), keeping its header and lastTime.
    const oldest = path.join(root, ID_A, 'container.log.3.gz');
    const gz = fs.readFileSync(oldest);
    const dataStart = 12 + gz.readUInt16LE(10);
    gz.fill(0xee, dataStart, gz.length - 8);
    fs.writeFileSync(oldest, gz);

    const { store, logs } = await openStore(root);
    expect(numbers(await readAll(store, ID_A, { since: tAt(5) }))).toEqual(range(5, 20));
    expect(numbers(await readAll(store, ID_A, { since: tAt(7), tail: 100 }))).toEqual(range(7, 20));
    expect(logs.filter((l) => l.level >= 40)).toEqual([]);
    // Without since the segment is read, found broken, reported once, and the rest still served.
    expect(numbers(await readAll(store, ID_A))).toEqual(range(5, 20));
    expect(logs.filter((l) => l.level === 40 && l.container === ID_A)).toHaveLength(1);
  });

  it('after the first entry >= since it stops checking since (stdout/stderr interleave)', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w = store.openWriter(ID_A, NO_ROTATION);
    add(w, { t: T0 + 10n, line: 'line-1' });
    add(w, { t: T0 + 20n, line: 'line-2' });
    add(w, { source: 'stderr', t: T0 + 15n, line: 'line-3' });
    add(w, { t: T0 + 30n, line: 'line-4' });
    w.flush();
    expect(numbers(await readAll(store, ID_A, { since: T0 + 18n }))).toEqual([2, 3, 4]);
    // The tail is taken over that same window.
    expect(numbers(await readAll(store, ID_A, { since: T0 + 18n, tail: 2 }))).toEqual([3, 4]);
    expect(numbers(await readAll(store, ID_A, { since: T0 + 18n, tail: 10 }))).toEqual([2, 3, 4]);
  });

  it('takes the tail over the since/until window: the last N entries inside it', async () => {
    const root = tempRoot();
    const first = await openStore(root);
    const w = first.store.openWriter(ID_A, ONE_FLUSH_PER_SEGMENT(10, true));
    writeNumbered(w, 0, 20, 5);
    w.release();
    const { store } = await reopen(first.store, root);
    expect(numbers(await readAll(store, ID_A, { until: tAt(10), tail: 3 }))).toEqual([8, 9, 10]);
    expect(numbers(await readAll(store, ID_A, { until: tAt(9), tail: 5 }))).toEqual(range(5, 10));
    expect(numbers(await readAll(store, ID_A, { since: tAt(3), until: tAt(12), tail: 4 }))).toEqual([9, 10, 11, 12]);
    expect(numbers(await readAll(store, ID_A, { since: tAt(3), until: tAt(6), tail: 40 }))).toEqual([3, 4, 5, 6]);
    expect(numbers(await readAll(store, ID_A, { since: tAt(16), tail: 10 }))).toEqual(range(16, 20));
  });
});

describe('LogStore follow', () => {
  /**
   * Resolves when a follower has caught up and starts waiting for a writer (a spy on the session's
   * wait), so a test can append knowing the entries can only reach the reader as live ones.
   */
  type Waiting = { waitForData(): Promise<void> };
  const proto = ReadSession.prototype as unknown as Waiting;
  const originalWait = proto.waitForData;
  let idleWaiters: (() => void)[] = [];
  beforeAll(() => {
    proto.waitForData = function waitForDataSpy(this: Waiting): Promise<void> {
      const waiting = originalWait.call(this);
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const resolve of waiters) resolve();
      return waiting;
    };
  });
  afterAll(() => {
    proto.waitForData = originalWait;
  });
  const followerIdle = (): Promise<void> => new Promise((resolve) => idleWaiters.push(resolve));

  it('streams the backlog, then entries appended after subscribing, across rotations, without gap or duplicate; ends when the last writer is released', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w = store.openWriter(ID_A, { maxSize: 300, maxFile: 100, compress: true });
    writeNumbered(w, 0, 50, 3);
    const out = new Collector();
    let finished = false;
    let idle = followerIdle();
    const reading = store.read(ID_A, { tail: -1, follow: true }, out).then(() => {
      finished = true;
    });
    // Appended in the same tick as the subscription, so while the backlog is being read.
    writeNumbered(w, 50, 50, 4);
    await idle;
    expect(numbers(out.frames())).toEqual(range(0, 100));
    // Appended while the follower waits: these arrive only as live entries, across more rotations.
    idle = followerIdle();
    writeNumbered(w, 100, 30, 2);
    await idle;
    expect(numbers(out.frames())).toEqual(range(0, 130));
    expect(finished).toBe(false);
    w.release();
    await reading;
    expect(numbers(out.frames())).toEqual(range(0, 130));
    expect(fs.readdirSync(path.join(root, ID_A)).length).toBeGreaterThan(10); // it did rotate
  });

  it('with tail N follows from the last N entries', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w = store.openWriter(ID_A, NO_ROTATION);
    writeNumbered(w, 0, 10, 5);
    const out = new Collector();
    const idle = followerIdle();
    const reading = store.read(ID_A, { tail: 2, follow: true }, out);
    await idle;
    writeNumbered(w, 10, 2);
    await out.untilFrames(4);
    w.release();
    await reading;
    expect(numbers(out.frames())).toEqual([8, 9, 10, 11]);
  });

  it('keeps following while another stream of the container is open (overlapping writers)', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w1 = store.openWriter(ID_A, NO_ROTATION);
    writeNumbered(w1, 0, 2);
    const out = new Collector();
    let finished = false;
    let idle = followerIdle();
    const reading = store.read(ID_A, { tail: -1, follow: true }, out).then(() => {
      finished = true;
    });
    await idle;
    const w2 = store.openWriter(ID_A, NO_ROTATION);
    idle = followerIdle();
    w1.release();
    await idle; // woken by the release, still following: w2 is open
    writeNumbered(w2, 2, 2);
    await out.untilFrames(4);
    expect(finished).toBe(false);
    w2.release();
    await reading;
    expect(numbers(out.frames())).toEqual([0, 1, 2, 3]);
  });

  it('on a container without an open writer behaves like a plain read: ends after the backlog', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w = store.openWriter(ID_A, NO_ROTATION);
    writeNumbered(w, 0, 3);
    w.release();
    const out = new Collector();
    await store.read(ID_A, { tail: -1, follow: true }, out);
    expect(numbers(out.frames())).toEqual([0, 1, 2]);
  });

  it('a slow reader (backpressure) still gets every entry in order, reading behind from the files, compressed ones included', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w = store.openWriter(ID_A, { maxSize: 2000, maxFile: 1000, compress: true });
    const out = new Collector(64);
    out.hold();
    const reading = store.read(ID_A, { tail: -1, follow: true }, out);
    writeNumbered(w, 0, 10, 10);
    await out.untilFrames(1); // the reader is now blocked on the held write
    writeNumbered(w, 10, 1990, 10); // many rotations while it waits
    out.releaseHeld();
    await out.untilFrames(2000);
    w.release();
    await reading;
    expect(numbers(out.frames())).toEqual(range(0, 2000));
  });

  it('a reader that falls behind past deleted segments skips them with one warning, never duplicating', async () => {
    const root = tempRoot();
    const { store, logs } = await openStore(root);
    const w = store.openWriter(ID_A, { maxSize: 1, maxFile: 3, compress: false });
    const out = new Collector(64);
    out.hold();
    const reading = store.read(ID_A, { tail: -1, follow: true }, out);
    writeNumbered(w, 0, 1);
    await out.untilFrames(1);
    writeNumbered(w, 1, 20, 1); // one entry per segment; only three segments survive
    out.releaseHeld();
    await out.untilFrames(3);
    w.release();
    await reading;
    const got = numbers(out.frames());
    expect(got[0]).toBe(0);
    expect(got.slice(-3)).toEqual([18, 19, 20]);
    for (let i = 1; i < got.length; i++) expect(got[i]!).toBeGreaterThan(got[i - 1]!);
    expect(logs.filter((l) => l.msg.includes('deleted before this reader'))).toHaveLength(1);
  });

  it('stops at once when the reader goes away', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w = store.openWriter(ID_A, NO_ROTATION);
    writeNumbered(w, 0, 2);
    const out = new Collector();
    const reading = store.read(ID_A, { tail: -1, follow: true }, out);
    await out.untilFrames(2);
    out.destroy();
    await reading; // resolves though the writer is still open
    writeNumbered(w, 2, 1);
    expect(numbers(out.frames())).toEqual([0, 1]);
  });

  it('ends followers on close()', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w = store.openWriter(ID_A, NO_ROTATION);
    writeNumbered(w, 0, 1);
    const out = new Collector();
    const reading = store.read(ID_A, { tail: -1, follow: true }, out);
    await out.untilFrames(1);
    await store.close();
    await reading;
  });

  it('follow with since waits for the first entry at or after since', async () => {
    const root = tempRoot();
    const { store } = await openStore(root);
    const w = store.openWriter(ID_A, NO_ROTATION);
    writeNumbered(w, 0, 3);
    const out = new Collector();
    const idle = followerIdle();
    const reading = store.read(ID_A, { tail: -1, follow: true, since: tAt(5) }, out);
    await idle;
    writeNumbered(w, 3, 4); // 3..6
    await out.untilFrames(2);
    w.release();
    await reading;
    expect(numbers(out.frames())).toEqual([5, 6]);
  });
});

describe('LogStore reopen and recovery', () => {
  it('reopening a container (also after a restart) neither truncates nor duplicates', async () => {
    const root = tempRoot();
    const first = await openStore(root);
    const w1 = first.store.openWriter(ID_A, NO_ROTATION);
    writeNumbered(w1, 0, 3);
    w1.release();
    // docker logs on a stopped container: dockerd opens a new stream first.
    const w2 = first.store.openWriter(ID_A, NO_ROTATION);
    expect(numbers(await readAll(first.store, ID_A))).toEqual([0, 1, 2]);
    writeNumbered(w2, 3, 1);
    w2.release();
    const { store } = await reopen(first.store, root);
    expect(numbers(await readAll(store, ID_A))).toEqual([0, 1, 2, 3]);
    const w3 = store.openWriter(ID_A, NO_ROTATION);
    writeNumbered(w3, 4, 1);
    expect(numbers(await readAll(store, ID_A))).toEqual([0, 1, 2, 3, 4]);
  });

  it('cuts a torn last record left by a crash at the last good record boundary', async () => {
    const root = tempRoot();
    const first = await openStore(root);
    const w = first.store.openWriter(ID_A, NO_ROTATION);
    writeNumbered(w, 0, 3);
    await first.store.close();
    const file = path.join(root, ID_A, 'container.log');
    const goodSize = fs.statSync(file).size;
    const torn = Buffer.concat([fifoFrame({ t: tAt(3), line: 'line-3' }), Buffer.from([0, 0, 0])]);
    fs.appendFileSync(file, torn.subarray(0, torn.length - 5)); // half a record
    const { store, logs } = await openStore(root);
    expect(fs.statSync(file).size).toBe(goodSize);
    expect(logs.some((l) => l.msg.includes('torn') && l.container === ID_A)).toBe(true);
    const w2 = store.openWriter(ID_A, NO_ROTATION);
    writeNumbered(w2, 4, 1);
    expect(numbers(await readAll(store, ID_A))).toEqual([0, 1, 2, 4]);
  });

  describe('dropStoredPrefix (a killed process may have stored part of the chunk it replays)', () => {
    /** Stores 0..stored-1 as one earlier process would, then replays `replay` entries in a new store. */
    async function replay(stored: number, replayFrom: number, replayTo: number): Promise<{ dropped: number; read: number[] }> {
      const root = tempRoot();
      const first = await openStore(root);
      writeNumbered(first.store.openWriter(ID_A, NO_ROTATION), 0, stored, stored);
      await first.store.close(); // the "kill": the writer is never released
      const { store } = await openStore(root);
      const w = store.openWriter(ID_A, NO_ROTATION);
      for (let n = replayFrom; n < replayTo; n++) add(w, { t: tAt(n), line: `line-${n}` });
      const dropped = w.dropStoredPrefix();
      w.flush();
      return { dropped, read: numbers(await readAll(store, ID_A)) };
    }

    it('drops the queued records that are exactly the last ones stored', async () => {
      expect(await replay(10, 6, 14)).toEqual({ dropped: 4, read: range(0, 14) });
    });

    it('drops all of them when the whole replayed chunk was stored', async () => {
      expect(await replay(10, 6, 10)).toEqual({ dropped: 4, read: range(0, 10) });
    });

    it('drops nothing when none of them was stored', async () => {
      expect(await replay(10, 10, 14)).toEqual({ dropped: 0, read: range(0, 14) });
    });

    it('drops nothing for an empty store', async () => {
      expect(await replay(0, 0, 3)).toEqual({ dropped: 0, read: range(0, 3) });
    });

    it('keeps a record that only looks like the last stored one but differs (time compared to the nanosecond)', async () => {
      const root = tempRoot();
      const first = await openStore(root);
      const w1 = first.store.openWriter(ID_A, NO_ROTATION);
      add(w1, { t: tAt(1), line: 'same' });
      w1.flush();
      await first.store.close();
      const { store } = await openStore(root);
      const w = store.openWriter(ID_A, NO_ROTATION);
      add(w, { t: tAt(1) + 1n, line: 'same' });
      expect(w.dropStoredPrefix()).toBe(0);
      w.flush();
      expect((await readAll(store, ID_A)).map((f) => f.t)).toEqual([tAt(1), tAt(1) + 1n]);
    });
  });

  it('drops the leftovers of an interrupted compression at init', async () => {
    const root = tempRoot();
    const first = await openStore(root);
    const w = first.store.openWriter(ID_A, ONE_FLUSH_PER_SEGMENT(3, false));
    writeNumbered(w, 0, 2);
    w.release();
    await first.store.close();
    const dir = path.join(root, ID_A);
    fs.writeFileSync(path.join(dir, '.container.log.seq0.gz.tmp'), 'half');
    fs.writeFileSync(path.join(dir, 'container.log.1.gz'), 'not really gzip');
    const { store } = await openStore(root);
    expect(containerFiles(root, ID_A)).toEqual(['container.log', 'container.log.1']);
    expect(numbers(await readAll(store, ID_A))).toEqual([0, 1]);
  });
});

describe('LogStore corruption', () => {
  it('a header/footer mismatch is logged once per read, skipped, and the rest still served', async () => {
    const root = tempRoot();
    const first = await openStore(root);
    const w = first.store.openWriter(ID_A, ONE_FLUSH_PER_SEGMENT(5, false));
    writeNumbered(w, 0, 12, 4); // [0-3] [4-7] [8-11]
    w.release();
    await first.store.close();
    // Break the footer of the second record of .2 (entries 0-3).
    const file = path.join(root, ID_A, 'container.log.2');
    const data = fs.readFileSync(file);
    const n0 = data.readUInt32BE(0);
    const second = n0 + 8;
    const n1 = data.readUInt32BE(second);
    data.writeUInt32BE(n1 + 1, second + 4 + n1);
    fs.writeFileSync(file, data);

    const { store, logs } = await openStore(root);
    expect(numbers(await readAll(store, ID_A))).toEqual([0, ...range(4, 12)]);
    expect(logs.filter((l) => l.level === 40 && l.container === ID_A)).toHaveLength(1);
    expect(numbers(await readAll(store, ID_A, { tail: 8 }))).toEqual(range(4, 12));
    // Walking back stops at the broken record: the tail starts just after it.
    expect(numbers(await readAll(store, ID_A, { tail: 11 }))).toEqual(range(2, 12));
  });

  it('skips a record that does not decode and a record over 1e6 bytes ends its segment', async () => {
    const root = tempRoot();
    const dir = path.join(root, ID_A);
    fs.mkdirSync(dir, { recursive: true });
    const record = (body: Buffer): Buffer => {
      const b = Buffer.alloc(body.length + 8);
      b.writeUInt32BE(body.length, 0);
      body.copy(b, 4);
      b.writeUInt32BE(body.length, body.length + 4);
      return b;
    };
    const good = (n: number): Buffer => record(Buffer.from(entryBytes({ t: tAt(n), line: `line-${n}` })));
    const huge = Buffer.alloc(12);
    huge.writeUInt32BE(2_000_000, 0);
    fs.writeFileSync(path.join(dir, 'container.log.1'), Buffer.concat([good(0), record(Buffer.from('0aff', 'hex')), good(1), huge]));
    fs.writeFileSync(path.join(dir, 'container.log'), good(2));
    const { store, logs } = await openStore(root);
    expect(numbers(await readAll(store, ID_A))).toEqual([0, 1, 2]);
    expect(logs.filter((l) => l.level === 40)).toHaveLength(1);
  });
});

describe('LogStore budget', () => {
  it('at init deletes the oldest segments of stopped containers first, logging each deletion, and removes emptied directories', async () => {
    const root = tempRoot();
    const first = await openStore(root);
    const rotation = ONE_FLUSH_PER_SEGMENT(10, false);
    const a = first.store.openWriter(ID_A, rotation);
    writeNumbered(a, 10, 6, 2); // oldest: 3 segments
    a.release();
    const b = first.store.openWriter(ID_B, rotation);
    writeNumbered(b, 20, 6, 2); // 3 segments, newer (same record sizes)
    b.release();
    await first.store.close();
    const segmentBytes = fs.statSync(path.join(root, ID_A, 'container.log')).size;
    const total = 6 * segmentBytes;

    // Room for four segments: A's two oldest go.
    const second = await openStore(root, total - 2 * segmentBytes);
    expect(second.store.totalBytes).toBe(4 * segmentBytes);
    expect(containerFiles(root, ID_A)).toEqual(['container.log']);
    expect(containerFiles(root, ID_B)).toHaveLength(3);
    const deletions = second.logs.filter((l) => l.level === 30 && l.msg.includes('deleted'));
    expect(deletions.map((l) => [l.container, l.segment, l.bytes])).toEqual([
      [ID_A, 'container.log.2', segmentBytes],
      [ID_A, 'container.log.1', segmentBytes],
    ]);
    expect(JSON.stringify(second.logs)).not.toContain('line-');
    await second.store.close();

    // Room for two: all of A (directory removed), then B's oldest.
    const third = await openStore(root, 2 * segmentBytes);
    expect(fs.existsSync(path.join(root, ID_A))).toBe(false);
    expect(containerFiles(root, ID_B)).toEqual(['container.log', 'container.log.1']);
    expect(numbers(await readAll(third.store, ID_B))).toEqual(range(22, 26));
    expect(await readAll(third.store, ID_A)).toEqual([]);
  });

  it('after a rotation deletes stopped containers\' segments before the live one\'s rotated segments, never its current file', async () => {
    const root = tempRoot();
    const first = await openStore(root);
    const rotation = ONE_FLUSH_PER_SEGMENT(100, false);
    const stopped = first.store.openWriter(ID_B, rotation);
    writeNumbered(stopped, 20, 2, 1);
    stopped.release();
    await first.store.close();
    const segmentBytes = fs.statSync(path.join(root, ID_B, 'container.log')).size;

    const { store, logs } = await openStore(root, 3 * segmentBytes);
    const live = store.openWriter(ID_C, rotation);
    writeNumbered(live, 10, 1, 1); // total 3 segments: within budget
    expect(logs.filter((l) => l.msg.includes('deleted'))).toEqual([]);
    writeNumbered(live, 11, 1, 1); // rotation, 4 segments: the stopped container's oldest goes
    expect(containerFiles(root, ID_B)).toEqual(['container.log']);
    writeNumbered(live, 12, 2, 1); // two more: B's last, then C's oldest rotated
    expect(fs.existsSync(path.join(root, ID_B))).toBe(false);
    writeNumbered(live, 14, 3, 1);
    expect(store.totalBytes).toBeLessThanOrEqual(3 * segmentBytes);
    expect(numbers(await readAll(store, ID_C))).toEqual([14, 15, 16]);
    expect(logs.filter((l) => l.msg.includes('deleted')).map((l) => l.container)).toEqual([ID_B, ID_B, ID_C, ID_C, ID_C, ID_C]);

    // A live container's current file survives even when it alone exceeds the budget.
    const big = store.openWriter(ID_A, NO_ROTATION);
    writeNumbered(big, 0, 50, 50);
    writeNumbered(live, 17, 1, 1);
    expect(fs.existsSync(path.join(root, ID_A, 'container.log'))).toBe(true);
    expect(fs.existsSync(path.join(root, ID_C, 'container.log'))).toBe(true);
  });
});
