import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { compressSegment, readGzipLastTime } from '../src/store/gzip-segment.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shiplog-gzip-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Several read chunks and many deflate output chunks: random bytes barely compress. */
function segmentOf(bytes: number): string {
  const file = path.join(dir, `segment-${bytes}`);
  fs.writeFileSync(file, crypto.randomBytes(bytes));
  return file;
}

describe('compressSegment', () => {
  it('writes one gzip member of the whole segment, across many read and output chunks, with lastTime in Extra', async () => {
    const source = segmentOf(3 * 1024 * 1024 + 17);
    const target = path.join(dir, 'big.gz');
    const size = await compressSegment(fs.openSync(source, 'r'), target, 1_795_452_233_000_000_005n);
    const gz = fs.readFileSync(target);
    expect(size).toBe(gz.length);
    expect(zlib.gunzipSync(gz).equals(fs.readFileSync(source))).toBe(true);
    expect(readGzipLastTime(target)).toBe(1_795_452_233_000_000_005n);
    expect(gz[8]).toBe(4); // XFL: the fastest level
    // One member: gunzip of a second member would also pass, so check the trailer ends the file.
    expect(gz.readUInt32LE(gz.length - 4)).toBe((3 * 1024 * 1024 + 17) >>> 0);
  });

  it('writes a plain header (no Extra) when the segment has no last time, and an empty segment too', async () => {
    const source = path.join(dir, 'empty');
    fs.writeFileSync(source, '');
    const target = path.join(dir, 'empty.gz');
    await compressSegment(fs.openSync(source, 'r'), target, undefined);
    const gz = fs.readFileSync(target);
    expect(gz[3]).toBe(0);
    expect(zlib.gunzipSync(gz).length).toBe(0);
    expect(readGzipLastTime(target)).toBeUndefined();
  });
});
