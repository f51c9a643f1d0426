/**
 * The contract between shiplog's core and a sink. A sink translates records and talks to its backend;
 * batching, the bounded queue, retries with backoff, dead letters and metrics live once in the core
 * (src/sink-runner.ts), around every sink. Adding a sink = one file here + one line in sinks/index.ts.
 */
import type { LogSource } from '../src/entry.js';
import type { OptionTable, ParsedOptions } from '../src/option-table.js';
import type { Int64Parts } from '../src/time.js';
import type { Logger } from 'pino';
import type { EncodedBatch, EntryWriter } from './encoded-batch.js';

export { BatchBuilder, collectText, EncodedBatch, type EntryWriter, type RecordEncoder } from './encoded-batch.js';

/** Per-container metadata, computed once at StartLogging and shared by every record of the stream. */
export interface ContainerMeta {
  readonly id: string;
  /** Without dockerd's leading '/'. */
  readonly name: string;
  readonly imageName: string;
  /** `sha256:<hex>`. */
  readonly imageId: string;
  /** The `tag` log-opt rendered (default `{{.ID}}`). */
  readonly tag: string;
  /** Extras selected by `labels`, `labels-regex`, `env`, `env-regex` (Docker's ExtraAttributes). */
  readonly attrs: Readonly<Record<string, string>>;
  /** All container labels. */
  readonly labels: Readonly<Record<string, string>>;
  /** The daemon host's name. */
  readonly hostname: string;
}

/** One log line on its way to sinks: partial chunks already reassembled, metadata attached. */
export interface LogRecord {
  readonly container: ContainerMeta;
  readonly source: LogSource;
  /** dockerd's time_nano (of the line's first chunk), exact. */
  readonly timeNano: Int64Parts;
  /** The line without its trailing newline. Owned by the record (never a reused buffer). */
  readonly line: Buffer;
  /** True when reassembly was cut short (size cap, hold timeout, or the stream ended mid-line). */
  readonly truncated: boolean;
  /** Distinguishes records of one container and source that share a time_nano (0 almost always). */
  readonly seq: number;
}

/** A failure the core should retry later (backend down, throttled, 5xx, timeout). */
export class RetryableSinkError extends Error {
  override readonly name = 'RetryableSinkError';
}

/** A failure retrying cannot fix (bad request, mapping error): the batch goes to dead letters. */
export class FatalSinkError extends Error {
  override readonly name = 'FatalSinkError';
}

/** An entry of a batch the backend refused for good (e.g. a per-item 400 mapping error), with the reason. */
export interface DeadLetter {
  /** Index of the entry in the batch given to write(). */
  readonly index: number;
  readonly reason: string;
}

/** What a sink reports for a batch it partly accepted. Entries in neither list were delivered. */
export interface WriteOutcome {
  /** Indices of entries to send again later (e.g. per-item 429/5xx in a bulk response). */
  readonly retry?: readonly number[];
  /** Entries the backend refused for good, with the reason. */
  readonly deadLetters?: readonly DeadLetter[];
}

export interface Sink {
  readonly name: string;
  /**
   * True when write() keeps no view of the batch's bytes once its promise settled (the file sink's
   * writes are done by then): the core then reuses the buffer of an acknowledged batch for the next
   * one. Leave it unset when a request may still read the bytes later (an HTTP body being sent).
   */
  readonly releasesBatchOnSettle?: boolean;
  /**
   * Writes one record in the sink's wire form (a JSON line, a bulk action + document, ...) to `out`,
   * the open batch's buffer. Called once per record as the core queues it (also for records read
   * back from the disk spool); what waits in memory, is retried and is sent is these bytes, so the
   * encoding must not depend on anything that changes between queueing and sending. Must not throw.
   */
  encode(record: LogRecord, out: EntryWriter): void;
  /**
   * Delivers a batch of encoded entries. Resolves when the backend durably accepted it (or with the
   * entries it did not); rejects with RetryableSinkError / FatalSinkError (any other error counts as
   * retryable).
   */
  write(batch: EncodedBatch): Promise<WriteOutcome | void>;
  /** Flush what is buffered and release resources. */
  close(): Promise<void>;
}

export interface BatchLimits {
  readonly maxRecords: number;
  readonly maxBytes: number;
  /** A batch is sent at the latest this long after its first record arrived. */
  readonly maxLatencyMs: number;
  /**
   * A batch holding at least this many bytes is sent at the end of the task that filled it (a FIFO
   * chunk's records are pushed in one task) instead of waiting for its timer: for sinks whose write
   * is cheap and prompt, such as a file in the page cache, so a fast stream's bytes are held for
   * microseconds while a trickle is still gathered for maxLatencyMs. Undefined: only the limits above.
   */
  readonly promptBytes?: number;
  /** Batches in flight at once. */
  readonly concurrency: number;
  /**
   * Records this instance keeps in memory at most (besides SINK_QUEUE_SIZE's bytes) when it has a disk
   * spool; past it new records wait in the spool until the backlog is delivered. For a sink whose
   * sends can fall behind its input (a remote service): beyond a few batches ready, memory only
   * delays the spool. Undefined: only the byte bounds.
   */
  readonly maxQueuedRecords?: number;
  /** Retries before a batch is dead-lettered; Infinity = until delivered. */
  readonly maxRetries: number;
  readonly backoffMaxMs: number;
}

export interface SinkContext {
  /** The first container that asked for this instance (instances are shared by equal `instanceKey`). */
  readonly container: ContainerMeta;
  readonly logger: Logger;
  /** shiplog's state directory (store, spool, dead letters live below it). */
  readonly stateDir: string;
}

export interface SinkDefinition<T extends OptionTable = OptionTable> {
  readonly name: string;
  /** The log-opts this sink owns, with defaults and docs (README's tables come from these). */
  readonly options: T;
  /** Setting any of these log-opts turns the sink on without naming it in `sinks`. */
  readonly activatedBy?: readonly (keyof T & string)[];
  /** Check option combinations that single-option parsing cannot (runs at StartLogging). */
  validate?(opts: ParsedOptions<T>): void;
  /** Containers whose options give the same key share one sink instance. */
  instanceKey(opts: ParsedOptions<T>, container: ContainerMeta): string;
  batchLimits(opts: ParsedOptions<T>): BatchLimits;
  create(opts: ParsedOptions<T>, ctx: SinkContext): Sink;
}

/** A rough size of a record in memory (the spool bounds its reads with it): the line plus an envelope. */
export function recordBytes(r: LogRecord): number {
  return r.line.length + 256;
}

/**
 * A stable id for a record: the same line re-sent after a retry or a restart gets the same id, so
 * backends that support ids (Elasticsearch `_id` with op_type create) store it once.
 * container id + source + time_nano + seq.
 */
export function recordId(r: LogRecord): string {
  const seq = r.seq === 0 ? '' : `.${r.seq}`;
  return `${r.container.id.slice(0, 32)}${r.source === 'stderr' ? 'e' : 'o'}${hex32(r.timeNano.high)}${hex32(r.timeNano.low)}${seq}`;
}

const HEX_BYTE = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
/** The two ASCII codes of each byte's lowercase hex digits: HEX_CODES[2 * b], HEX_CODES[2 * b + 1]. */
const HEX_CODES = Uint8Array.from(HEX_BYTE.join(''), (c) => c.charCodeAt(0));
const ID_STDOUT = 0x6f; // 'o'
const ID_STDERR = 0x65; // 'e'
/** What follows the container's part of an id: the source letter and the time's 16 hex digits. */
const ID_TAIL_BYTES = 1 + 16;

/**
 * Writes recordId(r), byte for byte, without building its strings (two hex strings and their
 * concatenations per record were ~10 % of the bytes the Elasticsearch sink allocated). The
 * container's part is kept per container; the buffer handed to `out` is rewritten by the next call,
 * which EntryWriter allows (it copies what it is given).
 */
export class RecordIdWriter {
  /** Per container: its id's first 32 characters, then room for the source letter and 16 hex digits. */
  private readonly scratch = new WeakMap<ContainerMeta, Buffer>();

  write(r: LogRecord, out: EntryWriter): void {
    let buf = this.scratch.get(r.container);
    if (buf === undefined) {
      const head = Buffer.from(r.container.id.slice(0, 32), 'latin1');
      buf = Buffer.alloc(head.length + ID_TAIL_BYTES);
      head.copy(buf);
      this.scratch.set(r.container, buf);
    }
    let at = buf.length - ID_TAIL_BYTES;
    buf[at++] = r.source === 'stderr' ? ID_STDERR : ID_STDOUT;
    at = writeHex32(buf, at, r.timeNano.high);
    writeHex32(buf, at, r.timeNano.low);
    out.bytes(buf);
    if (r.seq !== 0) out.ascii(`.${r.seq}`);
  }
}

/** Writes the 8 hex digits of hex32(v) at `at`; returns the offset after them. */
function writeHex32(buf: Buffer, at: number, v: number): number {
  for (let shift = 24; shift >= 0; shift -= 8) {
    const b = (v >>> shift) & 255;
    buf[at++] = HEX_CODES[2 * b] as number;
    buf[at++] = HEX_CODES[2 * b + 1] as number;
  }
  return at;
}

/** 8 lowercase hex digits of a 32-bit value (as (v >>> 0).toString(16).padStart(8, '0'), without the number formatting). */
function hex32(v: number): string {
  return `${HEX_BYTE[v >>> 24] as string}${HEX_BYTE[(v >>> 16) & 255] as string}${HEX_BYTE[(v >>> 8) & 255] as string}${HEX_BYTE[v & 255] as string}`;
}
