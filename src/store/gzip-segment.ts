/**
 * Compressed rotated segments, in Docker's `local` format (protocol.md §6): a gzip member whose header
 * Extra field holds raw JSON `{"lastTime":"<RFC3339Nano>"}`, the segment's last entry time, so a read
 * with Since can skip the whole file after reading a few header bytes. Node's gzip writer cannot set
 * Extra, so the member is assembled here: our header, zlib's raw deflate, then CRC32 and size.
 */
import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { formatRfc3339NanoBigInt, parseRfc3339Nano } from '../time.js';

const GZIP_MAGIC_1 = 0x1f;
const GZIP_MAGIC_2 = 0x8b;
const METHOD_DEFLATE = 8;
const FLAG_EXTRA = 0x04;
const OS_UNKNOWN = 255;

function gzipHeader(lastTime: bigint | undefined): Buffer {
  const extra = lastTime === undefined ? undefined : Buffer.from(JSON.stringify({ lastTime: formatRfc3339NanoBigInt(lastTime) }));
  const header = Buffer.alloc(10 + (extra ? 2 + extra.length : 0));
  header[0] = GZIP_MAGIC_1;
  header[1] = GZIP_MAGIC_2;
  header[2] = METHOD_DEFLATE;
  header[3] = extra ? FLAG_EXTRA : 0;
  // bytes 4-7 MTIME = 0 (none), byte 8 XFL = 0
  header[9] = OS_UNKNOWN;
  if (extra) {
    header.writeUInt16LE(extra.length, 10);
    extra.copy(header, 12);
  }
  return header;
}

/**
 * Compresses the plain segment open at `sourceFd` into `targetPath` (which the caller renames into
 * place when this resolves). Closes `sourceFd`. Resolves with the compressed size.
 */
export async function compressSegment(sourceFd: number, targetPath: string, lastTime: bigint | undefined): Promise<number> {
  let crc = 0;
  let size = 0;
  await pipeline(
    fs.createReadStream('', { fd: sourceFd, start: 0, autoClose: true }),
    async function* checksum(source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        crc = zlib.crc32(chunk, crc);
        size += chunk.length;
        yield chunk;
      }
    },
    zlib.createDeflateRaw(),
    async function* gzipMember(deflated: AsyncIterable<Buffer>) {
      yield gzipHeader(lastTime);
      for await (const chunk of deflated) yield chunk;
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(crc >>> 0, 0);
      trailer.writeUInt32LE(size >>> 0, 4); // ISIZE is the size modulo 2^32
      yield trailer;
    },
    fs.createWriteStream(targetPath, { mode: 0o640, flags: 'w' }),
  );
  return fs.statSync(targetPath).size;
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
