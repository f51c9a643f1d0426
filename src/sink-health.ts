/**
 * Sink instances seen from outside, for /metrics and /health: a SinkPool that remembers every runner
 * it hands out (with its sink name and instance key) and folds a runner's counters into per-sink
 * totals when the runner closes, so counters survive the instance; and a thin wrapper around each
 * sink that notes whether its last write succeeded, for the health report. Nothing here is on the
 * per-line path: the wrapper sees one call per batch.
 */
import type { ContainerMeta, EncodedBatch, EntryWriter, LogRecord, Sink, SinkDefinition, WriteOutcome } from '../sinks/sink.js';
import { FatalSinkError } from '../sinks/sink.js';
import type { ActiveSink } from './options.js';
import { SinkPool } from './sink-pool.js';
import type { SinkRunner, SinkRunnerStats } from './sink-runner.js';

/** Counters of a sink (by name) summed over its instances, closed ones included. */
export interface SinkTotals {
  received: number;
  delivered: number;
  retried: number;
  deadLettered: number;
  /** Records written to the disk spool (overflow past the memory bound, and memory saved at close). */
  spooled: number;
  dropped: Record<string, number>;
}

/** What the last write of a sink instance told. */
export interface WriteProbe {
  /** False after a write that failed or left records to retry, until a write succeeds. */
  lastWriteOk: boolean;
  lastError: string;
  /** ISO time of the last write attempt ('' before the first). */
  lastWriteAt: string;
}

export interface SinkInstanceHealth {
  readonly sink: string;
  /** The sink's instance key (file path, or ES URL/index/options with secrets fingerprinted); URL credentials hidden. */
  readonly instance: string;
  /** ok: the last write succeeded (or none yet); retrying: it failed and records wait (memory or spool) for the next try. */
  readonly state: 'ok' | 'retrying';
  readonly lastError: string;
  readonly lastWriteAt: string;
  /** Bytes of records waiting in memory. */
  readonly backlogBytes: number;
  /** Bytes of the instance's disk spool. */
  readonly spoolBytes: number;
  readonly inFlightBatches: number;
  readonly delivered: number;
  readonly retried: number;
  readonly deadLettered: number;
  readonly dropped: Readonly<Record<string, number>>;
}

interface Tracked {
  readonly sink: string;
  readonly instance: string;
  readonly probe: WriteProbe;
}

export class TrackedSinkPool extends SinkPool {
  private readonly tracked = new Map<SinkRunner, Tracked>();
  private readonly closedTotals = new Map<string, SinkTotals>();

  override acquire(active: ActiveSink, container: ContainerMeta): SinkRunner {
    const instance = active.definition.instanceKey(active.options, container);
    const probe: WriteProbe = { lastWriteOk: true, lastError: '', lastWriteAt: '' };
    const inner = active.definition;
    const definition: SinkDefinition = { ...inner, create: (opts, ctx) => new ProbedSink(inner.create(opts, ctx), probe) };
    const runner = super.acquire({ ...active, definition }, container); // `raw` too: the spool keeps it for recovery
    if (!this.tracked.has(runner)) this.tracked.set(runner, { sink: inner.name, instance, probe });
    return runner;
  }

  override async release(runner: SinkRunner): Promise<void> {
    await super.release(runner);
    if (!this.runners().includes(runner)) this.retire(runner);
  }

  override async closeAll(deadlineMs: number): Promise<void> {
    await super.closeAll(deadlineMs);
    for (const runner of [...this.tracked.keys()]) this.retire(runner);
  }

  /** Per sink name: counters of open and closed instances, summed. */
  totals(): Map<string, SinkTotals> {
    const out = new Map<string, SinkTotals>();
    for (const [name, t] of this.closedTotals) addTotals(totalsFor(out, name), t);
    for (const [runner, t] of this.tracked) addTotals(totalsFor(out, t.sink), runner.stats);
    return out;
  }

  /** Every open instance with its runner's live counters and the last write's outcome. */
  instances(): SinkInstanceHealth[] {
    return [...this.tracked].map(([runner, t]) => {
      const s = runner.stats;
      const pending = s.queuedBytes > 0 || s.inFlightBatches > 0 || s.spoolBytes > 0;
      return {
        sink: t.sink,
        instance: hideUrlCredentials(t.instance),
        state: !t.probe.lastWriteOk && pending ? 'retrying' : 'ok',
        lastError: t.probe.lastError !== '' ? t.probe.lastError : s.lastError,
        lastWriteAt: t.probe.lastWriteAt,
        backlogBytes: s.queuedBytes,
        spoolBytes: s.spoolBytes,
        inFlightBatches: s.inFlightBatches,
        delivered: s.delivered,
        retried: s.retried,
        deadLettered: s.deadLettered,
        dropped: { ...s.dropped },
      };
    });
  }

  private retire(runner: SinkRunner): void {
    const t = this.tracked.get(runner);
    if (t === undefined) return;
    this.tracked.delete(runner);
    addTotals(totalsFor(this.closedTotals, t.sink), runner.stats);
  }
}

/** Passes every call through; notes the outcome of each write for the health report. */
class ProbedSink implements Sink {
  constructor(private readonly inner: Sink, private readonly probe: WriteProbe) {}

  get name(): string {
    return this.inner.name;
  }

  get releasesBatchOnSettle(): boolean {
    return this.inner.releasesBatchOnSettle === true;
  }

  encode(record: LogRecord, out: EntryWriter): void {
    this.inner.encode(record, out);
  }

  async write(batch: EncodedBatch): Promise<WriteOutcome | void> {
    this.probe.lastWriteAt = new Date().toISOString();
    try {
      const outcome = await this.inner.write(batch);
      const retry = outcome?.retry?.length ?? 0;
      this.probe.lastWriteOk = retry === 0;
      if (retry > 0) this.probe.lastError = `the backend asked to retry ${retry} of ${batch.count} records`;
      return outcome;
    } catch (err) {
      this.probe.lastError = err instanceof Error ? err.message : String(err);
      // A batch refused for good goes to dead letters: nothing waits for the backend.
      this.probe.lastWriteOk = err instanceof FatalSinkError;
      throw err;
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function totalsFor(map: Map<string, SinkTotals>, sink: string): SinkTotals {
  let t = map.get(sink);
  if (t === undefined) {
    t = { received: 0, delivered: 0, retried: 0, deadLettered: 0, spooled: 0, dropped: {} };
    map.set(sink, t);
  }
  return t;
}

function addTotals(into: SinkTotals, from: Readonly<SinkTotals> | Readonly<SinkRunnerStats>): void {
  into.received += from.received;
  into.delivered += from.delivered;
  into.retried += from.retried;
  into.deadLettered += from.deadLettered;
  into.spooled += from.spooled;
  for (const [reason, n] of Object.entries(from.dropped)) into.dropped[reason] = (into.dropped[reason] ?? 0) + n;
}

/** `https://user:secret@es:9200` → `https://***@es:9200`: instance keys carry URLs as given. */
export function hideUrlCredentials(text: string): string {
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/@\s"]+@/gi, '$1***@');
}
