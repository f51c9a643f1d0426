/**
 * The machinery every sink gets, written once: batches closed by records, bytes or a max-latency
 * timer that starts at a batch's first record; at most `concurrency` batches in flight (p-queue);
 * retries with capped, jittered exponential backoff; dead letters with reasons; and a bounded
 * in-memory backlog, so a slow or dead sink never makes the FIFO reader wait. Past the bound,
 * records are dropped and counted with a reason (a disk spool takes them instead, once it exists).
 */
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { type BatchLimits, FatalSinkError, type LogRecord, type Sink, recordBytes } from '../sinks/sink.js';
import { backoffDelay, sleep } from './backoff.js';
import type { DeadLetterFile } from './dead-letters.js';

const RETRY_BASE_MS = 250;
const DROP_LOG_INTERVAL_MS = 60_000;

export interface SinkRunnerStats {
  received: number;
  delivered: number;
  retried: number;
  deadLettered: number;
  dropped: Record<string, number>;
  inFlightBatches: number;
  queuedBytes: number;
  lastError: string;
}

export class SinkRunner {
  readonly stats: SinkRunnerStats = {
    received: 0, delivered: 0, retried: 0, deadLettered: 0, dropped: {}, inFlightBatches: 0, queuedBytes: 0, lastError: '',
  };
  private batch: LogRecord[] = [];
  private batchBytes = 0;
  private batchTimer: NodeJS.Timeout | undefined;
  private readonly sending: PQueue;
  private readonly abort = new AbortController();
  private lastDropLog = 0;
  private closed = false;

  constructor(
    readonly sink: Sink,
    private readonly limits: BatchLimits,
    private readonly deadLetters: DeadLetterFile,
    private readonly logger: Logger,
    private readonly queueLimitBytes: number,
  ) {
    this.sending = new PQueue({ concurrency: Math.max(1, limits.concurrency) });
  }

  /** Takes one record; never waits. */
  push(record: LogRecord): void {
    this.stats.received++;
    const bytes = recordBytes(record);
    if (this.closed) return this.drop('shutdown', 1);
    if (this.stats.queuedBytes + bytes > this.queueLimitBytes) return this.drop('queue-full', 1);
    this.stats.queuedBytes += bytes;
    this.batch.push(record);
    this.batchBytes += bytes;
    if (this.batch.length >= this.limits.maxRecords || this.batchBytes >= this.limits.maxBytes) {
      this.seal();
    } else if (this.batchTimer === undefined) {
      this.batchTimer = setTimeout(() => this.seal(), this.limits.maxLatencyMs);
    }
  }

  /** Sends the open batch now instead of waiting for its timer. */
  flush(): void {
    this.seal();
  }

  /** Resolves when nothing is buffered or in flight. */
  async idle(): Promise<void> {
    this.seal();
    await this.sending.onIdle();
  }

  /**
   * Flushes and waits up to `deadlineMs` for delivery; what is still undelivered then is counted
   * as dropped ('shutdown'). Closes the sink.
   */
  async close(deadlineMs: number): Promise<void> {
    this.seal();
    this.closed = true;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), deadlineMs); });
    const result = await Promise.race([this.sending.onIdle().then(() => 'idle' as const), deadline]);
    clearTimeout(timer);
    if (result === 'late') {
      this.abort.abort();
      this.sending.clear();
      await this.sending.onIdle();
    }
    try {
      await this.sink.close();
    } catch (err) {
      this.logger.warn({ err, sink: this.sink.name }, 'sink did not close cleanly');
    }
  }

  private seal(): void {
    if (this.batchTimer !== undefined) {
      clearTimeout(this.batchTimer);
      this.batchTimer = undefined;
    }
    if (this.batch.length === 0) return;
    const batch = this.batch;
    const bytes = this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    void this.sending.add(() => this.deliver(batch, bytes));
  }

  private async deliver(batch: readonly LogRecord[], bytes: number): Promise<void> {
    this.stats.inFlightBatches++;
    let todo = batch;
    let attempt = 0;
    try {
      while (todo.length > 0) {
        if (this.abort.signal.aborted) {
          this.drop('shutdown', todo.length);
          return;
        }
        let retry: readonly LogRecord[];
        try {
          const outcome = await this.sink.write(todo);
          retry = outcome?.retry ?? [];
          const dead = outcome?.deadLetters ?? [];
          if (dead.length > 0) {
            this.stats.deadLettered += dead.length;
            await this.deadLetters.append(dead);
          }
          this.stats.delivered += todo.length - retry.length - dead.length;
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          this.stats.lastError = message;
          if (err instanceof FatalSinkError) {
            this.logger.error({ sink: this.sink.name, records: todo.length, err: message }, 'sink refused a batch for good; records written to dead letters');
            this.stats.deadLettered += todo.length;
            await this.deadLetters.append(todo.map((record) => ({ record, reason: message })));
            return;
          }
          retry = todo;
        }
        if (retry.length === 0) return;
        attempt++;
        if (attempt > this.limits.maxRetries) {
          this.stats.deadLettered += retry.length;
          await this.deadLetters.append(retry.map((record) => ({ record, reason: `retries exhausted (${this.limits.maxRetries}): ${this.stats.lastError}` })));
          return;
        }
        this.stats.retried += retry.length;
        if (attempt === 1 || attempt % 10 === 0) {
          this.logger.warn({ sink: this.sink.name, records: retry.length, attempt, err: this.stats.lastError }, 'sink delivery failed; retrying with backoff');
        }
        todo = retry;
        await sleep(backoffDelay(attempt, RETRY_BASE_MS, this.limits.backoffMaxMs), this.abort.signal);
      }
    } finally {
      this.stats.inFlightBatches--;
      this.stats.queuedBytes -= bytes;
    }
  }

  private drop(reason: string, count: number): void {
    this.stats.dropped[reason] = (this.stats.dropped[reason] ?? 0) + count;
    const now = Date.now();
    if (now - this.lastDropLog >= DROP_LOG_INTERVAL_MS) {
      this.lastDropLog = now;
      this.logger.error({ sink: this.sink.name, reason, dropped: this.stats.dropped }, 'sink backlog full or closed: records dropped (counted)');
    }
  }
}
