/**
 * The machinery every sink gets, written once: batches closed by records, bytes or a max-latency
 * timer that starts at a batch's first record; at most `concurrency` batches in flight (p-queue);
 * retries with capped, jittered exponential backoff; dead letters with reasons; a bounded in-memory
 * queue, and past it the instance's disk spool, so a slow or dead sink never makes the FIFO reader
 * wait and never costs memory beyond the bound.
 *
 * Memory holds bytes, not records: push() has the sink encode a record into its wire form at once
 * (Sink.encode), into the open batch's buffer (sinks/encoded-batch.ts); records read back from the
 * spool are encoded as they are read. The record objects therefore die young, in the garbage
 * collector's nursery; a queue of record objects waiting for a batch timer or a backend got promoted,
 * and the old generation grew with the traffic (RSS over 300 MiB in a 200k-line outage).
 *
 * Order: records are sent in the order they were pushed. While the memory queue has room, records
 * wait there. The first record that does not fit — or, with a spool, the first one after a write
 * failed or asked for a retry (an outage spends no shared memory) — switches the runner to
 * *spooling*: from then on every new record goes to the spool (also when memory frees up), and the
 * spool is read back, in order, in batches that fit the memory bound, after the batches already in
 * memory. Once the spool is read to its end and every batch read from it acknowledged, the runner
 * goes back to memory.
 *
 * Write-through (the default; `writeThrough: false` is memory first): a record that waits in memory
 * is also appended to the spool, as a *held* record (see spool.ts): it is written with the others of
 * its FIFO chunk at the end of the task and synced in the background, the reader skips it, and its
 * batch carries the position just past its last record. Memory batches and batches read back from
 * the spool then acknowledge alike: the checkpoint follows the first batch not yet done, after each
 * acknowledged batch. So memory is only a cache of the spool's newest records, nothing is read back
 * from disk while the sink keeps up, and after a crash (kill -9) the next start delivers everything
 * after the checkpoint: what was in memory too. Without write-through, records only in memory at a
 * crash are lost.
 *
 * Delivery is at least once: a spooled record leaves the spool only when the sink acknowledged its
 * batch (or dead-lettered it); a batch in flight when shiplog stops or crashes is sent again, with the
 * same records and so the same ids (recordId).
 *
 * close(deadline) delivers what it can within the deadline, then puts what is still only in memory
 * (queued batches, and batches in flight that are not acknowledged) into the spool, before the
 * spooled records, so the next start delivers everything in the original order.
 *
 * Without a spool (spool-max-size 0), records past the memory bound are dropped and counted
 * ('queue-full'), and those still undelivered at close too ('shutdown').
 */
import { MemoryBudget } from './memory-budget.js';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { BatchBuilder, type BatchLimits, EncodedBatch, FatalSinkError, type LogRecord, type Sink } from '../sinks/sink.js';
import { backoffDelay, sleep } from './backoff.js';
import type { DeadLetterFile } from './dead-letters.js';
import type { Position } from './spool/checkpoint.js';
import { Spool, type SpoolOptions } from './spool/spool.js';

const RETRY_BASE_MS = 250;
/** After a deadline passed, how long sink.close() may take (it may wait on requests given up on). */
const LATE_SINK_CLOSE_MS = 1000;
const DROP_LOG_INTERVAL_MS = 60_000;

export interface SinkRunnerStats {
  received: number;
  delivered: number;
  retried: number;
  deadLettered: number;
  /** By reason: queue-full (no spool), shutdown, spool-full, disk-full, spool-corrupt, spool-error. */
  dropped: Record<string, number>;
  inFlightBatches: number;
  /** Bytes of records held in memory (never above sink-queue-size, but for one record larger than it). */
  queuedBytes: number;
  lastError: string;
  /** Records written to the spool (overflow, and memory saved at close). */
  spooled: number;
  /** Bytes of the spool's files now. */
  spoolBytes: number;
}

/** Memory a queued entry costs beyond its encoded bytes (its offset in the batch, its share of the batch object). */
export const ENTRY_OVERHEAD_BYTES = 16;

/** A sealed batch, from memory or read back from the spool, until it is acknowledged. */
interface Pending {
  readonly seq: number;
  /**
   * The batch as sealed, for a sink that lets its buffer be reused (Sink.releasesBatchOnSettle):
   * given back and cleared once the batch is done. Undefined otherwise, so a done batch waiting in
   * spoolAcks for an earlier one holds no bytes.
   */
  sealed: EncodedBatch | undefined;
  /** Entries not yet acknowledged, encoded by the sink (after a partial success: the ones to retry). */
  batch: EncodedBatch;
  /** Memory accounted for it (encoded bytes plus ENTRY_OVERHEAD_BYTES per entry). */
  readonly bytes: number;
  /** In the spool (read back, or written through): acknowledging it moves the spool's checkpoint here. */
  readonly end: Position | undefined;
  /**
   * Its records that are only in memory (all of them without write-through; with it, those whose held
   * append failed): close() must spool them if the batch is not acknowledged by then.
   */
  readonly kept: readonly LogRecord[];
  done: boolean;
}

/** An empty batch (what is left of one that is delivered). */
const NO_ENTRIES = new BatchBuilder().seal();

const ABORTED = Symbol('aborted');

/** Resolves with `promise`'s value, or with ABORTED as soon as `signal` aborts (the promise is then ignored). */
function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | typeof ABORTED> {
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.resolve(ABORTED);
  }
  return new Promise((resolve, reject) => {
    const onAbort = (): void => resolve(ABORTED);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => { signal.removeEventListener('abort', onAbort); resolve(value); },
      (err: unknown) => { signal.removeEventListener('abort', onAbort); reject(err); },
    );
  });
}

export class SinkRunner {
  readonly stats: SinkRunnerStats = {
    received: 0, delivered: 0, retried: 0, deadLettered: 0, dropped: {}, inFlightBatches: 0, queuedBytes: 0, lastError: '', spooled: 0, spoolBytes: 0,
  };
  /** The open batch: records encoded by the sink as they are pushed. */
  private readonly batch = new BatchBuilder();
  /** Memory accounted for the open batch. */
  private batchBytes = 0;
  /** Write-through: the spool position just past the open batch's last record. */
  private batchEnd: Position | undefined;
  /** Records of the open batch that are only in memory (see Pending.kept). */
  private batchKept: LogRecord[] = [];
  private batchTimer: NodeJS.Timeout | undefined;
  /** The open batch reached promptBytes: its seal is queued for the end of the current task. */
  private sealQueued = false;
  private readonly sending: PQueue;
  private readonly abort = new AbortController();
  private readonly lastDropLog = new Map<string, number>();
  private lastSpoolLog = 0;
  /** Sealed batches not yet acknowledged, in the order they were sealed. */
  private readonly unacked = new Map<number, Pending>();
  /** Batches in the spool (read back, or written through), in order: the checkpoint follows the first not yet done. */
  private readonly spoolAcks: Pending[] = [];
  private seq = 0;
  /** New records go to the spool (see the module comment). */
  private spooling = false;
  private reading: Promise<void> | undefined;
  /** Something pumped while a read was running: look again when it ends. */
  private pumpAgain = false;
  private closed = false;
  /** close() stopped reading the spool and sending. */
  private stopping = false;
  /**
   * The last write failed or asked to retry entries (backend down, refusing, throttling): with a
   * spool, new records go there instead of taking memory, so an outage does not fill the shared
   * budget that healthy instances use to ride out short delays. Cleared by a write that succeeds.
   */
  private failing = false;
  private closing: Promise<void> | undefined;
  private idleWaiters: (() => void)[] = [];
  /** The instance's disk spool (undefined: none, records past the memory bound are dropped). */
  readonly spool: Spool | undefined;
  /** Records waiting in memory are also in the spool (see the module comment). */
  readonly writeThrough: boolean;
  /** The sink lets an acknowledged batch's buffer be reused (Sink.releasesBatchOnSettle): seal into pooled buffers. */
  private readonly reusesBatchBuffers: boolean;

  constructor(
    readonly sink: Sink,
    private readonly limits: BatchLimits,
    private readonly deadLetters: DeadLetterFile,
    private readonly logger: Logger,
    private readonly queueLimitBytes: number,
    /**
     * Where and how big the instance's disk spool is; without it, records past the memory bound are
     * dropped. `writeThrough` (default true): every record goes to the spool, also those that wait in memory.
     */
    spoolOptions?: Omit<SpoolOptions, 'onDrop' | 'flushPerTask'> & { readonly writeThrough?: boolean },
    /** Memory shared with every other sink instance (the pool passes one); by default this runner's own. */
    private readonly budget: MemoryBudget = new MemoryBudget(queueLimitBytes),
  ) {
    this.sending = new PQueue({ concurrency: Math.max(1, limits.concurrency) });
    const { writeThrough = true, ...options } = spoolOptions ?? {};
    this.writeThrough = spoolOptions !== undefined && writeThrough;
    this.reusesBatchBuffers = sink.releasesBatchOnSettle === true;
    const spool = spoolOptions !== undefined
      ? new Spool({ ...(options as Omit<SpoolOptions, 'onDrop'>), flushPerTask: this.writeThrough, onDrop: (reason, count) => this.drop(reason, count) })
      : undefined;
    this.spool = spool;
    if (spool !== undefined) {
      this.stats.spoolBytes = spool.bytes;
      if (spool.hasUnread()) {
        this.spooling = true; // records from before a restart go first
        this.pump();
      }
    }
  }

  /** Takes one record; never waits. */
  push(record: LogRecord): void {
    this.stats.received++;
    if (this.closed) return this.drop('shutdown', 1);
    if (!this.spooling) {
      // Encoded now, so what waits in memory is bytes: the record object dies young.
      this.sink.encode(record, this.batch);
      const bytes = this.batch.endEntry() + ENTRY_OVERHEAD_BYTES;
      const memoryOpen = !this.failing || this.spool === undefined;
      if (memoryOpen && this.stats.queuedBytes + bytes <= this.queueLimitBytes && this.budget.tryTake(bytes)) {
        this.stats.queuedBytes += bytes;
        if (this.writeThrough) {
          const spool = this.spool as Spool;
          const end = spool.append(record, true);
          if (end !== undefined) this.batchEnd = end;
          else this.batchKept.push(record);
          this.stats.spoolBytes = spool.bytes;
        } else {
          this.batchKept.push(record);
        }
        this.batchBytes += bytes;
        if (this.batch.count >= this.limits.maxRecords || this.batchBytes >= this.limits.maxBytes) {
          this.seal();
        } else if (this.limits.promptBytes !== undefined && this.batchBytes >= this.limits.promptBytes) {
          this.sealAtEndOfTask();
        } else if (this.batchTimer === undefined) {
          this.batchTimer = setTimeout(() => this.seal(), this.limits.maxLatencyMs);
        }
        return;
      }
      this.batch.removeLast();
      if (this.spool === undefined) return this.drop('queue-full', 1);
      this.seal(); // what is in memory goes before anything spooled
      this.spooling = true;
      this.logSpooling(memoryOpen
        ? 'sink backlog reached sink-queue-size: new records go to the disk spool until it is delivered'
        : 'sink is failing: new records go to the disk spool until it is delivered');
    }
    const spool = this.spool as Spool;
    spool.append(record);
    this.stats.spooled++;
    this.stats.spoolBytes = spool.bytes;
    this.pump();
  }

  /** Sends the open batch now instead of waiting for its timer. */
  flush(): void {
    this.seal();
    if (this.spooling || this.writeThrough) this.spool?.flush();
    if (this.spooling) this.pump();
  }

  /** Resolves when nothing is buffered, spooled or in flight. */
  idle(): Promise<void> {
    this.flush();
    if (this.isIdle() || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Delivers what it can within `deadlineMs` (spool included), then stops: batches not acknowledged
   * by then — also ones the sink may still be writing — go to the spool (without one: counted as
   * dropped, 'shutdown'), and the sink is closed.
   */
  close(deadlineMs: number): Promise<void> {
    this.closing ??= this.closeNow(deadlineMs);
    return this.closing;
  }

  private async closeNow(deadlineMs: number): Promise<void> {
    this.seal();
    this.batch.release();
    this.closed = true;
    let gaveUp = false;
    if (this.isIdle()) {
      // Nothing to deliver: the spool directory goes now, synchronously, so a new runner for the
      // same instance (a container starting while this one closes) never meets this one's files.
      if (this.spool !== undefined && !this.spool.discardIfEmpty()) await this.spool.close();
    } else {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), deadlineMs); });
      const drained = new Promise<'idle'>((resolve) => this.idleWaiters.push(() => resolve('idle')));
      const result = await Promise.race([drained, late]);
      clearTimeout(timer);
      this.stopping = true;
      if (result === 'late') {
        gaveUp = true;
        this.abort.abort();
        this.sending.clear();
      }
      await this.sending.onIdle();
      await this.reading;
      this.saveUnacknowledged();
      if (this.spool !== undefined) {
        await this.spool.close();
        this.stats.spoolBytes = this.spool.bytes;
      }
    }
    // Past the deadline everything is in the spool already; a sink whose close waits on requests
    // given up on (an HTTP client draining its pool) must not hold shutdown much longer.
    let timer: NodeJS.Timeout | undefined;
    const closing = Promise.resolve().then(() => this.sink.close()).then(() => 'closed' as const, (err: unknown) => {
      this.logger.warn({ err }, 'sink did not close cleanly');
      return 'closed' as const;
    });
    const outcome = gaveUp
      ? await Promise.race([closing, new Promise<'slow'>((resolve) => { timer = setTimeout(() => resolve('slow'), LATE_SINK_CLOSE_MS); })])
      : await closing;
    clearTimeout(timer);
    if (outcome === 'slow') this.logger.warn('sink still closing (requests in flight were given up on); not waiting for it');
  }

  /**
   * At close: records held only in memory go to the spool, ahead of the spooled ones. (Written-through
   * batches are there already, after the checkpoint; one whose append failed in part is stored whole:
   * at least once.)
   */
  private saveUnacknowledged(): void {
    const memory: LogRecord[] = [];
    for (const p of this.unacked.values()) {
      if (!p.done) memory.push(...p.kept);
    }
    this.unacked.clear();
    this.spoolAcks.length = 0;
    this.budget.give(this.stats.queuedBytes);
    this.stats.queuedBytes = 0; // what was held is in the spool now (or counted as dropped)
    if (memory.length === 0) return;
    if (this.spool === undefined) {
      this.drop('shutdown', memory.length);
      return;
    }
    const stored = this.spool.storeBefore(memory);
    this.stats.spooled += stored;
    this.stats.spoolBytes = this.spool.bytes;
    this.logger.info({ records: stored }, 'undelivered records kept in the spool for the next start');
  }

  private isIdle(): boolean {
    return this.batch.count === 0 && this.unacked.size === 0 && !this.spooling && this.reading === undefined;
  }

  private checkIdle(): void {
    if (!this.isIdle() || this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * The records pushed in the rest of this task (a FIFO chunk's are pushed synchronously) join the
   * batch, which goes out when the task ends: memory holds them for microseconds, not a timer's wait.
   */
  private sealAtEndOfTask(): void {
    if (this.sealQueued) return;
    this.sealQueued = true;
    queueMicrotask(() => {
      this.sealQueued = false;
      if (!this.closed) this.seal();
    });
  }

  private seal(): void {
    if (this.batchTimer !== undefined) {
      clearTimeout(this.batchTimer);
      this.batchTimer = undefined;
    }
    if (this.batch.count === 0) return;
    const batch = this.batch.seal(this.reusesBatchBuffers);
    const bytes = this.batchBytes;
    const end = this.batchEnd;
    const kept = this.batchKept;
    this.batchBytes = 0;
    this.batchEnd = undefined;
    this.batchKept = [];
    this.enqueue(batch, bytes, end, kept);
  }

  private enqueue(batch: EncodedBatch, bytes: number, end: Position | undefined, kept: readonly LogRecord[]): void {
    const sealed = this.reusesBatchBuffers ? batch : undefined;
    const p: Pending = { seq: this.seq++, sealed, batch, bytes, end, kept, done: false };
    this.unacked.set(p.seq, p);
    if (end !== undefined) this.spoolAcks.push(p);
    void this.sending.add(() => this.deliver(p));
  }

  /**
   * Reads the next batch from the spool when the sink can take one: at most `concurrency` batches in
   * flight plus one ready, and only as many bytes as the memory bound leaves.
   */
  private pump(): void {
    const spool = this.spool;
    if (spool === undefined || !this.spooling || this.stopping) return;
    if (this.reading !== undefined) {
      this.pumpAgain = true;
      return;
    }
    if (this.sending.size + this.sending.pending > this.limits.concurrency) return;
    const room = Math.min(this.queueLimitBytes - this.stats.queuedBytes, this.budget.freeBytes);
    const maxBytes = Math.min(this.limits.maxBytes, room);
    if (maxBytes <= 0 && this.stats.queuedBytes > 0) return;
    this.reading = spool.read(this.limits.maxRecords, Math.max(0, maxBytes), this.stats.queuedBytes === 0).then(
      (result) => {
        this.reading = undefined;
        const again = this.pumpAgain;
        this.pumpAgain = false;
        this.stats.spoolBytes = spool.bytes;
        if (this.stopping) return; // what was read stays in the spool, unacknowledged
        if (result.kind === 'batch') {
          const batch = EncodedBatch.encode(this.sink, result.batch.records, this.reusesBatchBuffers);
          const bytes = batch.bytes.length + batch.count * ENTRY_OVERHEAD_BYTES;
          this.stats.queuedBytes += bytes;
          this.budget.force(bytes);
          this.enqueue(batch, bytes, result.batch.end, []);
          this.pump();
        } else if (result.kind === 'empty') {
          if (spool.hasUnread()) this.pump();
          else this.leaveSpoolIfDone();
        } else if (again) {
          this.pump(); // 'no-room', but a batch finished meanwhile
        }
        // else 'no-room': the next acknowledgement frees memory and pumps again
      },
      (err: unknown) => {
        this.reading = undefined;
        this.pumpAgain = false;
        this.logger.error({ err }, 'spool read failed; trying again in a second');
        setTimeout(() => this.pump(), 1000).unref();
      },
    );
  }

  /** The spool is read to its end and all it gave is acknowledged: back to memory. */
  private leaveSpoolIfDone(): void {
    const spool = this.spool;
    if (spool === undefined || !this.spooling || this.reading !== undefined || this.spoolAcks.length > 0 || this.stopping) return;
    if (spool.hasUnread()) return;
    spool.reset();
    this.stats.spoolBytes = spool.bytes;
    this.spooling = false;
    this.logSpooling('spool delivered: records wait in memory again');
    this.checkIdle();
  }

  private async deliver(p: Pending): Promise<void> {
    this.stats.inFlightBatches++;
    try {
      p.done = await this.send(p);
    } finally {
      this.stats.inFlightBatches--;
      if (p.done) {
        p.sealed?.release();
        p.sealed = undefined;
        this.stats.queuedBytes -= p.bytes;
        this.budget.give(p.bytes);
        this.unacked.delete(p.seq);
        if (p.end !== undefined) this.acknowledgeSpooled();
      }
      this.pump();
      this.checkIdle();
    }
  }

  /** The checkpoint moves past every leading spooled batch that is done. */
  private acknowledgeSpooled(): void {
    let last: Pending | undefined;
    while (this.spoolAcks[0]?.done === true) last = this.spoolAcks.shift();
    if (last?.end !== undefined && this.spool !== undefined) {
      this.spool.ack(last.end);
      this.stats.spoolBytes = this.spool.bytes;
    }
    if (this.spoolAcks.length === 0 && this.reading === undefined) this.leaveSpoolIfDone();
  }

  /** Sends until every entry is delivered or dead-lettered (true), or close() gave up (false). */
  private async send(p: Pending): Promise<boolean> {
    const signal = this.abort.signal;
    let attempt = 0;
    while (p.batch.count > 0) {
      if (signal.aborted) return false;
      const todo = p.batch;
      try {
        const outcome = await unlessAborted(this.sink.write(todo), signal);
        if (outcome === ABORTED) return false;
        const retry = outcome?.retry ?? [];
        const dead = outcome?.deadLetters ?? [];
        if (dead.length > 0) {
          this.stats.deadLettered += dead.length;
          await this.deadLetters.append(dead.map((d) => ({ entry: todo.entry(d.index), reason: d.reason })));
        }
        this.stats.delivered += todo.count - retry.length - dead.length;
        p.batch = retry.length === 0 ? NO_ENTRIES : todo.select(retry);
        this.failing = retry.length > 0;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        this.stats.lastError = message;
        this.failing = !(err instanceof FatalSinkError);
        if (err instanceof FatalSinkError) {
          this.logger.error({ records: todo.count, err: message }, 'sink refused a batch for good; records written to dead letters');
          await this.deadLetter(todo, message);
          p.batch = NO_ENTRIES;
          return true;
        }
      }
      const retrying = p.batch.count;
      if (retrying === 0) return true;
      attempt++;
      if (attempt > this.limits.maxRetries) {
        await this.deadLetter(p.batch, `retries exhausted (${this.limits.maxRetries}): ${this.stats.lastError}`);
        p.batch = NO_ENTRIES;
        return true;
      }
      this.stats.retried += retrying;
      if (attempt === 1 || attempt % 10 === 0) {
        this.logger.warn({ records: retrying, attempt, err: this.stats.lastError }, 'sink delivery failed; retrying with backoff');
      }
      await sleep(backoffDelay(attempt, RETRY_BASE_MS, this.limits.backoffMaxMs), signal);
    }
    return true;
  }

  /** Every entry of `batch` to the dead-letter file, with `reason`. */
  private async deadLetter(batch: EncodedBatch, reason: string): Promise<void> {
    this.stats.deadLettered += batch.count;
    const letters = [];
    for (let i = 0; i < batch.count; i++) letters.push({ entry: batch.entry(i), reason });
    await this.deadLetters.append(letters);
  }

  private drop(reason: string, count: number): void {
    this.stats.dropped[reason] = (this.stats.dropped[reason] ?? 0) + count;
    const now = Date.now();
    if (now - (this.lastDropLog.get(reason) ?? 0) >= DROP_LOG_INTERVAL_MS) {
      this.lastDropLog.set(reason, now);
      this.logger.error({ reason, dropped: this.stats.dropped }, 'records dropped (counted; logged at most once a minute per reason)');
    }
  }

  private logSpooling(msg: string): void {
    const now = Date.now();
    if (now - this.lastSpoolLog < DROP_LOG_INTERVAL_MS) return;
    this.lastSpoolLog = now;
    this.logger.warn({
      spoolBytes: this.stats.spoolBytes, queuedBytes: this.stats.queuedBytes, sharedQueuedBytes: this.budget.usedBytes,
      unackedBatches: this.unacked.size, inFlightBatches: this.stats.inFlightBatches,
    }, msg);
  }
}
