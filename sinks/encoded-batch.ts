/**
 * Records in a sink's own wire form (a JSON line, a bulk action + document, ...), back to back in one
 * buffer. The core encodes each record with Sink.encode() as it queues it, so what waits in memory is
 * bytes, not per-record objects: those die young, and the garbage collector never has to promote
 * them (a queue of record objects was what made memory climb during an outage).
 */

/** Where a sink writes one record's wire form: the open batch's buffer, no intermediate string needed. */
export interface EntryWriter {
  /** Appends text, encoded as UTF-8. */
  text(s: string): void;
  /** Appends bytes as they are. */
  bytes(b: Uint8Array): void;
  /** Appends text known to be ASCII (one byte per character: no UTF-8 pass). */
  ascii(s: string): void;
}

/** What `write` puts in an EntryWriter, as text (tests, tools and string forms of encoders). */
export function collectText(write: (out: EntryWriter) => void): string {
  const parts: string[] = [];
  write({
    text: (s) => parts.push(s),
    ascii: (s) => parts.push(s),
    bytes: (b) => parts.push(Buffer.from(b.buffer, b.byteOffset, b.length).toString('utf8')),
  });
  return parts.join('');
}

/** What encodes records (a Sink does). */
export interface RecordEncoder<R> {
  encode(record: R, out: EntryWriter): void;
}

/** A sealed batch: entry i is bytes[start(i), end(i)). Immutable. */
export class EncodedBatch {
  constructor(
    /** All entries, back to back. */
    readonly bytes: Buffer,
    /** ends[i]: offset just past entry i. */
    private readonly ends: readonly number[],
  ) {}

  /** Entries in the batch. */
  get count(): number {
    return this.ends.length;
  }

  start(i: number): number {
    return i === 0 ? 0 : (this.ends[i - 1] as number);
  }

  end(i: number): number {
    return this.ends[i] as number;
  }

  /** Entry i (a view into bytes). */
  entry(i: number): Buffer {
    return this.bytes.subarray(this.start(i), this.end(i));
  }

  /** Entries [from, to) as one view into bytes. */
  range(from: number, to: number): Buffer {
    return this.bytes.subarray(this.start(from), this.start(to));
  }

  /** A batch of the given entries, in the order given (a copy). */
  select(indices: readonly number[]): EncodedBatch {
    let total = 0;
    for (const i of indices) total += this.end(i) - this.start(i);
    const bytes = Buffer.allocUnsafe(total);
    const ends: number[] = [];
    let at = 0;
    for (const i of indices) {
      at += this.bytes.copy(bytes, at, this.start(i), this.end(i));
      ends.push(at);
    }
    return new EncodedBatch(bytes, ends);
  }

  /** Entries as UTF-8 text (tests and dead letters). */
  texts(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.count; i++) out.push(this.entry(i).toString('utf8'));
    return out;
  }

  /** A batch of these texts (tests). */
  static of(texts: readonly string[]): EncodedBatch {
    const b = new BatchBuilder();
    for (const t of texts) b.add(t);
    return b.seal();
  }

  /** `records` encoded by `encoder`, one entry each (tests, tools). */
  static encode<R>(encoder: RecordEncoder<R>, records: readonly R[]): EncodedBatch {
    const b = new BatchBuilder();
    for (const r of records) {
      encoder.encode(r, b);
      b.endEntry();
    }
    return b.seal();
  }
}

const INITIAL_SCRATCH_BYTES = 16 * 1024;
/**
 * A scratch buffer grown past this for one big batch is let go once the batch is sealed: one builder
 * per sink instance (one file-sink instance per container) each keeping megabytes adds up.
 */
const RETAINED_SCRATCH_BYTES = 1024 * 1024;
/** UTF-8 needs at most 3 bytes per UTF-16 code unit (a surrogate pair is 2 units for 4 bytes). */
const MAX_UTF8_BYTES_PER_UNIT = 3;

/**
 * Gathers entries for the open batch in a reused scratch buffer; seal() copies them out at their
 * exact size. An entry is what was written (text/bytes/ascii) since the last endEntry().
 */
export class BatchBuilder implements EntryWriter {
  private scratch: Buffer = Buffer.allocUnsafe(INITIAL_SCRATCH_BYTES);
  private used = 0;
  private ends: number[] = [];

  get count(): number {
    return this.ends.length;
  }

  /** Bytes gathered so far. */
  get byteLength(): number {
    return this.used;
  }

  text(s: string): void {
    this.reserve(s.length * MAX_UTF8_BYTES_PER_UNIT);
    this.used += this.scratch.write(s, this.used, 'utf8');
  }

  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.scratch.set(b, this.used);
    this.used += b.length;
  }

  ascii(s: string): void {
    this.reserve(s.length);
    this.used += this.scratch.write(s, this.used, 'latin1');
  }

  /** Closes the entry written since the last one; returns its size in bytes. */
  endEntry(): number {
    const start = this.ends.length === 0 ? 0 : (this.ends[this.ends.length - 1] as number);
    this.ends.push(this.used);
    return this.used - start;
  }

  /** Appends one whole entry; returns its size in bytes. */
  add(entry: string | Uint8Array): number {
    if (typeof entry === 'string') this.text(entry);
    else this.bytes(entry);
    return this.endEntry();
  }

  /** Takes back the entry added last (it was not queued after all). */
  removeLast(): void {
    this.ends.pop();
    this.used = this.ends.length === 0 ? 0 : (this.ends[this.ends.length - 1] as number);
  }

  /** The gathered entries as a batch; the builder starts empty again. */
  seal(): EncodedBatch {
    const bytes = Buffer.allocUnsafe(this.used);
    this.scratch.copy(bytes, 0, 0, this.used);
    const batch = new EncodedBatch(bytes, this.ends);
    this.ends = [];
    this.used = 0;
    if (this.scratch.length > RETAINED_SCRATCH_BYTES) this.scratch = Buffer.allocUnsafe(INITIAL_SCRATCH_BYTES);
    return batch;
  }

  private reserve(extra: number): void {
    if (this.used + extra <= this.scratch.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.scratch.length * 2, this.used + extra));
    this.scratch.copy(grown, 0, 0, this.used);
    this.scratch = grown;
  }
}
