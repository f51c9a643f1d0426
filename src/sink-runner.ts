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
 * is also in the spool, as a *held* record (see spool.ts): the reader skips it, and its batch carries
 * the position just past its last one. For a sink that sends a batch at the end of the task that
 * filled it (BatchLimits.promptBytes: the file sink writes a fast stream's FIFO read at the end of
 * that read) only what is not acknowledged by the end of the turn goes there: secure() — called by
 * the FIFO reader before its pending file lets go of the bytes the records came from (log-stream.ts),
 * and by the runner itself on the next event-loop turn — writes those entries as the sink encoded
 * them, in one write, so a fast stream such a sink keeps up with costs the spool nothing. Any other sink (Elasticsearch:
 * requests take longer than a turn) has each record appended as it is queued, in the spool's compact
 * record form, written with the others of its FIFO chunk at the end of the task. Either way the
 * spool is synced in the background. Batches that went through the spool and batches read back from
 * it acknowledge alike: the checkpoint follows the first batch not yet done, after each acknowledged
 * batch. So memory is only a cache of the spool's newest records, nothing is read back from disk
 * while the sink keeps up, and after a crash (kill -9) the next start delivers everything after the
 * checkpoint, and the FIFO reader's pending file the records that were not secured yet. Without
 * write-through, records only in memory at a crash are lost.
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
import { ENTRY_OVERHEAD_BYTES } from '../sinks/encoded-batch.js';
import { BatchBuilder, type BatchLimits, type EncodedBatch, FatalSinkError, type LogRecord, type Sink } from '../sinks/sink.js';
import { backoffDelay, sleep } from './backoff.js';
import type { DeadLetterFile } from './dead-letters.js';
import type { Position } from './spool/checkpoint.js';
import { Spool, type SpoolOptions, type SpoolReader } from './spool/spool.js';

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
  /** Its entries as sealed, counted in queuedRecords until it is done. */
  readonly records: number;
  /** In the spool (read back, or written through): acknowledging it moves the spool's checkpoint here. */
  end: Position | undefined;
  /** A held append of one of its entries failed: some of its records are only in memory for good. */
  spoolFailed: boolean;
  /**
   * Write-through: the batch as sealed while its entries from `securedFrom` on are not in the spool
   * yet; secure() writes them there unless the batch is done first.
   */
  unsecured: EncodedBatch | undefined;
  readonly securedFrom: number;
  done: boolean;
}

/**
 * Some of the batch's records are only in memory — all of them without write-through (no `end`); with
 * it, until secure() wrote them, or for good when a held append failed: close() must spool what is
 * left of the batch if it is not acknowledged by then.
 */
function hasRecordsOnlyInMemory(p: Pending): boolean {
  return p.end === undefined || p.unsecured !== undefined || p.spoolFailed;
}

/** Appends entries [from, to) held: the position just past the last one stored, and whether any could not be. */
function appendHeld(spool: Spool, entries: { entry(i: number): Buffer }, from: number, to: number): { end: Position | undefined; failed: boolean } {
  let end: Position | undefined;
  let failed = false;
  for (let i = from; i < to; i++) {
    const at = spool.append(entries.entry(i), true);
    if (at === undefined) failed = true;
    else end = at;
  }
  return { end, failed };
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
  /** Records held in memory (the open batch, sealed batches not yet acknowledged): see BatchLimits.maxQueuedRecords. */
  private queuedRecords = 0;
  /** Write-through: the spool position just past the open batch's last record. */
  private batchEnd: Position | undefined;
  /** Write-through: entries of the open batch already in the spool (secure() wrote them). */
  private batchSecured = 0;
  /** Write-through: a held append of one of the open batch's entries failed (see Pending.spoolFailed). */
  private batchSpoolFailed = false;
  /** Write-through: sealed batches that had entries not yet in the spool when sealed, in order. */
  private unsecuredBatches: Pending[] = [];
  /** secure() queued for the next event-loop turn. */
  private secureQueued: NodeJS.Immediate | undefined;
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
  /** Write-through waits for the end of the turn (see writeThroughOne) instead of appending each record as it is queued. */
  private readonly securesAtTurnEnd: boolean;
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
    this.securesAtTurnEnd = limits.promptBytes !== undefined;
    const spool = spoolOptions !== undefined
      ? new Spool({ ...(options as Omit<SpoolOptions, 'onDrop'>), flushPerTask: this.writeThrough, onDrop: (reason, count) => this.drop(reason, count) })
      : undefined;
    this.spool = spool;
    budget.join();
    if (spool !== undefined) {
      this.stats.spoolBytes = spool.bytes;
      if (spool.hasUnread()) {
        this.spooling = true; // records from before a restart go first
        this.pump();
      }
    }
  }

  /** Bytes this runner may hold in memory now: its own bound, and its share of the shared budget. */
  private memoryLimitBytes(): number {
    return Math.min(this.queueLimitBytes, this.budget.instanceLimitBytes);
  }

  /** BatchLimits.maxQueuedRecords, with a spool to go to; without one, memory is all there is (up to its byte bounds). */
  private recordLimit(): number {
    return this.spool === undefined ? Number.POSITIVE_INFINITY : (this.limits.maxQueuedRecords ?? Number.POSITIVE_INFINITY);
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
      if (memoryOpen && this.queuedRecords < this.recordLimit() && this.stats.queuedBytes + bytes <= this.memoryLimitBytes() && this.budget.tryTake(bytes)) {
        this.stats.queuedBytes += bytes;
        this.queuedRecords++;
        if (this.writeThrough) this.writeThroughOne(record);
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
      this.secure(); // held records go before the first one the spool's reader is to read
      this.spooling = true;
      this.logSpooling(memoryOpen
        ? 'sink backlog reached what this instance may keep in memory (its share of SINK_QUEUE_SIZE, or its record bound): new records go to the disk spool until it is delivered'
        : 'sink is failing: new records go to the disk spool until it is delivered');
    }
    const spool = this.spool as Spool;
    spool.append(record);
    this.stats.spooled++;
    this.stats.spoolBytes = spool.bytes;
    this.pump();
  }

  /**
   * Write-through of a record just queued in the open batch: a sink that sends a batch at the end of
   * the task that filled it (promptBytes) has usually delivered it before the turn ends, so the record
   * is only secured then if still needed; for any other sink it goes to the spool now, as a record —
   * its compact form (an Elasticsearch document is ten times the bytes of a short line's record), and
   * nothing keeps the record object.
   */
  private writeThroughOne(record: LogRecord): void {
    if (this.securesAtTurnEnd) {
      this.secureQueued ??= setImmediate(() => this.secure());
      return;
    }
    const spool = this.spool as Spool;
    const end = spool.append(record, true);
    if (end !== undefined) this.batchEnd = end;
    else this.batchSpoolFailed = true;
    this.batchSecured = this.batch.count;
    this.stats.spoolBytes = spool.bytes;
  }

  /** Sends the open batch now instead of waiting for its timer (and secures what is still only in memory). */
  flush(): void {
    this.seal();
    this.secure();
    if (this.spooling) {
      this.spool?.flush();
      this.pump();
    }
  }

  /**
   * Write-through: every record waiting in memory that is not in the spool yet is written there now,
   * as the sink encoded it (one write), so a crash from here on cannot lose it; batches delivered
   * before this never touch the spool. The FIFO reader calls this before its pending file lets go of
   * the bytes the records came from; the runner queues it for the next event-loop turn itself.
   * Without write-through it does nothing; for a sink that writes through as records are queued
   * (writeThroughOne) it only flushes what they staged. No record object is kept for this: the
   * entries are read from the batch, which memory holds anyway (record objects kept until the end of
   * a FIFO read were promoted by the garbage collector: +80 MiB with 20 containers).
   */
  secure(): void {
    if (this.secureQueued !== undefined) {
      clearImmediate(this.secureQueued);
      this.secureQueued = undefined;
    }
    const spool = this.spool;
    if (!this.writeThrough || spool === undefined) return;
    const open = this.batch.count;
    if (this.unsecuredBatches.length === 0 && this.batchSecured === open) {
      spool.flush(); // records appended as they were queued (writeThroughOne) are in the file now
      return;
    }
    for (const p of this.unsecuredBatches) {
      const batch = p.unsecured;
      p.unsecured = undefined;
      if (p.done || batch === undefined) continue; // delivered first: nothing to keep
      const { end, failed } = appendHeld(spool, batch, p.securedFrom, batch.count);
      p.spoolFailed ||= failed;
      if (end === undefined) continue;
      if (p.end === undefined) this.spoolAcks.push(p); // in order: every batch sealed before it is secured or done
      p.end = end;
    }
    this.unsecuredBatches = [];
    const { end, failed } = appendHeld(spool, this.batch, this.batchSecured, open);
    this.batchSpoolFailed ||= failed;
    this.batchEnd = end ?? this.batchEnd;
    this.batchSecured = open;
    spool.flush();
    this.stats.spoolBytes = spool.bytes;
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
    try {
      await this.closeSteps(deadlineMs);
    } finally {
      this.budget.leave();
    }
  }

  private async closeSteps(deadlineMs: number): Promise<void> {
    this.seal();
    this.secure(); // what is still to be delivered is in the spool, in order, before anything else happens
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
   * At close: records held only in memory go to the spool, ahead of the spooled ones, as the sink
   * encoded them. (Written-through batches are there already, after the checkpoint; one whose append
   * failed in part is stored whole: at least once.)
   */
  private saveUnacknowledged(): void {
    const memory: Uint8Array[] = [];
    for (const p of this.unacked.values()) {
      if (p.done || !hasRecordsOnlyInMemory(p)) continue;
      for (let i = 0; i < p.batch.count; i++) memory.push(p.batch.entry(i));
    }
    this.unacked.clear();
    this.spoolAcks.length = 0;
    this.budget.give(this.stats.queuedBytes);
    this.stats.queuedBytes = 0; // what was held is in the spool now (or counted as dropped)
    this.queuedRecords = 0;
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
    const securedFrom = this.writeThrough ? this.batchSecured : 0;
    const unsecured = this.writeThrough && securedFrom < batch.count ? batch : undefined;
    const spoolFailed = this.batchSpoolFailed;
    this.batchBytes = 0;
    this.batchEnd = undefined;
    this.batchSecured = 0;
    this.batchSpoolFailed = false;
    this.enqueue({ batch, bytes, records: batch.count, end, spoolFailed, unsecured, securedFrom });
  }

  private enqueue(init: Omit<Pending, 'seq' | 'sealed' | 'done'>): void {
    const p: Pending = { ...init, seq: this.seq++, sealed: this.reusesBatchBuffers ? init.batch : undefined, done: false };
    this.unacked.set(p.seq, p);
    if (p.end !== undefined) this.spoolAcks.push(p);
    if (p.unsecured !== undefined) this.unsecuredBatches.push(p);
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
    const room = Math.min(this.memoryLimitBytes() - this.stats.queuedBytes, this.budget.freeBytes);
    const maxBytes = Math.min(this.limits.maxBytes, room);
    if (maxBytes <= 0 && this.stats.queuedBytes > 0) return;
    const recordRoom = this.recordLimit() - this.queuedRecords;
    if (recordRoom <= 0 && this.queuedRecords > 0) return;
    const maxRecords = Math.min(this.limits.maxRecords, Math.max(1, recordRoom));
    // Records read back are encoded as the spool lends them: they and their lines die young.
    const builder = new BatchBuilder();
    const reader: SpoolReader = {
      record: (record) => {
        this.sink.encode(record, builder);
        builder.endEntry();
      },
      encoded: (bytes) => builder.add(bytes),
      discard: () => builder.release(),
    };
    this.reading = spool.read(reader, maxRecords, Math.max(0, maxBytes), this.stats.queuedBytes === 0).then(
      (result) => {
        this.reading = undefined;
        const again = this.pumpAgain;
        this.pumpAgain = false;
        this.stats.spoolBytes = spool.bytes;
        if (this.stopping || result.kind !== 'batch') builder.release();
        if (this.stopping) return; // what was read stays in the spool, unacknowledged
        if (result.kind === 'batch') {
          const batch = builder.seal(this.reusesBatchBuffers);
          builder.release();
          const bytes = batch.bytes.length + batch.count * ENTRY_OVERHEAD_BYTES;
          this.stats.queuedBytes += bytes;
          this.queuedRecords += batch.count;
          this.budget.force(bytes);
          this.enqueue({ batch, bytes, records: batch.count, end: result.batch.end, spoolFailed: false, unsecured: undefined, securedFrom: 0 });
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
        builder.release();
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
        p.unsecured = undefined; // delivered: secure() has nothing to keep of it
        this.stats.queuedBytes -= p.bytes;
        this.queuedRecords -= p.records;
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
      instanceLimitBytes: this.memoryLimitBytes(),
      unackedBatches: this.unacked.size, inFlightBatches: this.stats.inFlightBatches,
    }, msg);
  }
}
