/**
 * Compressed rotated segments, in Docker's `local` format (protocol.md §6): a gzip member whose header
 * Extra field holds raw JSON `{"lastTime":"<RFC3339Nano>"}`, the segment's last entry time, so a read
 * with Since can skip the whole file after reading a few header bytes. Node's gzip writer cannot set
 * Extra, so the member is put together by hand: our header, then zlib's raw deflate data and the
 * CRC32/size trailer (which cover the uncompressed bytes only), on the compression thread.
 */
import fs from 'node:fs';
import { formatRfc3339NanoBigInt, parseRfc3339Nano } from '../time.js';
import { compressOnThread } from './compression-thread.js';

const GZIP_MAGIC_1 = 0x1f;
const GZIP_MAGIC_2 = 0x8b;
const METHOD_DEFLATE = 8;
const FLAG_EXTRA = 0x04;
const OS_UNKNOWN = 255;
/** XFL: the compressor used its fastest algorithm (RFC 1952), as COMPRESSION_LEVEL does. */
const XFL_FASTEST = 4;

/**
 * zlib's fastest level. At the default (6) a 20 MB segment of `seq` lines took 330–370 ms of CPU on
 * this machine (its lazy matching searching long hash chains), at 1 50–60 ms for a file 3.5 % larger;
 * access-log lines 110 → 60 ms for 9 % more bytes. Rotated segments are written once and rarely read,
 * their number is bounded by max-file, and every CPU second spent here is one the containers and
 * dockerd on the same host do not get (BENCHMARKS.md).
 */
const COMPRESSION_LEVEL = 1;

function gzipHeader(lastTime: bigint | undefined): Buffer {
  const extra = lastTime === undefined ? undefined : Buffer.from(JSON.stringify({ lastTime: formatRfc3339NanoBigInt(lastTime) }));
  const header = Buffer.alloc(10 + (extra ? 2 + extra.length : 0));
  header[0] = GZIP_MAGIC_1;
  header[1] = GZIP_MAGIC_2;
  header[2] = METHOD_DEFLATE;
  header[3] = extra ? FLAG_EXTRA : 0;
  // bytes 4-7 MTIME = 0 (none)
  header[8] = XFL_FASTEST;
  header[9] = OS_UNKNOWN;
  if (extra) {
    header.writeUInt16LE(extra.length, 10);
    extra.copy(header, 12);
  }
  return header;
}

/**
 * Compresses the plain segment open at `sourceFd` into `targetPath` (which the caller renames into
 * place when this resolves), on the compression thread (compression-thread.ts).
 * Closes `sourceFd`. Resolves with the compressed size.
 */
export async function compressSegment(sourceFd: number, targetPath: string, lastTime: bigint | undefined): Promise<number> {
  try {
    return await compressOnThread({ sourceFd, targetPath, header: gzipHeader(lastTime), level: COMPRESSION_LEVEL });
  } finally {
    fs.closeSync(sourceFd);
  }
}

/** The `lastTime` a compressed segment's header records, or undefined when it has none or is unreadable. */
export function readGzipLastTime(path: string): bigint | undefined {
  let fd: number | undefined;
  try {
    fd = fs.openSync(path, 'r');
    const fixed = Buffer.alloc(12);
    if (fs.readSync(fd, fixed, 0, 12, 0) < 12) return undefined;
    if (fixed[0] !== GZIP_MAGIC_1 || fixed[1] !== GZIP_MAGIC_2 || ((fixed[3] ?? 0) & FLAG_EXTRA) === 0) return undefined;
    const extraLength = fixed.readUInt16LE(10);
    const extra = Buffer.alloc(extraLength);
    if (fs.readSync(fd, extra, 0, extraLength, 12) < extraLength) return undefined;
    const parsed: unknown = JSON.parse(extra.toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const text = (parsed as { lastTime?: unknown }).lastTime;
    return typeof text === 'string' ? parseRfc3339Nano(text) : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
