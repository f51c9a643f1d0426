import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isPlainDockerJsonText, isPlainJsonText } from '../sinks/plain-bytes.js';

/** The definitions, a byte at a time. */
const jsonSpecial = (b: number): boolean => b < 0x20 || b > 0x7e || b === 0x22 || b === 0x5c;
const dockerSpecial = (b: number): boolean => jsonSpecial(b) || b === 0x3c || b === 0x3e || b === 0x26;
const plainBy = (special: (b: number) => boolean) => (line: Uint8Array): boolean => line.every((b) => !special(b));

const scans = [
  { name: 'isPlainJsonText', scan: isPlainJsonText, expected: plainBy(jsonSpecial) },
  { name: 'isPlainDockerJsonText', scan: isPlainDockerJsonText, expected: plainBy(dockerSpecial) },
];

/** A line of `length` bytes of `fill` at byte offset `offset` inside a larger buffer (as lines sit in a FIFO chunk). */
function lineIn(chunk: Buffer, offset: number, length: number, fill: number): Buffer {
  const line = chunk.subarray(offset, offset + length);
  line.fill(fill);
  return line;
}

describe.each(scans)('$name', ({ scan, expected }) => {
  it('finds any byte value at any position, for every alignment and for lengths around the word size', () => {
    const chunk = Buffer.alloc(256);
    let checked = 0;
    for (const length of [0, 1, 3, 4, 15, 16, 17, 18, 19, 20, 23, 41]) {
      for (let offset = 0; offset < 4; offset++) {
        for (let position = 0; position < length; position++) {
          for (let byte = 0; byte < 256; byte++) {
            const line = lineIn(chunk, offset + 8, length, 0x61);
            line[position] = byte;
            if (scan(line) !== expected(line)) throw new Error(`length ${length} offset ${offset} position ${position} byte 0x${byte.toString(16)}: got ${scan(line)}`);
            checked++;
          }
        }
        expect(scan(lineIn(chunk, offset + 8, length, 0x7e))).toBe(true);
      }
    }
    expect(checked).toBeGreaterThan(100_000);
  });

  it('finds any byte value in long lines (the native passes), at the ends, at word edges and inside, for every alignment', () => {
    const chunk = Buffer.alloc(4096);
    for (const length of [1023, 1024, 1025, 1027, 1500, 3000]) {
      const positions = [0, 1, 2, 3, 4, 5, Math.floor(length / 2), length - 5, length - 4, length - 3, length - 2, length - 1];
      for (let offset = 0; offset < 4; offset++) {
        for (const position of positions) {
          for (let byte = 0; byte < 256; byte++) {
            const line = lineIn(chunk, offset + 8, length, 0x7e);
            line[position] = byte;
            if (scan(line) !== expected(line)) throw new Error(`length ${length} offset ${offset} position ${position} byte 0x${byte.toString(16)}: got ${scan(line)}`);
          }
        }
        expect(scan(lineIn(chunk, offset + 8, length, 0x20))).toBe(true);
      }
    }
    // A long line that is not a Buffer (a Uint8Array view) goes through the same passes.
    const view = new Uint8Array(chunk.buffer, chunk.byteOffset + 9, 2000).fill(0x61);
    expect(scan(view)).toBe(true);
    view[1999] = 0x7f;
    expect(scan(view)).toBe(false);
  });

  it('agrees with the definition on random lines of printable ASCII with a few other bytes mixed in', () => {
    for (let round = 0; round < 5_000; round++) {
      const bytes = crypto.randomBytes(16 + (round % 300));
      for (let i = 0; i < bytes.length; i++) bytes[i] = 0x20 + ((bytes[i] as number) % 0x5f);
      const odd = round % 4;
      for (let k = 0; k < odd; k++) bytes[crypto.randomInt(bytes.length)] = crypto.randomInt(256);
      expect(scan(bytes)).toBe(expected(bytes));
    }
  });

  it('agrees with the definition on random long lines with a few other bytes mixed in', () => {
    for (let round = 0; round < 400; round++) {
      const bytes = crypto.randomBytes(1000 + ((round * 37) % 5000));
      for (let i = 0; i < bytes.length; i++) bytes[i] = 0x20 + ((bytes[i] as number) % 0x5f);
      const odd = round % 3;
      for (let k = 0; k < odd; k++) bytes[crypto.randomInt(bytes.length)] = crypto.randomInt(256);
      expect(scan(bytes)).toBe(expected(bytes));
    }
  });

  it('scans lines of different buffers one after another (a Buffer pool slab, a chunk of its own, a SharedArrayBuffer)', () => {
    const fromPool = Buffer.from('pooled line of plain text, long enough for words');
    const own = Buffer.alloc(100, 0x61);
    const shared = Buffer.from(new SharedArrayBuffer(64)).fill(0x62);
    for (let i = 0; i < 3; i++) {
      expect(scan(fromPool)).toBe(true);
      expect(scan(own.subarray(1, 99))).toBe(true);
      own[50] = 0x0a;
      expect(scan(own.subarray(1, 99))).toBe(false);
      own[50] = 0x61;
      expect(scan(shared.subarray(3))).toBe(true);
    }
  });
});
