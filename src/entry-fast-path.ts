/**
 * The LogEntry messages dockerd writes for whole lines, decoded without protobufjs: every one carries
 * `source` ("stdout"/"stderr"), `time_nano` and, unless the line is empty, `line`, each tag one byte.
 * Reading those four fields by hand takes less than half the time of the generated decoder, which builds
 * a LogEntry, a LongBits and a Long and decodes the source string for every line (BENCHMARKS.md,
 * micro). Anything else — partial metadata, attrs, an unknown field, a varint longer than the
 * encoding allows, another source, bytes past the end — returns undefined, and the caller decodes the
 * message with protobufjs, which then answers or throws as it always does: the two agree on every
 * message this path takes (test/entry-fast-path.test.ts compares them on random and broken input).
 */
import type { DecodedEntry } from './entry.js';

const TAG_SOURCE = 0x0a; // field 1, length-delimited
const TAG_TIME = 0x10; // field 2, varint
const TAG_LINE = 0x1a; // field 3, length-delimited
const TAG_PARTIAL = 0x20; // field 4, varint (false: a whole line)

const SOURCE_LENGTH = 6;
const S = 0x73;
const T = 0x74;
const D = 0x64;
const O = 0x6f;
const U = 0x75;
const E = 0x65;
const R = 0x72;

/** Shared by every empty line, as protobufjs' default. */
export const EMPTY_LINE = Buffer.alloc(0);

/**
 * `buf[start, end)` as a whole line's entry, or undefined when the message is not one this path
 * decodes (the caller asks protobufjs). `line` is a view into `buf`.
 */
export function decodeWholeLine(buf: Buffer, start: number, end: number): DecodedEntry | undefined {
  let source: 'stdout' | 'stderr' | undefined;
  let low = 0;
  let high = 0;
  let line: Buffer<ArrayBufferLike> = EMPTY_LINE;
  let pos = start;
  while (pos < end) {
    const tag = buf[pos++] as number;
    if (tag === TAG_SOURCE) {
      if (pos + 1 + SOURCE_LENGTH > end || buf[pos] !== SOURCE_LENGTH) return undefined;
      const at = pos + 1;
      if (buf[at] !== S || buf[at + 1] !== T || buf[at + 2] !== D) return undefined;
      const c3 = buf[at + 3];
      const c4 = buf[at + 4];
      const c5 = buf[at + 5];
      if (c3 === O && c4 === U && c5 === T) source = 'stdout';
      else if (c3 === E && c4 === R && c5 === R) source = 'stderr';
      else return undefined;
      pos = at + SOURCE_LENGTH;
    } else if (tag === TAG_TIME) {
      // int64 as protobufjs' LongBits reads it: 28 bits from the first four bytes, then 4 + 3 bits
      // from the fifth, then 7 bits of the high word from each of up to five more.
      let b = 0x80;
      low = 0;
      high = 0;
      let shift = 0;
      for (; shift < 28 && b >= 0x80; shift += 7) {
        if (pos >= end) return undefined;
        b = buf[pos++] as number;
        low |= (b & 0x7f) << shift;
      }
      if (b >= 0x80) {
        if (pos >= end) return undefined;
        b = buf[pos++] as number;
        low |= (b & 0x0f) << 28;
        high = (b & 0x7f) >> 4;
        for (shift = 3; shift < 38 && b >= 0x80; shift += 7) {
          if (pos >= end) return undefined;
          b = buf[pos++] as number;
          high |= (b & 0x7f) << shift;
        }
        if (b >= 0x80) return undefined; // longer than 10 bytes
      }
      low |= 0;
      high |= 0;
    } else if (tag === TAG_LINE) {
      // A length of at most 4 bytes (< 2^28: any line in a frame of at most 1 MB).
      let length = 0;
      let b = 0x80;
      for (let shift = 0; shift < 28 && b >= 0x80; shift += 7) {
        if (pos >= end) return undefined;
        b = buf[pos++] as number;
        length |= (b & 0x7f) << shift;
      }
      if (b >= 0x80 || pos + length > end) return undefined;
      line = length === 0 ? EMPTY_LINE : buf.subarray(pos, pos + length);
      pos += length;
    } else if (tag === TAG_PARTIAL) {
      if (pos >= end || buf[pos] !== 0) return undefined;
      pos++;
    } else {
      return undefined;
    }
  }
  if (source === undefined) return undefined;
  return { source, timeNano: { low, high }, line, partial: false, partialId: '', partialOrdinal: 0, partialLast: false };
}
