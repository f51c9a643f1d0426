import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { type BatchLimits, type EncodedBatch, type EntryWriter, FatalSinkError, type LogRecord, RetryableSinkError, type Sink, type WriteOutcome, recordId } from '../sinks/sink.js';
import { DeadLetterFile } from '../src/dead-letters.js';
import { SinkRunner } from '../src/sink-runner.js';
import { nodeSpoolIo, type SpoolIo, type SpoolOptions } from '../src/spool/spool.js';
import { ENTRY_COST, lineOfEntry, RecordCodec } from './support/record-codec.js';
import { record } from './support/records.js';

const logger = pino({ level: 'silent' });
const limits: BatchLimits = { maxRecords: 3, maxBytes: 1 << 20, maxLatencyMs: 20, concurrency: 1, maxRetries: 5, backoffMaxMs: 5 };

/** What a script step may answer: records to retry or dead-letter (mapped to entry indices for the runner). */
interface RecordOutcome {
  retry?: readonly LogRecord[];
  deadLetters?: readonly { record: LogRecord; reason: string }[];
}

class ScriptedSink implements Sink {
  readonly name = 'scripted';
  readonly batches: string[][] = [];
  private readonly codec = new RecordCodec();
  constructor(private readonly script: ((batch: readonly LogRecord[], call: number) => Promise<RecordOutcome | void>)[] = []) {}
  encode(r: LogRecord, out: EntryWriter): void {
    this.codec.encode(r, out);
  }
  async write(encoded: EncodedBatch): Promise<WriteOutcome | void> {
    const batch = this.codec.records(encoded);
    const call = this.batches.length;
    this.batches.push(batch.map((r) => r.line.toString()));
    const step = this.script[call];
    const outcome = step ? await step(batch, call) : undefined;
    if (outcome === undefined) return undefined;
    return {
      retry: (outcome.retry ?? []).map((r) => batch.indexOf(r)),
      deadLetters: (outcome.deadLetters ?? []).map((d) => ({ index: batch.indexOf(d.record), reason: d.reason })),
    };
  }
  async close(): Promise<void> {}
}

function setup(sink: Sink, l: Partial<BatchLimits> = {}, queueLimit = 1 << 30) {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dl-')), 'dead.ndjson');
  const dead = new DeadLetterFile(file, logger);
  const runner = new SinkRunner(sink, { ...limits, ...l }, dead, logger, queueLimit);
  const deadLines = () => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').map((x) => {
    const letter = JSON.parse(x) as { reason: string; entry: string };
    return { reason: letter.reason, message: lineOfEntry(letter.entry) };
  }) : []);
  return { runner, deadLines };
}

describe('SinkRunner', () => {
  it('closes batches at maxRecords and sends the rest when the latency timer fires', async () => {
    const sink = new ScriptedSink();
    const { runner } = setup(sink);
    for (const l of ['a', 'b', 'c', 'd']) runner.push(record(l));
    await runner.idle();
    expect(sink.batches).toEqual([['a', 'b', 'c'], ['d']]);
    expect(runner.stats.delivered).toBe(4);
  });

  it('closes a batch on bytes', async () => {
    const sink = new ScriptedSink();
    const { runner } = setup(sink, { maxRecords: 100, maxBytes: 600 });
    for (const l of ['a', 'b', 'c', 'd']) runner.push(record(l)); // 256 bytes each: the third passes 600
    expect(sink.batches).toEqual([['a', 'b', 'c']]);
    await runner.idle();
    expect(sink.batches).toEqual([['a', 'b', 'c'], ['d']]);
  });

  it('sends a lone record after maxLatencyMs without more input', async () => {
    let written!: () => void;
    const wrote = new Promise<void>((r) => { written = r; });
    const sink = new ScriptedSink([async () => { written(); }]);
    const { runner } = setup(sink, { maxRecords: 100, maxLatencyMs: 10 });
    const pushedAt = Date.now();
    runner.push(record('alone'));
    expect(sink.batches).toEqual([]);
    await wrote;
    expect(Date.now() - pushedAt).toBeGreaterThanOrEqual(9);
    expect(sink.batches).toEqual([['alone']]);
  });

  it('with promptBytes, sends a batch that reached it when the task ends, with all the task pushed, and leaves a smaller one to its timer', async () => {
    let written!: () => void;
    const wrote = new Promise<void>((r) => { written = r; });
    const sink = new ScriptedSink([async () => { written(); }]);
    const { runner } = setup(sink, { maxRecords: 100, maxLatencyMs: 60_000, promptBytes: 600 });
    for (const l of ['a', 'b', 'c', 'd', 'e']) runner.push(record(l)); // 256 bytes each: 'c' reaches 600
    expect(sink.batches).toEqual([]); // not at once: the rest of the task joins the batch
    await wrote;
    expect(sink.batches).toEqual([['a', 'b', 'c', 'd', 'e']]);
    runner.push(record('f'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(sink.batches).toEqual([['a', 'b', 'c', 'd', 'e']]); // below promptBytes: waits for maxLatencyMs
    await runner.idle();
    expect(sink.batches).toEqual([['a', 'b', 'c', 'd', 'e'], ['f']]);
  });

  it.each([true, false])('a sink that releases batches on settle (%s) gets an acknowledged batch\'s buffer again; a batch being retried keeps its bytes', async (releases) => {
    /** Where a batch's bytes live: the same memory means the same buffer at the same offset. */
    const writes: { texts: string[]; memory: ArrayBufferLike; offset: number }[] = [];
    const same = (x: typeof writes[0], y: typeof writes[0]): boolean => x.memory === y.memory && x.offset === y.offset;
    let runner!: SinkRunner;
    class RecyclingSink implements Sink {
      readonly name = 'recycling';
      readonly releasesBatchOnSettle = releases;
      private readonly codec = new RecordCodec();
      encode(r: LogRecord, out: EntryWriter): void {
        this.codec.encode(r, out);
      }
      async write(batch: EncodedBatch): Promise<WriteOutcome | void> {
        const texts = this.codec.records(batch).map((r) => r.line.toString());
        writes.push({ texts, memory: batch.bytes.buffer, offset: batch.bytes.byteOffset });
        if (writes.length === 3) {
          // After 'c' failed and before its retry, 'd' is sealed: were c's buffer given back on
          // failure, d would take it and overwrite what the retry sends.
          setImmediate(() => {
            runner.push(record('d'));
            runner.flush();
          });
          throw new RetryableSinkError('try again');
        }
        return undefined;
      }
      async close(): Promise<void> {}
    }
    ({ runner } = setup(new RecyclingSink(), { maxRecords: 100 }));
    for (const l of ['a', 'b', 'c']) {
      runner.push(record(l));
      runner.flush();
      await runner.idle();
    }
    expect(writes.map((w) => w.texts)).toEqual([['a'], ['b'], ['c'], ['c'], ['d']]);
    const [a, b, c, cAgain, d] = writes as [typeof writes[0], typeof writes[0], typeof writes[0], typeof writes[0], typeof writes[0]];
    expect(same(cAgain, c)).toBe(true);
    expect(same(d, c)).toBe(false);
    expect(same(b, a)).toBe(releases);
  });

  it('retries a batch that failed with a retryable error until it is delivered', async () => {
    const fail = async () => { throw new RetryableSinkError('down'); };
    const sink = new ScriptedSink([fail, fail]);
    const { runner } = setup(sink);
    runner.push(record('x'));
    await runner.idle();
    expect(sink.batches).toEqual([['x'], ['x'], ['x']]);
    expect(runner.stats.delivered).toBe(1);
    expect(runner.stats.retried).toBe(2);
  });

  it('retries only the records the sink hands back, and dead-letters the refused ones with reasons', async () => {
    const sink = new ScriptedSink([
      async (b) => ({ retry: [b[1] as LogRecord], deadLetters: [{ record: b[2] as LogRecord, reason: 'mapper_parsing_exception' }] }),
    ]);
    const { runner, deadLines } = setup(sink);
    for (const l of ['ok', 'again', 'bad']) runner.push(record(l));
    await runner.idle();
    expect(sink.batches).toEqual([['ok', 'again', 'bad'], ['again']]);
    expect(runner.stats.delivered).toBe(2);
    expect(deadLines()).toEqual([expect.objectContaining({ reason: 'mapper_parsing_exception', message: 'bad' })]);
  });

  it('dead-letters a whole batch on a fatal error, and after maxRetries', async () => {
    const sink = new ScriptedSink([async () => { throw new FatalSinkError('401 unauthorized'); }, ...Array(10).fill(async () => { throw new Error('ECONNREFUSED'); })]);
    const { runner, deadLines } = setup(sink, { maxRecords: 1, maxRetries: 2 });
    runner.push(record('one'));
    runner.push(record('two'));
    await runner.idle();
    expect(deadLines().map((d) => [d.message, d.reason])).toEqual([
      ['one', '401 unauthorized'],
      ['two', 'retries exhausted (2): ECONNREFUSED'],
    ]);
    expect(runner.stats.deadLettered).toBe(2);
  });

  it('never waits on a stuck sink: past the memory bound it drops and counts', async () => {
    let release!: () => void;
    const stuck = new Promise<void>((r) => { release = r; });
    const sink = new ScriptedSink([async () => { await stuck; }]);
    const { runner } = setup(sink, { maxRecords: 1 }, 1000);
    for (let i = 0; i < 10; i++) runner.push(record(`r${i}`)); // 256 bytes each: 3 fit
    expect(runner.stats.dropped['queue-full']).toBe(7);
    release();
    await runner.idle();
    expect(runner.stats.delivered).toBe(3);
    expect(runner.stats.queuedBytes).toBe(0);
  });

  it('keeps batches in order with concurrency 1, also across retries', async () => {
    const sink = new ScriptedSink([async () => { throw new RetryableSinkError('429'); }]);
    const { runner } = setup(sink, { maxRecords: 1 });
    for (const l of ['1', '2', '3']) runner.push(record(l));
    await runner.idle();
    expect(sink.batches.flat()).toEqual(['1', '1', '2', '3']);
  });

  it('close() gives up after its deadline and counts what was not delivered', async () => {
    const sink = new ScriptedSink(Array(1000).fill(async () => { throw new RetryableSinkError('down'); }));
    const { runner } = setup(sink, { backoffMaxMs: 50, maxRetries: Infinity });
    runner.push(record('never'));
    await runner.close(100);
    expect(runner.stats.delivered).toBe(0);
    expect(runner.stats.dropped.shutdown).toBe(1);
  });
});

/** A backend that can be up, hanging (writes never answer until it comes up) or failing. */
class ControlledSink implements Sink {
  readonly name = 'controlled';
  /** Every write call's records, in call order. */
  readonly calls: LogRecord[][] = [];
  /** Records of writes that succeeded, in the order they succeeded. */
  readonly delivered: LogRecord[] = [];
  onWrite: ((call: number, batch: readonly LogRecord[]) => void) | undefined;
  private waiting: (() => void)[] = [];
  readonly codec = new RecordCodec();
  constructor(public mode: 'up' | 'hang' | 'fail' = 'up') {}
  encode(r: LogRecord, out: EntryWriter): void {
    this.codec.encode(r, out);
  }
  async write(encoded: EncodedBatch): Promise<void> {
    const batch = this.codec.records(encoded);
    this.calls.push([...batch]);
    this.onWrite?.(this.calls.length, batch);
    if (this.mode === 'fail') throw new RetryableSinkError('connection refused');
    if (this.mode === 'hang') await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.delivered.push(...batch);
  }
  /** From write call `call` on (1-based), the backend hangs; resolves when that call is made. */
  hangFrom(call: number): Promise<void> {
    return new Promise((resolve) => {
      this.onWrite = (n) => {
        if (n === call) {
          this.mode = 'hang';
          resolve();
        }
      };
    });
  }
  up(): void {
    this.mode = 'up';
    for (const resolve of this.waiting.splice(0)) resolve();
  }
  async close(): Promise<void> {}
}

const ids = (rs: readonly LogRecord[]) => rs.map(recordId);
const range = (n: number, prefix = 'r') => Array.from({ length: n }, (_, i) => record(`${prefix}${i}`, i));
const ONE = ENTRY_COST;

/**
 * Pushes `n` records `line <i>` into a runner whose sink hangs, tracking the most memory it held (as
 * each record is queued and at each write call). Returns that maximum so far.
 */
function pushTrackingQueue(runner: SinkRunner, sink: ControlledSink, n: number): () => number {
  let maxQueued = 0;
  sink.onWrite = () => { maxQueued = Math.max(maxQueued, runner.stats.queuedBytes); };
  for (let i = 0; i < n; i++) {
    runner.push(record(`line ${i}`, i));
    maxQueued = Math.max(maxQueued, runner.stats.queuedBytes);
  }
  return () => maxQueued;
}

/** A runner with a spool; memory first (SPOOL_WRITE_THROUGH=false) unless `writeThrough`. */
function spooledRunner(sink: Sink, o: { queueLimit: number; limits?: Partial<BatchLimits>; dir?: string; spool?: Partial<Omit<SpoolOptions, 'onDrop'>>; writeThrough?: boolean }) {
  const dir = o.dir ?? path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'runner-spool-')), 'spool');
  const dead = new DeadLetterFile(path.join(path.dirname(dir), 'dead.ndjson'), logger);
  const runner = new SinkRunner(sink, { ...limits, maxRecords: 10, maxRetries: Infinity, ...o.limits }, dead, logger, o.queueLimit, {
    dir, maxBytes: 1 << 30, logger, ...o.spool, writeThrough: o.writeThrough ?? false,
  });
  return { runner, dir };
}

const spooled = spooledRunner;

describe('SinkRunner with a disk spool, memory first (SPOOL_WRITE_THROUGH=false)', () => {
  it('never touches the disk while the memory queue has room', async () => {
    const sink = new ControlledSink();
    const { runner, dir } = spooled(sink, { queueLimit: 1 << 20 });
    for (const r of range(100)) runner.push(r);
    await runner.idle();
    expect(sink.delivered.length).toBe(100);
    expect(runner.stats.spooled).toBe(0);
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('past the memory bound, a stuck sink sends records to the spool; after it recovers every record arrives once, in order', async () => {
    const sink = new ControlledSink('hang');
    const { runner, dir } = spooled(sink, { queueLimit: 20 * ONE, limits: { concurrency: 1 } });
    const all = range(2000);
    for (const r of all) runner.push(r);
    expect(runner.stats.dropped).toEqual({});
    expect(runner.stats.spooled).toBeGreaterThanOrEqual(2000 - 20);
    expect(runner.stats.queuedBytes).toBeLessThanOrEqual(20 * ONE);
    sink.up();
    await runner.idle();
    expect(ids(sink.delivered)).toEqual(ids(all));
    expect(runner.stats.delivered).toBe(2000);
    expect(runner.stats.spoolBytes).toBe(0);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.seg'))).toEqual([]);
    await runner.close(1000);
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('keeps order with several batches in flight, also when the sink recovers while records still arrive', async () => {
    const sink = new ControlledSink('fail');
    const { runner } = spooled(sink, { queueLimit: 30 * ONE, limits: { concurrency: 3, backoffMaxMs: 2 } });
    const all = range(3000);
    for (const r of all.slice(0, 1500)) runner.push(r);
    sink.up();
    for (const r of all.slice(1500)) runner.push(r);
    await runner.idle();
    // Batches in flight together may finish in any order; each record arrives exactly once and
    // batches are handed to the sink in order.
    expect(new Set(ids(sink.delivered)).size).toBe(3000);
    expect(ids(sink.delivered).sort()).toEqual(ids(all).sort());
    const firstSeen = new Map<string, number>();
    sink.calls.forEach((batch, i) => batch.forEach((r) => { if (!firstSeen.has(recordId(r))) firstSeen.set(recordId(r), i); }));
    const order = all.map((r) => firstSeen.get(recordId(r)) as number);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(runner.stats.dropped).toEqual({});
  });

  it('memory stays bounded: queuedBytes never passes sink-queue-size while 100k records pass through a stuck sink', async () => {
    const sink = new ControlledSink('hang');
    const limit = 64 * 1024;
    const { runner } = spooled(sink, { queueLimit: limit, limits: { maxRecords: 500, maxBytes: 1 << 20, concurrency: 2 } });
    const n = 100_000;
    const maxQueued = pushTrackingQueue(runner, sink, n);
    expect(runner.stats.spoolBytes).toBeGreaterThan(10 * limit); // the backlog is on disk, not in memory
    sink.up();
    await runner.idle();
    expect(maxQueued()).toBeLessThanOrEqual(limit);
    expect(sink.delivered.length).toBe(n);
    expect(sink.delivered.every((r, i) => r.line.toString() === `line ${i}`)).toBe(true);
    expect(runner.stats.dropped).toEqual({});
  });

  it('when the spool is full, its oldest records are dropped and counted (spool-full); the rest arrive in order', async () => {
    const sink = new ControlledSink('hang');
    const { runner } = spooled(sink, { queueLimit: 10 * ONE, spool: { maxBytes: 40_000, segmentBytes: 5000 }, limits: { concurrency: 1 } });
    const all = range(3000);
    for (const r of all) runner.push(r);
    const dropped = runner.stats.dropped['spool-full'] ?? 0;
    expect(dropped).toBeGreaterThan(1000);
    sink.up();
    await runner.idle();
    expect(sink.delivered.length + dropped).toBe(3000);
    const index = sink.delivered.map((r) => Number(r.line.toString().slice(1)));
    expect(index).toEqual([...index].sort((a, b) => a - b));
    expect(index.slice(-100)).toEqual(Array.from({ length: 100 }, (_, i) => 2900 + i)); // the newest survive
    expect(runner.stats.dropped).toEqual({ 'spool-full': dropped });
  });

  it('a disk that fails with ENOSPC costs only the records that needed it (counted disk-full); nothing throws', async () => {
    const sink = new ControlledSink('hang');
    const enospc: SpoolIo = {
      ...nodeSpoolIo,
      writeSync: () => { throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }); },
    };
    const { runner } = spooled(sink, { queueLimit: 10 * ONE, spool: { io: enospc }, limits: { concurrency: 1 } });
    const all = range(100);
    expect(() => { for (const r of all) runner.push(r); runner.flush(); }).not.toThrow();
    expect(runner.stats.dropped['disk-full']).toBe(90);
    sink.up();
    await runner.idle();
    expect(ids(sink.delivered)).toEqual(ids(all.slice(0, 10)));
  });

  for (const mode of ['hang', 'fail'] as const) {
    it(`close(deadline) with a dead sink (${mode === 'hang' ? 'requests hang' : 'requests fail'}) keeps memory and spool on disk; the next runner delivers all exactly once, in order`, async () => {
      const dead = new ControlledSink(mode);
      const first = spooled(dead, { queueLimit: 50 * ONE, limits: { concurrency: 2, backoffMaxMs: 5 } });
      const all = range(300);
      for (const r of all) first.runner.push(r);
      await first.runner.close(50);
      expect(first.runner.stats.dropped).toEqual({});
      expect(first.runner.stats.delivered).toBe(0);
      dead.up(); // a write the runner gave up on may still land: the next start sends it again, same ids
      const sink = new ControlledSink();
      const second = spooled(sink, { dir: first.dir, queueLimit: 50 * ONE });
      await second.runner.idle();
      expect(ids(sink.delivered)).toEqual(ids(all));
      expect(ids(dead.delivered).every((id) => ids(all).includes(id))).toBe(true);
      await second.runner.close(1000);
      expect(fs.existsSync(first.dir)).toBe(false);
    });
  }

  it('a failing sink takes no new memory: after a failed write new records go to the disk spool; all arrive once, in order, after it recovers', async () => {
    const sink = new ControlledSink('fail');
    const { runner } = spooled(sink, { queueLimit: 1 << 20, limits: { concurrency: 1, backoffMaxMs: 5 } });
    const retried = new Promise<void>((resolve) => { sink.onWrite = (call) => { if (call === 2) resolve(); }; });
    const all = range(110);
    for (const r of all.slice(0, 10)) runner.push(r);
    runner.flush();
    await retried; // the first write failed
    for (const r of all.slice(10)) runner.push(r);
    expect(runner.stats.spooled).toBe(100);
    expect(runner.stats.queuedBytes).toBe(10 * ONE);
    sink.up();
    await runner.idle();
    expect(ids(sink.delivered)).toEqual(ids(all));
    expect(runner.stats.dropped).toEqual({});
    // Healthy again: records wait in memory, the spool is not touched.
    runner.push(record('after', 200));
    expect(runner.stats.spooled).toBe(100);
    await runner.idle();
    expect(sink.delivered.at(-1)?.line.toString()).toBe('after');
  });

  it('without a spool a failing sink keeps queueing in memory up to the bound (memory is its only buffer)', async () => {
    const sink = new ControlledSink('fail');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-nospool-'));
    const runner = new SinkRunner(sink, { ...limits, maxRecords: 10, maxRetries: Infinity, backoffMaxMs: 5, concurrency: 1 }, new DeadLetterFile(path.join(dir, 'dead.ndjson'), logger), logger, 1 << 20);
    const retried = new Promise<void>((resolve) => { sink.onWrite = (call) => { if (call === 2) resolve(); }; });
    const all = range(30);
    for (const r of all.slice(0, 10)) runner.push(r);
    runner.flush();
    await retried;
    for (const r of all.slice(10)) runner.push(r);
    expect(runner.stats.dropped).toEqual({});
    expect(runner.stats.queuedBytes).toBe(30 * ONE);
    sink.up();
    await runner.idle();
    expect(ids(sink.delivered)).toEqual(ids(all));
  });

  it.each([false, true])('maxQueuedRecords (write-through %s): a stuck sink holds at most that many records in memory, far below the byte bound; the backlog waits in the spool and arrives once, in order', async (writeThrough) => {
    const sink = new ControlledSink('hang');
    const { runner } = spooled(sink, { queueLimit: 1 << 30, limits: { maxRecords: 50, concurrency: 2, maxQueuedRecords: 200 }, writeThrough });
    const n = 5000;
    const maxQueued = pushTrackingQueue(runner, sink, n);
    expect(maxQueued()).toBeLessThanOrEqual(200 * ONE);
    expect(runner.stats.spooled).toBeGreaterThanOrEqual(n - 200);
    sink.up();
    await runner.idle();
    expect(maxQueued()).toBeLessThanOrEqual(200 * ONE); // also while the spool was read back
    expect(sink.delivered.length).toBe(n);
    expect(sink.delivered.every((r, i) => r.line.toString() === `line ${i}`)).toBe(true);
    expect(runner.stats.dropped).toEqual({});
  });

  it('maxQueuedRecords does not apply without a spool: memory is the only buffer, so records past it wait there', async () => {
    const sink = new ControlledSink('hang');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runner-nospool-'));
    const runner = new SinkRunner(sink, { ...limits, maxRecords: 10, maxQueuedRecords: 5, concurrency: 1 }, new DeadLetterFile(path.join(dir, 'dead.ndjson'), logger), logger, 1 << 20);
    const all = range(30);
    for (const r of all) runner.push(r);
    expect(runner.stats.dropped).toEqual({});
    expect(runner.stats.queuedBytes).toBe(30 * ONE);
    sink.up();
    await runner.idle();
    expect(ids(sink.delivered)).toEqual(ids(all));
  });

  it('close(deadline) with nothing spooled yet still keeps what is in memory for the next start', async () => {
    const dead = new ControlledSink('fail');
    const first = spooled(dead, { queueLimit: 1 << 20, limits: { backoffMaxMs: 5 } });
    const all = range(25);
    for (const r of all) first.runner.push(r);
    await first.runner.close(30);
    expect(first.runner.stats.spooled).toBe(25);
    const sink = new ControlledSink();
    const second = spooled(sink, { dir: first.dir, queueLimit: 1 << 20 });
    await second.runner.idle();
    expect(ids(sink.delivered)).toEqual(ids(all));
  });

  it('after a crash (no close), acknowledged batches stay delivered: only the batch in flight is sent again, with the same ids', async () => {
    const sink = new ControlledSink();
    const hangs = sink.hangFrom(6);
    const first = spooled(sink, { queueLimit: 25 * ONE, limits: { concurrency: 1 } });
    const all = range(200);
    for (const r of all) first.runner.push(r);
    await hangs;
    const inFlight = sink.calls[5] as LogRecord[];
    expect(inFlight.length).toBe(10); // a batch read back from the spool
    const acked = sink.delivered.length;
    expect(acked).toBeGreaterThan(25); // memory batches and spooled ones were acknowledged before the crash
    first.runner.spool?.abandon(); // the process dies: no close, no flush, no sync
    const next = new ControlledSink();
    const second = spooled(next, { dir: first.dir, queueLimit: 25 * ONE, limits: { concurrency: 1 } });
    await second.runner.idle();
    expect(ids(next.delivered)).toEqual(ids(all.slice(acked)));
    expect(ids(next.delivered.slice(0, inFlight.length))).toEqual(ids(inFlight));
    expect(ids([...sink.delivered, ...next.delivered])).toEqual(ids(all));
  });
});

/** What a spool directory would give a new process: every record after the checkpoint, read in order. */
const segFiles = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.seg')) : []);

/**
 * Write-through comes in two forms: a sink that sends each batch at the end of the task that filled it
 * (promptBytes: the file sink) has what is still unacknowledged written at the end of the turn, as
 * encoded bytes; any other sink has each record appended as it is queued, as a record. Both keep the
 * same promises, tested here for each (promptBytes that never seals early selects the first).
 */
for (const form of ['as queued', 'at the end of the turn'] as const) {
  const atTurnEnd = form === 'at the end of the turn';
  const spooled = (sink: Sink, o: Parameters<typeof spooledRunner>[1]) => spooledRunner(sink, { ...o, limits: { ...(atTurnEnd ? { promptBytes: Number.MAX_SAFE_INTEGER } : {}), ...o.limits } });
  describe(`SinkRunner with write-through (SPOOL_WRITE_THROUGH=true), written ${form}`, () => {
    it('a batch done while an earlier one is in flight holds no bytes while it waits for the spool checkpoint', async () => {
      v8.setFlagsFromString('--expose-gc');
      const gc = vm.runInNewContext('gc') as () => void;
      const codec = new RecordCodec();
      const written: WeakRef<EncodedBatch>[] = [];
      let releaseFirst = (): void => undefined;
      let secondWritten = (): void => undefined;
      const second = new Promise<void>((resolve) => { secondWritten = resolve; });
      const sink: Sink = {
        name: 'gated',
        encode: (r, out) => codec.encode(r, out),
        async write(batch) {
          written.push(new WeakRef(batch));
          if (written.length === 1) await new Promise<void>((resolve) => { releaseFirst = resolve; });
          else secondWritten();
        },
        async close() {},
      };
      const { runner } = spooled(sink, { queueLimit: 1 << 20, limits: { concurrency: 2, maxRecords: 1 }, writeThrough: true });
      runner.push(record('a')); // maxRecords 1: each record is its own batch, sent at once
      runner.push(record('b'));
      await second;
      await new Promise((resolve) => setTimeout(resolve, 10)); // b is acknowledged, waiting behind a
      expect(runner.stats.delivered).toBe(1);
      gc();
      expect(written[1]?.deref()).toBeUndefined(); // nothing holds b's batch (its bytes) any more
      releaseFirst();
      await runner.idle();
      expect(runner.stats.delivered).toBe(2);
      await runner.close(1000);
    });

    it('secure() puts every record waiting in memory into the spool; a sink that keeps up is fed from memory (no read from disk), and the checkpoint follows', async () => {
      const sink = new ControlledSink();
      const { runner, dir } = spooled(sink, { queueLimit: 1 << 20, writeThrough: true });
      const spool = runner.spool as NonNullable<typeof runner.spool>;
      const reads = vi.spyOn(spool, 'read');
      const all = range(500);
      for (const r of all.slice(0, 250)) runner.push(r);
      runner.secure(); // as the FIFO reader does before its pending file lets go of the chunk: none is delivered yet
      expect(segFiles(dir).length).toBe(1);
      expect(spool.isEmpty()).toBe(false);
      for (const r of all.slice(250)) runner.push(r);
      await runner.idle();
      expect(ids(sink.delivered)).toEqual(ids(all));
      expect(reads).not.toHaveBeenCalled();
      expect(spool.isEmpty()).toBe(true); // acknowledged up to the last record
      expect(runner.stats.spooled).toBe(0); // none had to wait on disk
      expect(runner.stats.dropped).toEqual({});
      await runner.close(1000);
      expect(fs.existsSync(dir)).toBe(false);
    });

    if (atTurnEnd) {
      it('a batch the sink acknowledges within the task that brought its records never touches the spool; one still waiting is written there on the next turn', async () => {
        const sink = new ControlledSink(); // acknowledges at once (a few microtasks)
        const { runner, dir } = spooled(sink, { queueLimit: 1 << 20, limits: { maxRecords: 10, maxLatencyMs: 60_000 }, writeThrough: true });
        const spool = runner.spool as NonNullable<typeof runner.spool>;
        const appends = vi.spyOn(spool, 'append');
        const all = range(105);
        for (const r of all.slice(0, 100)) runner.push(r); // ten full batches, sent as they are sealed
        for (const r of all.slice(100)) runner.push(r); // an open batch: its timer is a minute away
        await new Promise((resolve) => setImmediate(resolve)); // the next turn: the runner secured what still waits
        expect(ids(sink.delivered)).toEqual(ids(all.slice(0, 100)));
        // Written as the sink encoded them (bytes), held: the five of the open batch, nothing else.
        expect(appends.mock.calls.map(([e]) => lineOfEntry(Buffer.from(e as Uint8Array).toString()))).toEqual(all.slice(100).map((r) => r.line.toString()));
        expect(appends.mock.calls.every(([, held]) => held === true)).toBe(true);
        expect(segFiles(dir).length).toBe(1);
        runner.spool?.abandon(); // kill -9 now: the five waiting ones come again
        const next = new ControlledSink();
        const second = spooled(next, { dir, queueLimit: 1 << 20, writeThrough: true });
        await second.runner.idle();
        expect(ids(next.delivered)).toEqual(ids(all.slice(100)));
        await second.runner.close(1000);
      });
    }

    it('a crash (no close) with records only in memory: a new runner over the same directory delivers exactly the unacknowledged ones, same ids, in order', async () => {
      const sink = new ControlledSink();
      const hangs = sink.hangFrom(4);
      // Memory holds everything: with memory first, all of it would be lost.
      const first = spooled(sink, { queueLimit: 1 << 20, limits: { concurrency: 1, maxLatencyMs: 1 }, writeThrough: true });
      const all = range(200);
      for (const r of all.slice(0, 100)) first.runner.push(r);
      await hangs;
      for (const r of all.slice(100)) first.runner.push(r); // queued behind the hung batch
      await new Promise((resolve) => setTimeout(resolve, 5));
      const acked = sink.delivered.length;
      expect(acked).toBe(30); // three batches of 10 acknowledged
      expect(first.runner.stats.spooled).toBe(0);
      first.runner.spool?.abandon(); // kill -9: no close, no flush, no sync
      const next = new ControlledSink();
      const encodes = vi.spyOn(next, 'encode');
      const second = spooled(next, { dir: first.dir, queueLimit: 1 << 20, writeThrough: true });
      await second.runner.idle();
      expect(ids(next.delivered)).toEqual(ids(all.slice(acked)));
      // Written at the end of the turn, the spool gives them back as the first sink encoded them.
      if (atTurnEnd) expect(encodes).not.toHaveBeenCalled();
      else expect(encodes).toHaveBeenCalledTimes(all.length - acked);
      expect(second.runner.stats.dropped).toEqual({});
      await second.runner.close(1000);
      expect(fs.existsSync(first.dir)).toBe(false);
    });

    it('with batches acknowledged out of order (concurrency 3), the checkpoint stays behind the first one not done: after a crash every unacknowledged record comes again, in order', async () => {
      const sink = new ControlledSink();
      // Batch 2 of 5 never finishes; 1, 3, 4, 5 do.
      const gate: Record<number, boolean> = { 2: true };
      const writes: LogRecord[][] = [];
      const slow: Sink = {
        name: 'slow',
        encode: (r, out) => sink.codec.encode(r, out),
        write: async (encoded) => {
          const batch = sink.codec.records(encoded);
          writes.push([...batch]);
          if (gate[writes.length]) await new Promise(() => undefined);
          sink.delivered.push(...batch);
        },
        close: async () => undefined,
      };
      const first = spooled(slow, { queueLimit: 1 << 20, limits: { concurrency: 3, maxLatencyMs: 1 }, writeThrough: true });
      const all = range(50);
      for (const r of all) first.runner.push(r);
      first.runner.secure(); // before any batch is acknowledged: all five are in the spool
      await new Promise((resolve) => setTimeout(resolve, 30));
      expect(writes.length).toBe(5);
      expect(sink.delivered.length).toBe(40);
      first.runner.spool?.abandon();
      const next = new ControlledSink();
      const second = spooled(next, { dir: first.dir, queueLimit: 1 << 20, writeThrough: true });
      await second.runner.idle();
      // Everything from the batch that never finished on, although 3-5 were delivered already (same ids: at least once).
      expect(ids(next.delivered)).toEqual(ids(all.slice(10)));
      const delivered = new Set([...ids(sink.delivered), ...ids(next.delivered)]);
      expect(delivered.size).toBe(50);
    });

    it('memory stays bounded with a stuck sink: the backlog is on disk, read back once the reader falls behind memory, each record once, in order', async () => {
      const sink = new ControlledSink('hang');
      const limit = 64 * 1024;
      const { runner } = spooled(sink, { queueLimit: limit, limits: { maxRecords: 500, maxBytes: 1 << 20, concurrency: 2 }, writeThrough: true });
      const reads = vi.spyOn(runner.spool as NonNullable<typeof runner.spool>, 'read');
      const n = 100_000;
      const maxQueued = pushTrackingQueue(runner, sink, n);
      expect(runner.stats.spoolBytes).toBeGreaterThan(10 * limit);
      expect(runner.stats.spooled).toBeGreaterThan(n - Math.ceil(limit / ONE) - 1);
      sink.up();
      await runner.idle();
      expect(maxQueued()).toBeLessThanOrEqual(limit);
      expect(reads).toHaveBeenCalled();
      expect(sink.delivered.length).toBe(n);
      expect(sink.delivered.every((r, i) => r.line.toString() === `line ${i}`)).toBe(true);
      expect(runner.stats.dropped).toEqual({});
    });

    it('memory → disk → memory → disk again: the reader skips what memory holds, every record arrives once, in order; a crash after that still re-delivers exactly the rest', async () => {
      const sink = new ControlledSink('hang');
      const first = spooled(sink, { queueLimit: 20 * ONE, limits: { concurrency: 1 }, writeThrough: true, spool: { segmentBytes: 4096 } });
      const all = range(1000);
      for (const r of all.slice(0, 300)) first.runner.push(r); // overflows
      sink.up();
      await first.runner.idle(); // delivered: the spool is reset, records wait in memory again
      sink.mode = 'hang';
      for (const r of all.slice(300, 700)) first.runner.push(r); // 20 held in memory (and on disk), the rest on disk only
      expect(first.runner.stats.spooled).toBeGreaterThan(600 - 300 - 40);
      sink.up();
      await first.runner.idle();
      expect(ids(sink.delivered)).toEqual(ids(all.slice(0, 700)));
      const callsBefore = sink.calls.length;
      const hangs = sink.hangFrom(callsBefore + 3);
      for (const r of all.slice(700)) first.runner.push(r);
      await hangs;
      const acked = sink.delivered.length;
      first.runner.spool?.abandon();
      const next = new ControlledSink();
      const second = spooled(next, { dir: first.dir, queueLimit: 20 * ONE, writeThrough: true });
      await second.runner.idle();
      expect(ids(next.delivered)).toEqual(ids(all.slice(acked)));
    });

    for (const mode of ['hang', 'fail'] as const) {
      it(`close(deadline) with a dead sink (${mode}) stores nothing twice: the next runner delivers all exactly once, in order`, async () => {
        const dead = new ControlledSink(mode);
        const first = spooled(dead, { queueLimit: 50 * ONE, limits: { concurrency: 2, backoffMaxMs: 5 }, writeThrough: true });
        const all = range(300);
        for (const r of all) first.runner.push(r);
        await first.runner.close(50);
        expect(first.runner.stats.dropped).toEqual({});
        const sink = new ControlledSink();
        const second = spooled(sink, { dir: first.dir, queueLimit: 50 * ONE, writeThrough: true });
        await second.runner.idle();
        expect(ids(sink.delivered)).toEqual(ids(all));
        await second.runner.close(1000);
        expect(fs.existsSync(first.dir)).toBe(false);
      });
    }

    it('a disk that fails (ENOSPC) costs no record that memory holds: delivered, not counted as dropped', async () => {
      const sink = new ControlledSink();
      const enospc: SpoolIo = {
        ...nodeSpoolIo,
        writeSync: () => { throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }); },
      };
      const { runner } = spooled(sink, { queueLimit: 1 << 20, spool: { io: enospc }, writeThrough: true });
      const all = range(100);
      expect(() => { for (const r of all) runner.push(r); runner.flush(); }).not.toThrow();
      await runner.idle();
      expect(ids(sink.delivered)).toEqual(ids(all));
      expect(runner.stats.dropped).toEqual({});
    });

    it('a write that fails after positions were handed out moves on to a new segment, so no later record takes those offsets', async () => {
      let failNext = false;
      const io: SpoolIo = {
        ...nodeSpoolIo,
        writeSync: (fd, buf, off, len, pos) => {
          if (failNext) {
            failNext = false;
            throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
          }
          return nodeSpoolIo.writeSync(fd, buf, off, len, pos);
        },
      };
      const sink = new ControlledSink('hang');
      const first = spooled(sink, { queueLimit: 1 << 20, spool: { io }, limits: { concurrency: 1 }, writeThrough: true });
      const all = range(30);
      for (const r of all.slice(0, 10)) first.runner.push(r);
      first.runner.secure();
      failNext = true;
      for (const r of all.slice(10, 20)) first.runner.push(r);
      first.runner.secure(); // this write fails: in memory only
      for (const r of all.slice(20)) first.runner.push(r);
      first.runner.secure();
      expect(segFiles(first.dir).length).toBe(2);
      expect(first.runner.stats.dropped).toEqual({});
      first.runner.spool?.abandon();
      const next = new ControlledSink();
      const second = spooled(next, { dir: first.dir, queueLimit: 1 << 20, writeThrough: true });
      await second.runner.idle();
      // Nothing was acknowledged: what reached the disk comes back; the ten of the failed write were only in memory.
      expect(ids(next.delivered)).toEqual(ids([...all.slice(0, 10), ...all.slice(20)]));
    });
  });
}

describe('memory shared by all sink instances', () => {
  it('two runners on one MemoryBudget never hold more than it together, and a stuck one leaves a quarter of it to the other', async () => {
    const { MemoryBudget } = await import('../src/memory-budget.js');
    const budget = new MemoryBudget(2000);
    let release!: () => void;
    const stuck = new Promise<void>((r) => { release = r; });
    const blocked = new ScriptedSink([async () => { await stuck; }]);
    const free = new ScriptedSink();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mb-'));
    const mk = (sink: Sink) => new SinkRunner(sink, { ...limits, maxRecords: 1 }, new DeadLetterFile(path.join(dir, 'd.ndjson'), logger), logger, 1 << 30, undefined, budget);
    const a = mk(blocked);
    const b = mk(free);
    expect(budget.instanceLimitBytes).toBe(1500);
    for (let i = 0; i < 20; i++) a.push(record(`a${i}`)); // 256 bytes each: 5 fit in its share of 1500
    expect(a.stats.queuedBytes).toBe(1280);
    expect(a.stats.dropped['queue-full']).toBe(15);
    for (let i = 0; i < 4; i++) b.push(record(`b${i}`)); // 720 bytes left: two fit, without a spool the rest are dropped and counted
    expect(b.stats.dropped['queue-full']).toBe(2);
    expect(budget.usedBytes).toBe(1792);
    release();
    await a.idle();
    await b.idle();
    expect(budget.usedBytes).toBe(0);
    expect(free.batches.flat()).toEqual(['b0', 'b1']);
    await a.close(1000);
    expect(budget.instanceLimitBytes).toBe(2000); // alone again: all of it
    await b.close(1000);
  });

  it('a budget with one holder lends it all of it; with more, each at most three quarters', async () => {
    const { MemoryBudget, INSTANCE_SHARE } = await import('../src/memory-budget.js');
    const budget = new MemoryBudget(1000);
    budget.join();
    expect(budget.instanceLimitBytes).toBe(1000);
    budget.join();
    expect(INSTANCE_SHARE).toBe(3 / 4);
    expect(budget.instanceLimitBytes).toBe(750);
    budget.leave();
    expect(budget.instanceLimitBytes).toBe(1000);
  });
});
