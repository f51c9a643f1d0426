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
  /** Appends bytes as they are (copied before it returns: the caller may reuse `b`). */
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
    /** The pooled buffer `bytes` is a view of (seal(true)); given back by release(). */
    private backing?: Buffer,
  ) {}

  /**
   * Gives a pooled buffer back for the next seal(true): `bytes` and every view of it are then
   * someone else's. Only for a batch nothing reads any more (the SinkRunner, once the batch is
   * acknowledged, for a sink that keeps no view of a batch after its write settled). No effect on
   * other batches; a second call does nothing.
   */
  release(): void {
    if (this.backing === undefined) return;
    giveSealBuffer(this.backing);
    this.backing = undefined;
  }

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
    return EncodedBatch.encode({ encode: (t: string, out) => out.text(t) }, texts);
  }

  /** `records` encoded by `encoder`, one entry each (records read back from a spool; tests, tools). `reuse`: as in seal(). */
  static encode<R>(encoder: RecordEncoder<R>, records: readonly R[], reuse = false): EncodedBatch {
    const b = new BatchBuilder();
    for (const r of records) {
      encoder.encode(r, b);
      b.endEntry();
    }
    const batch = b.seal(reuse);
    b.release();
    return batch;
  }
}

/**
 * Memory a queued entry costs beyond its encoded bytes (its offset in the batch, its share of the
 * batch object): the sink runner's accounting, and the spool's for the encoded entries it reads back.
 */
export const ENTRY_OVERHEAD_BYTES = 16;

/** The builder's buffers come in chunks of this size, reused through a pool. */
export const CHUNK_BYTES = 64 * 1024;
/** Chunks kept for reuse across all builders (8 MiB); more are left to the garbage collector. */
const POOL_MAX_CHUNKS = 128;
/** UTF-8 needs at most 3 bytes per UTF-16 code unit (a surrogate pair is 2 units for 4 bytes). */
const MAX_UTF8_BYTES_PER_UNIT = 3;

const freeChunks: Buffer[] = [];

function takeChunk(): Buffer {
  return freeChunks.pop() ?? Buffer.allocUnsafeSlow(CHUNK_BYTES);
}

function giveChunk(chunk: Buffer): void {
  if (freeChunks.length < POOL_MAX_CHUNKS) freeChunks.push(chunk);
}

/** Chunks waiting in the pool (tests). */
export function pooledChunks(): number {
  return freeChunks.length;
}

/**
 * Buffers for sealed batches that are given back (EncodedBatch.release): a file-sink batch is written
 * within the FIFO read that filled it, so one buffer serves batch after batch instead of a fresh
 * allocation per read, which the garbage collector then has to sweep (20 containers: ~10 % of
 * shiplog's CPU). Capacities are powers of two from one chunk up; at most SEAL_POOL_MAX_BYTES wait
 * here, so an idle shiplog holds little.
 */
const SEAL_POOL_MAX_BYTES = 4 * 1024 * 1024;
const freeSealBuffers: Buffer[] = [];
let freeSealBytes = 0;

function takeSealBuffer(length: number): Buffer {
  for (let i = freeSealBuffers.length - 1; i >= 0; i--) {
    const b = freeSealBuffers[i] as Buffer;
    if (b.length >= length) {
      freeSealBuffers.splice(i, 1);
      freeSealBytes -= b.length;
      return b;
    }
  }
  let capacity = CHUNK_BYTES;
  while (capacity < length) capacity *= 2;
  return Buffer.allocUnsafeSlow(capacity);
}

function giveSealBuffer(b: Buffer): void {
  if (freeSealBytes + b.length > SEAL_POOL_MAX_BYTES) return;
  freeSealBuffers.push(b);
  freeSealBytes += b.length;
}

/** Bytes of sealed-batch buffers waiting for reuse (tests). */
export function pooledSealBytes(): number {
  return freeSealBytes;
}

/**
 * Gathers entries for the open batch in 64 KiB chunks taken from a pool shared by every builder;
 * seal() copies them out once, at their exact size, and gives the chunks back. So a batch costs one
 * allocation whatever its size (no grow-and-copy), and an idle builder holds one chunk, not the
 * largest batch it ever saw (one builder per sink instance: one per container for the file sink).
 * An entry is what was written (text/bytes/ascii) since the last endEntry().
 */
export class BatchBuilder implements EntryWriter {
  /** Filled chunks, each holding exactly CHUNK_BYTES of the batch. */
  private full: Buffer[] = [];
  private cur: Buffer | undefined;
  private curUsed = 0;
  private ends: number[] = [];

  get count(): number {
    return this.ends.length;
  }

  /** Bytes gathered so far. */
  get byteLength(): number {
    return this.full.length * CHUNK_BYTES + this.curUsed;
  }

  text(s: string): void {
    const chunk = this.current();
    if (s.length * MAX_UTF8_BYTES_PER_UNIT <= CHUNK_BYTES - this.curUsed) this.curUsed += chunk.write(s, this.curUsed, 'utf8');
    else this.bytes(Buffer.from(s, 'utf8'));
  }

  ascii(s: string): void {
    const chunk = this.current();
    if (s.length <= CHUNK_BYTES - this.curUsed) this.curUsed += chunk.write(s, this.curUsed, 'latin1');
    else this.bytes(Buffer.from(s, 'latin1'));
  }

  bytes(b: Uint8Array): void {
    let chunk = this.current();
    if (b.length <= CHUNK_BYTES - this.curUsed) {
      chunk.set(b, this.curUsed);
      this.curUsed += b.length;
      return;
    }
    let off = 0;
    while (off < b.length) {
      chunk = this.current();
      const n = Math.min(CHUNK_BYTES - this.curUsed, b.length - off);
      chunk.set(b.subarray(off, off + n), this.curUsed);
      this.curUsed += n;
      off += n;
    }
  }

  /** Closes the entry written since the last one; returns its size in bytes. */
  endEntry(): number {
    const start = this.ends.length === 0 ? 0 : (this.ends[this.ends.length - 1] as number);
    const end = this.byteLength;
    this.ends.push(end);
    return end - start;
  }

  /** Appends one whole entry; returns its size in bytes. */
  add(entry: string | Uint8Array): number {
    if (typeof entry === 'string') this.text(entry);
    else this.bytes(entry);
    return this.endEntry();
  }

  /** Entry i of the open batch: a view when it lies in one chunk, else a copy of its parts. */
  entry(i: number): Buffer {
    const start = i === 0 ? 0 : (this.ends[i - 1] as number);
    const end = this.ends[i] as number;
    if (end === start) return Buffer.alloc(0);
    const first = Math.floor(start / CHUNK_BYTES);
    const last = Math.floor((end - 1) / CHUNK_BYTES);
    if (first === last) return this.chunk(first).subarray(start - first * CHUNK_BYTES, end - first * CHUNK_BYTES);
    const out = Buffer.allocUnsafe(end - start);
    let at = 0;
    for (let k = first; k <= last; k++) {
      const base = k * CHUNK_BYTES;
      at += this.chunk(k).copy(out, at, Math.max(start, base) - base, Math.min(end, base + CHUNK_BYTES) - base);
    }
    return out;
  }

  /** Chunk k of the open batch (the full ones, then the one being written). */
  private chunk(k: number): Buffer {
    return (k < this.full.length ? this.full[k] : this.cur) as Buffer;
  }

  /** Takes back the entry added last (it was not queued after all). */
  removeLast(): void {
    this.ends.pop();
    const to = this.ends.length === 0 ? 0 : (this.ends[this.ends.length - 1] as number);
    while (this.full.length * CHUNK_BYTES > to) {
      if (this.cur !== undefined) giveChunk(this.cur);
      this.cur = this.full.pop();
      this.curUsed = CHUNK_BYTES;
    }
    this.curUsed = to - this.full.length * CHUNK_BYTES;
  }

  /**
   * The gathered entries as a batch; the builder starts empty again. `reuse`: the bytes go into a
   * pooled buffer, which the batch's owner gives back with release() when done with it.
   */
  seal(reuse = false): EncodedBatch {
    const backing = reuse ? takeSealBuffer(this.byteLength) : undefined;
    const bytes = backing === undefined ? Buffer.allocUnsafe(this.byteLength) : backing.subarray(0, this.byteLength);
    let at = 0;
    for (const chunk of this.full) {
      at += chunk.copy(bytes, at);
      giveChunk(chunk);
    }
    if (this.cur !== undefined) this.cur.copy(bytes, at, 0, this.curUsed);
    const batch = new EncodedBatch(bytes, this.ends, backing);
    this.full = [];
    this.curUsed = 0;
    this.ends = [];
    return batch;
  }

  /** Gives the builder's chunk back to the pool (a builder that is done); it takes another if used again. */
  release(): void {
    for (const chunk of this.full) giveChunk(chunk);
    if (this.cur !== undefined) giveChunk(this.cur);
    this.full = [];
    this.cur = undefined;
    this.curUsed = 0;
    this.ends = [];
  }

  /** The chunk being written, with room in it (a full one is set aside and a new one taken). */
  private current(): Buffer {
    if (this.cur === undefined) {
      this.cur = takeChunk();
      this.curUsed = 0;
    } else if (this.curUsed === CHUNK_BYTES) {
      this.full.push(this.cur);
      this.cur = takeChunk();
      this.curUsed = 0;
    }
    return this.cur;
  }
}
