/** Start-up recovery: sink instances recreated from their spool's meta.json deliver what an earlier run left. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { type ContainerMeta, type LogRecord, RetryableSinkError, type Sink, type SinkDefinition, recordId } from '../sinks/sink.js';
import { ENTRY_COST, RecordCodec } from './support/record-codec.js';
import { opt, optionTexts, parseTable } from '../src/option-table.js';
import { SinkPool } from '../src/sink-pool.js';
import { spoolDirFor } from '../src/spool/meta.js';
import { container, record } from './support/records.js';

const logger = pino({ level: 'silent' });
const ONE = ENTRY_COST;

/** One fake backend shared by every instance of the test sink; it can be down (writes fail). */
class Backend {
  up = false;
  readonly received: LogRecord[] = [];
  readonly created: { target: string; container: string }[] = [];
  private readonly codec = new RecordCodec();
  private onClose: (() => void)[] = [];
  closed(): Promise<void> {
    return new Promise((resolve) => this.onClose.push(resolve));
  }
  sink(target: string, c: ContainerMeta): Sink {
    this.created.push({ target, container: c.name });
    return {
      name: 'testsink',
      encode: (r, out) => this.codec.encode(r, out),
      write: async (batch) => {
        if (!this.up) throw new RetryableSinkError('connection refused');
        this.received.push(...this.codec.records(batch));
      },
      close: async () => { for (const resolve of this.onClose.splice(0)) resolve(); },
    };
  }
}

const table = {
  'test-target': opt.string('default-target', 'where the test sink ships'),
  'test-token': opt.string('', 'a secret', true),
} as const;

function testDefinition(backend: Backend): SinkDefinition<typeof table> {
  return {
    name: 'testsink',
    options: table,
    // The key depends on the container, as the file sink's path template does.
    instanceKey: (o, c) => `${o['test-target']}/${c.name}`,
    batchLimits: () => ({ maxRecords: 10, maxBytes: 1 << 20, maxLatencyMs: 5, concurrency: 1, maxRetries: Infinity, backoffMaxMs: 5 }),
    create: (o, ctx) => backend.sink(o['test-target'], ctx.container),
  };
}

function active(definition: SinkDefinition<typeof table>, config: Record<string, string>) {
  return { definition: definition as unknown as SinkDefinition, options: parseTable(table, config, {}), raw: optionTexts(table, config, {}) };
}

const ids = (rs: readonly LogRecord[]) => rs.map(recordId);
const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => record(`r${from + i}`, from + i));
const config = { 'test-target': 'east', 'test-token': 's3cret' };

/** A first run that spools `records` for a dead backend and stops; returns the spool directory. */
async function firstRun(stateDir: string, backend: Backend, records: readonly LogRecord[]): Promise<string> {
  const definition = testDefinition(backend);
  const pool = new SinkPool(stateDir, logger, 5 * ONE, 1000, { definitions: [definition as unknown as SinkDefinition] });
  const runner = pool.acquire(active(definition, config), container);
  for (const r of records) runner.push(r);
  await pool.closeAll(20);
  expect(runner.stats.dropped).toEqual({});
  return spoolDirFor(stateDir, 'testsink', `east/${container.name}`);
}

describe('spool recovery at start-up', () => {
  it('recreates the sink instance from meta.json and delivers every spooled record once, in order; then the instance closes and the spool is gone', async () => {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recover-'));
    const backend = new Backend();
    const all = range(100);
    const dir = await firstRun(stateDir, backend, all);
    const meta = JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8')) as { sink: string; options: Record<string, string>; container: ContainerMeta };
    expect(meta.sink).toBe('testsink');
    expect(meta.options).toEqual({ 'test-target': 'east', 'test-token': 's3cret' });
    expect(meta.container).toEqual(container);
    expect(fs.statSync(path.join(dir, 'meta.json')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);

    backend.up = true;
    const closed = backend.closed();
    const pool = new SinkPool(stateDir, logger, 5 * ONE, 1000, { definitions: [testDefinition(backend) as unknown as SinkDefinition] });
    expect(await pool.recoverSpools()).toBe(1);
    expect(backend.created.at(-1)).toEqual({ target: 'east', container: container.name });
    await closed;
    expect(ids(backend.received)).toEqual(ids(all));
    expect(pool.size).toBe(0);
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('a container that asks for the same instance while it drains shares the runner: old records first, new ones after, none twice', async () => {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recover-'));
    const backend = new Backend();
    const old = range(50);
    await firstRun(stateDir, backend, old);

    const definition = testDefinition(backend);
    const pool = new SinkPool(stateDir, logger, 5 * ONE, 1000, { definitions: [definition as unknown as SinkDefinition] });
    expect(await pool.recoverSpools()).toBe(1); // the backend is still down: nothing delivered yet
    const recovered = pool.runners()[0];
    const runner = pool.acquire(active(definition, config), container);
    expect(runner).toBe(recovered);
    const fresh = range(50, 50);
    for (const r of fresh) runner.push(r);
    backend.up = true;
    await pool.release(runner);
    expect(ids(backend.received)).toEqual(ids([...old, ...fresh]));
    expect(pool.size).toBe(0);
  });

  it('after a crash (kill -9: no close) with records held only in memory, the next start recreates the instance and delivers every unacknowledged one (write-through)', async () => {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recover-'));
    const backend = new Backend();
    backend.up = true;
    const definition = testDefinition(backend);
    const pool = new SinkPool(stateDir, logger, 1 << 20, 1000, { definitions: [definition as unknown as SinkDefinition], spoolWriteThrough: true });
    const runner = pool.acquire(active(definition, config), container);
    const all = range(100);
    for (const r of all.slice(0, 40)) runner.push(r);
    await runner.idle();
    backend.up = false;
    for (const r of all.slice(40)) runner.push(r); // in memory (room for all), failing and retried
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(runner.stats.spooled).toBe(0);
    runner.spool?.abandon(); // the process dies…
    await runner.close(1); // …and its retries with it (the spool is untouched: abandoned)

    const after = new Backend();
    after.up = true;
    const closed = after.closed();
    const next = new SinkPool(stateDir, logger, 1 << 20, 1000, { definitions: [testDefinition(after) as unknown as SinkDefinition], spoolWriteThrough: true });
    expect(await next.recoverSpools()).toBe(1);
    await closed;
    expect(ids(backend.received)).toEqual(ids(all.slice(0, 40)));
    expect(ids(after.received)).toEqual(ids(all.slice(40)));
    expect(next.size).toBe(0);
  });

  it('SPOOL_WRITE_THROUGH from the environment decides when the pool is not told (default true)', () => {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recover-'));
    const definition = testDefinition(new Backend());
    const runnerWith = (env: string | undefined, explicit?: boolean) => {
      const saved = process.env.SPOOL_WRITE_THROUGH;
      if (env === undefined) delete process.env.SPOOL_WRITE_THROUGH;
      else process.env.SPOOL_WRITE_THROUGH = env;
      try {
        const pool = new SinkPool(stateDir, logger, 1 << 20, 1000, explicit === undefined ? {} : { spoolWriteThrough: explicit });
        return pool.acquire(active(definition, config), container).writeThrough;
      } finally {
        if (saved === undefined) delete process.env.SPOOL_WRITE_THROUGH;
        else process.env.SPOOL_WRITE_THROUGH = saved;
      }
    };
    expect(runnerWith(undefined)).toBe(true);
    expect(runnerWith('false')).toBe(false);
    expect(runnerWith('true')).toBe(true);
    expect(runnerWith('false', true)).toBe(true);
    expect(() => runnerWith('maybe')).toThrow(/SPOOL_WRITE_THROUGH/);
  });

  it('a spool whose sink is unknown is left on disk and reported, not thrown', async () => {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recover-'));
    const dir = await firstRun(stateDir, new Backend(), range(10));
    const pool = new SinkPool(stateDir, logger, 5 * ONE, 1000, { definitions: [] });
    expect(await pool.recoverSpools()).toBe(0);
    expect(fs.readdirSync(dir).some((f) => f.endsWith('.seg'))).toBe(true);
  });

  it('with the spool turned off (spool-max-size 0) records past the memory bound are dropped and counted, and nothing is written', async () => {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recover-'));
    const backend = new Backend();
    const definition = testDefinition(backend);
    const pool = new SinkPool(stateDir, logger, 5 * ONE, 1000, { spoolMaxBytes: 0, definitions: [definition as unknown as SinkDefinition] });
    const runner = pool.acquire(active(definition, config), container);
    for (const r of range(20)) runner.push(r);
    expect(runner.stats.dropped['queue-full']).toBe(15);
    await pool.closeAll(10);
    expect(fs.existsSync(path.join(stateDir, 'spool'))).toBe(false);
    expect(await pool.recoverSpools()).toBe(0);
  });
});
