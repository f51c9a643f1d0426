import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { type BatchLimits, FatalSinkError, type LogRecord, RetryableSinkError, type Sink, type WriteOutcome, recordBytes, recordId } from '../sinks/sink.js';
import { DeadLetterFile } from '../src/dead-letters.js';
import { SinkRunner } from '../src/sink-runner.js';
import { nodeSpoolIo, type SpoolIo, type SpoolOptions } from '../src/spool/spool.js';
import { record } from './support/records.js';

const logger = pino({ level: 'silent' });
const limits: BatchLimits = { maxRecords: 3, maxBytes: 1 << 20, maxLatencyMs: 20, concurrency: 1, maxRetries: 5, backoffMaxMs: 5 };

class ScriptedSink implements Sink {
  readonly name = 'scripted';
  readonly batches: string[][] = [];
  constructor(private readonly script: ((batch: readonly LogRecord[], call: number) => Promise<WriteOutcome | void>)[] = []) {}
  async write(batch: readonly LogRecord[]): Promise<WriteOutcome | void> {
    const call = this.batches.length;
    this.batches.push(batch.map((r) => r.line.toString()));
    const step = this.script[call];
    return step ? step(batch, call) : undefined;
  }
  async close(): Promise<void> {}
}

function setup(sink: Sink, l: Partial<BatchLimits> = {}, queueLimit = 1 << 30) {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dl-')), 'dead.ndjson');
  const dead = new DeadLetterFile(file, logger);
  const runner = new SinkRunner(sink, { ...limits, ...l }, dead, logger, queueLimit);
  const deadLines = () => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').map((x) => JSON.parse(x) as { reason: string; message: string }) : []);
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
    for (const l of ['a', 'b', 'c', 'd']) runner.push(record(l)); // ~257 bytes each: the third passes 600
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
    for (let i = 0; i < 10; i++) runner.push(record(`r${i}`)); // ~257 bytes each: 3 fit
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
  constructor(public mode: 'up' | 'hang' | 'fail' = 'up') {}
  async write(batch: readonly LogRecord[]): Promise<void> {
    this.calls.push([...batch]);
    this.onWrite?.(this.calls.length, batch);
    if (this.mode === 'fail') throw new RetryableSinkError('connection refused');
    if (this.mode === 'hang') await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.delivered.push(...batch);
  }
  up(): void {
    this.mode = 'up';
    for (const resolve of this.waiting.splice(0)) resolve();
  }
  async close(): Promise<void> {}
}

const ids = (rs: readonly LogRecord[]) => rs.map(recordId);
const range = (n: number, prefix = 'r') => Array.from({ length: n }, (_, i) => record(`${prefix}${i}`, i));
const ONE = recordBytes(record('r0'));

function spooled(sink: Sink, o: { queueLimit: number; limits?: Partial<BatchLimits>; dir?: string; spool?: Partial<Omit<SpoolOptions, 'onDrop'>> }) {
  const dir = o.dir ?? path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'runner-spool-')), 'spool');
  const dead = new DeadLetterFile(path.join(path.dirname(dir), 'dead.ndjson'), logger);
  const runner = new SinkRunner(sink, { ...limits, maxRecords: 10, maxRetries: Infinity, ...o.limits }, dead, logger, o.queueLimit, { dir, maxBytes: 1 << 30, logger, ...o.spool });
  return { runner, dir };
}

describe('SinkRunner with a disk spool', () => {
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
    let maxQueued = 0;
    sink.onWrite = () => { maxQueued = Math.max(maxQueued, runner.stats.queuedBytes); };
    const n = 100_000;
    for (let i = 0; i < n; i++) {
      runner.push(record(`line ${i}`, i));
      maxQueued = Math.max(maxQueued, runner.stats.queuedBytes);
    }
    expect(runner.stats.spoolBytes).toBeGreaterThan(10 * limit); // the backlog is on disk, not in memory
    sink.up();
    await runner.idle();
    expect(maxQueued).toBeLessThanOrEqual(limit);
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
    let hung!: () => void;
    const hangs = new Promise<void>((resolve) => { hung = resolve; });
    sink.onWrite = (call) => {
      if (call === 6) {
        sink.mode = 'hang';
        hung();
      }
    };
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
