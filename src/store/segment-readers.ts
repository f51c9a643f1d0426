/**
 * Reading one segment file: forwards in batches of whole records (plain or gzip), or backwards
 * record by record through the footers (plain only) for `--tail`.
 */
import fs from 'node:fs';
import { pipeline } from 'node:stream';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { CorruptRecordError, MAX_RECORD_BODY, RECORD_OVERHEAD, wholeRecordsPrefix } from './record-format.js';

const pread = promisify(fs.read);

/** Big enough to amortise syscalls, small enough that one reader holds little memory. */
const FORWARD_CHUNK_BYTES = 256 * 1024;
const BACKWARD_BLOCK_BYTES = 64 * 1024;
/** Compressed bytes per read of a gzip segment: at 5–8:1, one read feeds several output chunks. */
const GZIP_READ_BYTES = 64 * 1024;

export interface ForwardSegmentReader {
  /** File offset (uncompressed) of the next record read() will return. */
  readonly offset: number;
  /**
   * The next batch of whole records starting at `offset`, reading no further than `limit` (a record
   * boundary). null when nothing more is there yet (limit or end of file). The batch is valid until
   * the next call.
   */
  read(limit: number): Promise<Buffer | null>;
  /** After read() returned null at end of file: bytes there that do not make a whole record (a torn tail). */
  readonly trailingBytes: number;
  close(): void;
}

/** Reads a plain segment through an fd, which stays valid when the file is renamed or unlinked by rotation. */
export class PlainSegmentReader implements ForwardSegmentReader {
  private chunk = Buffer.allocUnsafe(FORWARD_CHUNK_BYTES);
  private closed = false;
  private reading = false;
  trailingBytes = 0;

  constructor(private readonly fd: number, public offset: number) {}

  async read(limit: number): Promise<Buffer | null> {
    for (;;) {
      if (this.closed || limit <= this.offset) return null;
      const wanted = Math.min(limit - this.offset, this.chunk.length);
      this.reading = true;
      let bytesRead: number;
      try {
        ({ bytesRead } = await pread(this.fd, this.chunk, 0, wanted, this.offset));
      } finally {
        this.reading = false;
        // close() during the read deferred closing the fd, so the number could not be reused under it.
        if (this.closed) fs.close(this.fd, () => undefined);
      }
      if (this.closed) return null;
      if (bytesRead === 0) {
        this.trailingBytes = 0;
        return null;
      }
      const view = this.chunk.subarray(0, bytesRead);
      const whole = wholeRecordsPrefix(view, this.offset);
      if (whole.length > 0) {
        this.offset += whole.length;
        return view.subarray(0, whole.length);
      }
      if (bytesRead === wanted && whole.nextRecordBytes > this.chunk.length) {
        this.chunk = Buffer.allocUnsafe(whole.nextRecordBytes);
        continue;
      }
      // A short read means end of file inside a record.
      this.trailingBytes = bytesRead;
      return null;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.reading) fs.close(this.fd, () => undefined);
  }
}

/** Reads a compressed segment by decompressing from the start and discarding bytes before `offset`. */
export class GzipSegmentReader implements ForwardSegmentReader {
  private readonly file: fs.ReadStream;
  private readonly gunzip: zlib.Gunzip;
  private readonly chunks: AsyncIterator<Buffer>;
  private carry: Buffer = Buffer.alloc(0);
  private toSkip: number;
  private ended = false;
  trailingBytes = 0;

  constructor(fd: number, public offset: number) {
    this.toSkip = offset;
    this.file = fs.createReadStream('', { fd, autoClose: true, highWaterMark: GZIP_READ_BYTES });
    this.gunzip = zlib.createGunzip({ chunkSize: FORWARD_CHUNK_BYTES });
    // Errors surface through the iterator; the callback only keeps pipeline from throwing elsewhere.
    pipeline(this.file, this.gunzip, () => undefined);
    this.chunks = this.gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  async read(_limit: number): Promise<Buffer | null> {
    while (!this.ended) {
      const step = await this.chunks.next();
      if (step.done) {
        this.ended = true;
        break;
      }
      let chunk = step.value;
      if (this.toSkip > 0) {
        const skipped = Math.min(this.toSkip, chunk.length);
        this.toSkip -= skipped;
        chunk = chunk.subarray(skipped);
        if (chunk.length === 0) continue;
      }
      const data = this.carry.length === 0 ? chunk : Buffer.concat([this.carry, chunk]);
      const whole = wholeRecordsPrefix(data, this.offset);
      this.carry = data.subarray(whole.length);
      if (this.carry.length > MAX_RECORD_BODY + RECORD_OVERHEAD) {
        throw new CorruptRecordError(this.offset, 'record larger than the cap');
      }
      if (whole.length > 0) {
        this.offset += whole.length;
        return data.subarray(0, whole.length);
      }
    }
    this.trailingBytes = this.carry.length;
    return null;
  }

  close(): void {
    this.ended = true;
    this.gunzip.destroy();
    this.file.destroy();
  }
}

/** Walks a plain segment backwards, record by record, between `from` and `to` (record boundaries). */
export class BackwardRecordScanner {
  private block: Buffer = Buffer.alloc(0);
  private blockStart = 0;
  private pos: number;
  /** File offset of the record found by the last previous(). */
  start = 0;
  /** Its LogEntry bytes. */
  body: Buffer = this.block;

  constructor(private readonly fd: number, private readonly from: number, to: number) {
    this.pos = to;
  }

  /** Steps to the record that ends at the current position; false once `from` is reached. */
  async previous(): Promise<boolean> {
    if (this.pos <= this.from) return false;
    if (this.pos - this.from < RECORD_OVERHEAD) throw new CorruptRecordError(this.from, 'stray bytes before a record');
    await this.cover(this.pos - 4);
    const n = this.block.readUInt32BE(this.pos - 4 - this.blockStart);
    const start = this.pos - n - RECORD_OVERHEAD;
    if (n > MAX_RECORD_BODY || start < this.from) throw new CorruptRecordError(this.pos - 4, `footer ${n} does not fit`);
    await this.cover(start);
    const header = this.block.readUInt32BE(start - this.blockStart);
    if (header !== n) throw new CorruptRecordError(start, `header ${header} != footer ${n}`);
    this.start = start;
    this.body = this.block.subarray(start + 4 - this.blockStart, this.pos - 4 - this.blockStart);
    this.pos = start;
    return true;
  }

  /** Makes the block hold [offset, pos). A fresh buffer each time, so earlier `body` views stay valid. */
  private async cover(offset: number): Promise<void> {
    if (offset >= this.blockStart && this.pos <= this.blockStart + this.block.length) return;
    const readStart = Math.max(this.from, Math.min(offset, this.pos - BACKWARD_BLOCK_BYTES));
    const block = Buffer.allocUnsafe(this.pos - readStart);
    let filled = 0;
    while (filled < block.length) {
      const { bytesRead } = await pread(this.fd, block, filled, block.length - filled, readStart + filled);
      if (bytesRead === 0) throw new CorruptRecordError(readStart + filled, 'file shorter than expected');
      filled += bytesRead;
    }
    this.block = block;
    this.blockStart = readStart;
  }
}
