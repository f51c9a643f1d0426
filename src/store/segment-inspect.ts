/**
 * Synchronous checks of a plain segment at load time: the last record's time (so reads with Since can
 * skip the file), and where the last whole record ends when a crash tore the tail.
 */
import fs from 'node:fs';
import { decodeEntry } from '../entry.js';
import { partsToBigInt } from '../time.js';
import { CorruptRecordError, MAX_RECORD_BODY, RECORD_OVERHEAD, RecordCursor, wholeRecordsPrefix } from './record-format.js';

export type LastRecord = { kind: 'empty' } | { kind: 'ok'; time: bigint } | { kind: 'torn' };

function readExactly(fd: number, length: number, position: number): Buffer | undefined {
  const buf = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const n = fs.readSync(fd, buf, filled, length - filled, position + filled);
    if (n === 0) return undefined;
    filled += n;
  }
  return buf;
}

/** Reads the record that ends at `size` through its footer; 'torn' when it does not check out. */
export function inspectLastRecord(fd: number, size: number): LastRecord {
  if (size === 0) return { kind: 'empty' };
  if (size < RECORD_OVERHEAD) return { kind: 'torn' };
  const footer = readExactly(fd, 4, size - 4);
  if (!footer) return { kind: 'torn' };
  const n = footer.readUInt32BE(0);
  if (n > MAX_RECORD_BODY || n + RECORD_OVERHEAD > size) return { kind: 'torn' };
  const record = readExactly(fd, n + RECORD_OVERHEAD, size - n - RECORD_OVERHEAD);
  if (!record || record.readUInt32BE(0) !== n) return { kind: 'torn' };
  try {
    return { kind: 'ok', time: partsToBigInt(decodeEntry(record.subarray(4, 4 + n)).timeNano) };
  } catch {
    return { kind: 'torn' };
  }
}

const SCAN_CHUNK_BYTES = 1024 * 1024;

/**
 * Walks the file forwards and returns the offset just after the last record whose header and
 * footer agree: where a torn tail should be cut.
 */
export function lastWholeRecordEnd(fd: number, size: number): number {
  const cursor = new RecordCursor();
  let chunkSize = SCAN_CHUNK_BYTES;
  let offset = 0;
  while (offset < size) {
    const wanted = Math.min(chunkSize, size - offset);
    const data = readExactly(fd, wanted, offset);
    if (!data) return offset;
    let whole: { length: number; nextRecordBytes: number };
    try {
      whole = wholeRecordsPrefix(data, offset);
    } catch (err) {
      if (err instanceof CorruptRecordError) return offset;
      throw err;
    }
    if (whole.length === 0) {
      if (whole.nextRecordBytes > chunkSize && offset + whole.nextRecordBytes <= size) {
        chunkSize = whole.nextRecordBytes;
        continue;
      }
      return offset;
    }
    cursor.reset(data.subarray(0, whole.length), offset);
    try {
      while (cursor.next()) {
        // header and footer agree; keep going
      }
    } catch (err) {
      if (err instanceof CorruptRecordError) return err.offset;
      throw err;
    }
    offset += whole.length;
  }
  return offset;
}
