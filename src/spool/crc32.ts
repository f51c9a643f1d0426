/**
 * CRC-32 (IEEE 802.3, the one zlib and gzip use). Ranges from 512 bytes go to `zlib.crc32` (Node
 * 20.15+, ~5 GB/s here); shorter ones, most spooled records, stay in JS (table-driven, slice-by-8),
 * where a native call plus a view costs more than the sum itself (40 bytes: 45 ns in JS, 158 ns native).
 */
import zlib from 'node:zlib';

/** From this length a range is summed by zlib (measured crossover: ~300 bytes). */
const NATIVE_FROM_BYTES = 512;

const TABLES: Uint32Array[] = (() => {
  const tables: Uint32Array[] = [];
  const t0 = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t0[n] = c >>> 0;
  }
  tables.push(t0);
  for (let i = 1; i < 8; i++) {
    const prev = tables[i - 1] as Uint32Array;
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      const p = prev[n] as number;
      t[n] = ((p >>> 8) ^ (t0[p & 0xff] as number)) >>> 0;
    }
    tables.push(t);
  }
  return tables;
})();

const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];

/** CRC-32 of `buf[start, end)`, continuing from `crc` (0 to start). Returns an unsigned 32-bit value. */
export function crc32(buf: Uint8Array, start = 0, end = buf.length, crc = 0): number {
  if (end - start >= NATIVE_FROM_BYTES) return zlib.crc32(buf.subarray(start, end), crc);
  return crc32Js(buf, start, end, crc);
}

/** The JS path of crc32 (exported for the test that compares both paths). */
export function crc32Js(buf: Uint8Array, start: number, end: number, crc: number): number {
  let c = ~crc;
  let i = start;
  const fast = end - 8;
  while (i <= fast) {
    const a = c ^ ((buf[i] as number) | ((buf[i + 1] as number) << 8) | ((buf[i + 2] as number) << 16) | ((buf[i + 3] as number) << 24));
    c = (T7[a & 0xff] as number) ^ (T6[(a >>> 8) & 0xff] as number) ^ (T5[(a >>> 16) & 0xff] as number) ^ (T4[a >>> 24] as number)
      ^ (T3[buf[i + 4] as number] as number) ^ (T2[buf[i + 5] as number] as number) ^ (T1[buf[i + 6] as number] as number) ^ (T0[buf[i + 7] as number] as number);
    i += 8;
  }
  while (i < end) {
    c = (T0[(c ^ (buf[i] as number)) & 0xff] as number) ^ (c >>> 8);
    i++;
  }
  return ~c >>> 0;
}
