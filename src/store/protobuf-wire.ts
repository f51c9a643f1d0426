/**
 * Protobuf wire-format varints, written straight into a buffer (for readlogs-frame.ts, which builds
 * ReadLogs frames without protobufjs' Writer). Output matches protobufjs' `uint32` and `int64`.
 */
import type { Int64Parts } from '../time.js';

/** Bytes of the varint of a uint32 (`v` in [0, 2^32)): 1 to 5. */
export function varint32Length(v: number): number {
  // 7 payload bits a byte; 0 still takes one byte.
  return v < 0x80 ? 1 : Math.ceil((32 - Math.clz32(v)) / 7);
}

/** Bytes of the varint of an int64 from its two 32-bit halves (two's complement): 1 to 10. */
export function varint64Length(t: Int64Parts): number {
  const high = t.high >>> 0;
  if (high === 0) return varint32Length(t.low >>> 0);
  return Math.ceil((64 - Math.clz32(high)) / 7);
}

/** Writes the varint of a uint32 at `at`; returns the offset after it. */
export function writeVarint32(buf: Uint8Array, at: number, v: number): number {
  let rest = v >>> 0;
  while (rest >= 0x80) {
    buf[at++] = (rest & 0x7f) | 0x80;
    rest >>>= 7;
  }
  buf[at++] = rest;
  return at;
}

/**
 * Writes the varint of an int64 at `at` from its 32-bit halves, never through a JS number (the value
 * may exceed 2^53); a negative value takes 10 bytes, as protobufjs writes it. Returns the offset after it.
 */
export function writeVarint64(buf: Uint8Array, at: number, t: Int64Parts): number {
  let low = t.low >>> 0;
  let high = t.high >>> 0;
  while (high !== 0) {
    buf[at++] = (low & 0x7f) | 0x80;
    low = ((low >>> 7) | (high << 25)) >>> 0;
    high >>>= 7;
  }
  return writeVarint32(buf, at, low);
}
