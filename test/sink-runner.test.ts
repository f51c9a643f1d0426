import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { type BatchLimits, FatalSinkError, type LogRecord, RetryableSinkError, type Sink, type WriteOutcome } from '../sinks/sink.js';
import { DeadLetterFile } from '../src/dead-letters.js';
import { SinkRunner } from '../src/sink-runner.js';
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
