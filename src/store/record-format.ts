/**
 * The store's on-disk record, as Docker's `local` driver writes it (protocol.md §6):
 * `[u32 BE N][N bytes LogEntry][u32 BE N]`. The footer repeats the length so a file can be walked
 * backwards for `--tail` as well as forwards.
 */

/** Header plus footer. */
export const RECORD_OVERHEAD = 8;

/** Docker's local reader refuses longer records (`maxMsgLen`, daemon/logger/local/read.go); so do we. */
export const MAX_RECORD_BODY = 1_000_000;

/** A record whose framing is broken: the length is absurd, or header and footer disagree. */
export class CorruptRecordError extends Error {
  constructor(readonly offset: number, reason: string) {
    super(`corrupt log record at byte ${offset}: ${reason}`);
    this.name = 'CorruptRecordError';
  }
}

/**
 * Length of the prefix of `buf` that holds whole records, judged by headers alone, and how many
 * bytes the next (incomplete) record needs in total. A length over the cap ends the prefix; it is
 * reported (CorruptRecordError) only when it is the first record, so the good records before it
 * are still delivered.
 */
export function wholeRecordsPrefix(buf: Buffer, baseOffset: number): { length: number; nextRecordBytes: number } {
  let pos = 0;
  while (buf.length - pos >= 4) {
    const n = buf.readUInt32BE(pos);
    if (n > MAX_RECORD_BODY) {
      if (pos > 0) break;
      throw new CorruptRecordError(baseOffset, `length ${n} exceeds ${MAX_RECORD_BODY}`);
    }
    if (buf.length - pos < n + RECORD_OVERHEAD) return { length: pos, nextRecordBytes: n + RECORD_OVERHEAD };
    pos += n + RECORD_OVERHEAD;
  }
  return { length: pos, nextRecordBytes: RECORD_OVERHEAD };
}

/**
 * Walks the records of a buffer that holds whole records only (see wholeRecordsPrefix), without
 * allocating per record: after `next()` returns true, `[bodyStart, bodyEnd)` of the batch (or `body`,
 * a view) is the LogEntry bytes and `start` the record's offset in the file.
 */
export class RecordCursor {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private baseOffset = 0;
  /** File offset of the current record's header. */
  start = 0;
  /** Where the current record's LogEntry bytes are in the batch: `[bodyStart, bodyEnd)`. */
  bodyStart = 0;
  bodyEnd = 0;

  /** The batch `reset` was given. */
  get batch(): Buffer {
    return this.buf;
  }

  /** The current record's LogEntry bytes (a view into the batch, made on each call). */
  get body(): Buffer {
    return this.buf.subarray(this.bodyStart, this.bodyEnd);
  }

  reset(batch: Buffer, baseOffset: number): void {
    this.buf = batch;
    this.pos = 0;
    this.baseOffset = baseOffset;
  }

  /** File offset just after the last record returned (where reading would resume). */
  get nextOffset(): number {
    return this.baseOffset + this.pos;
  }

  next(): boolean {
    if (this.pos >= this.buf.length) return false;
    const n = this.buf.readUInt32BE(this.pos);
    const footerAt = this.pos + 4 + n;
    const fileOffset = this.baseOffset + this.pos;
    if (n > MAX_RECORD_BODY || footerAt + 4 > this.buf.length) {
      throw new CorruptRecordError(fileOffset, `length ${n} runs past the data`);
    }
    const footer = this.buf.readUInt32BE(footerAt);
    if (footer !== n) throw new CorruptRecordError(fileOffset, `header ${n} != footer ${footer}`);
    this.start = fileOffset;
    this.bodyStart = this.pos + 4;
    this.bodyEnd = footerAt;
    this.pos = footerAt + 4;
    return true;
  }
}
