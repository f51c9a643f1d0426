import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeWholeLine } from '../src/entry-fast-path.js';
import { decodeEntryAt, decodeWithProtobufAt, type DecodedEntry } from '../src/entry.js';
import { LogEntry } from '../src/generated/entry.js';

/** A comparable form: Long and plain halves alike, line as bytes. */
function plain(e: DecodedEntry): unknown {
  return { ...e, timeNano: { low: e.timeNano.low, high: e.timeNano.high }, line: Buffer.from(e.line).toString('hex') };
}

type Outcome = { ok: unknown } | { threw: true };
function outcome(decode: () => DecodedEntry): Outcome {
  try {
    return { ok: plain(decode()) };
  } catch {
    return { threw: true };
  }
}

/** The message inside a larger buffer, as frames sit in a FIFO chunk. */
function inChunk(message: Uint8Array): { buf: Buffer; start: number; end: number } {
  const buf = Buffer.concat([crypto.randomBytes(5), message, crypto.randomBytes(5)]);
  return { buf, start: 5, end: 5 + message.length };
}

type TimeField = Parameters<typeof LogEntry.encode>[0]['timeNano'];
function long(low: number, high: number): TimeField {
  return { low, high, unsigned: false } as unknown as TimeField;
}

const TIMES: Array<[number, number]> = [
  [0, 0], [1, 0], [0x7f, 0], [0x80, 0], [0x0fffffff, 0], [0x10000000, 0], [-1, 0], [0, 1], [-1385627648, 418039069], // a 2026 time
  [-1, 0x7fffffff], [0, -2147483648], [-1, -1], [12345, -7],
];

function randomWholeLine(i: number): Uint8Array {
  const [low, high] = i < TIMES.length ? TIMES[i]! : [crypto.randomInt(2 ** 32) | 0, crypto.randomInt(2 ** 31) * (i % 3 === 0 ? -1 : 1)];
  const lineLength = [0, 1, 127, 128, 16383, 16384, 40000][i % 7]! + (i % 5);
  return LogEntry.encode({ source: i % 2 === 0 ? 'stdout' : 'stderr', timeNano: long(low, high), line: crypto.randomBytes(lineLength) }).finish();
}

describe('decodeWholeLine (the FIFO reader\'s fast path)', () => {
  it('takes every whole-line entry protobufjs writes and decodes it exactly as protobufjs does', () => {
    for (let i = 0; i < 400; i++) {
      const { buf, start, end } = inChunk(randomWholeLine(i));
      const fast = decodeWholeLine(buf, start, end);
      expect(fast, `message ${i}`).toBeDefined();
      expect(plain(fast!)).toEqual(plain(decodeWithProtobufAt(buf, start, end)));
      if (fast!.line.length > 0) expect(fast!.line.buffer).toBe(buf.buffer); // a view, not a copy
    }
  });

  it('agrees with protobufjs on what it writes in other ways: fields repeated, reordered, non-minimal varints, partial=false spelt out', () => {
    const cases: Array<[string, number[]]> = [
      ['time twice: the last wins', [0x0a, 6, ...Buffer.from('stdout'), 0x10, 5, 0x10, 7, 0x1a, 1, 0x41]],
      ['line twice: the last wins', [0x1a, 1, 0x41, 0x0a, 6, ...Buffer.from('stderr'), 0x1a, 2, 0x42, 0x43]],
      ['fields in reverse order', [0x1a, 1, 0x41, 0x10, 1, 0x0a, 6, ...Buffer.from('stdout')]],
      ['a 2-byte zero length', [0x0a, 6, ...Buffer.from('stdout'), 0x1a, 0x80, 0x00]],
      ['a 10-byte time varint', [0x0a, 6, ...Buffer.from('stdout'), 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]],
      ['a time varint with padding', [0x0a, 6, ...Buffer.from('stdout'), 0x10, 0x85, 0x80, 0x80, 0x00]],
      ['partial = false written out', [0x0a, 6, ...Buffer.from('stdout'), 0x20, 0x00, 0x1a, 1, 0x41]],
    ];
    for (const [name, bytes] of cases) {
      const { buf, start, end } = inChunk(Uint8Array.from(bytes));
      const fast = decodeWholeLine(buf, start, end);
      expect(fast, name).toBeDefined();
      expect(plain(fast!), name).toEqual(plain(decodeWithProtobufAt(buf, start, end)));
    }
  });

  it('leaves to protobufjs what it does not take: partial metadata, attrs, other sources, unknown fields, broken bytes', () => {
    const encoded = (e: Parameters<typeof LogEntry.encode>[0]): number[] => [...LogEntry.encode(e).finish()];
    const cases: Array<[string, number[]]> = [
      ['partial with metadata', encoded({ source: 'stdout', line: Buffer.from('a'), partial: true, partialLogMetadata: { id: 'x', ordinal: 1, last: false } })],
      ['partial, no metadata', encoded({ source: 'stdout', line: Buffer.from('a'), partial: true })],
      ['attrs', encoded({ source: 'stdout', line: Buffer.from('a'), attrs: [{ key: 'k', value: 'v' }] })],
      ['no source', encoded({ line: Buffer.from('a') })],
      ['another source', encoded({ source: 'stdin', line: Buffer.from('a') })],
      ['a six-letter other source', encoded({ source: 'stdfoo', line: Buffer.from('a') })],
      ['an unknown field', [0x0a, 6, ...Buffer.from('stdout'), 0x38, 0x01]],
      ['source with a varint wire type', [0x08, 0x01, 0x0a, 6, ...Buffer.from('stdout')]],
      ['line longer than the message', [0x0a, 6, ...Buffer.from('stdout'), 0x1a, 0x05, 0x41]],
      ['time cut off', [0x0a, 6, ...Buffer.from('stdout'), 0x10, 0x85]],
      ['time varint over 10 bytes', [0x0a, 6, ...Buffer.from('stdout'), 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]],
      ['source cut off', [0x0a, 6, ...Buffer.from('std')]],
      ['empty message', []],
    ];
    for (const [name, bytes] of cases) {
      const { buf, start, end } = inChunk(Uint8Array.from(bytes));
      expect(decodeWholeLine(buf, start, end), name).toBeUndefined();
      expect(outcome(() => decodeEntryAt(buf, start, end)), name).toEqual(outcome(() => decodeWithProtobufAt(buf, start, end)));
    }
  });

  it('decodeEntryAt answers as protobufjs does for any bytes: 20,000 mutated messages, both decode alike or both throw', () => {
    let fastTaken = 0;
    let threw = 0;
    for (let i = 0; i < 20_000; i++) {
      const message = Buffer.from(randomWholeLine(i % 200).subarray(0, 300));
      const flips = 1 + (i % 3);
      for (let k = 0; k < flips; k++) message[crypto.randomInt(Math.max(1, message.length))] = crypto.randomInt(256);
      const cut = i % 4 === 0 ? crypto.randomInt(message.length + 1) : message.length;
      const { buf, start } = inChunk(message);
      const end = start + cut;
      if (decodeWholeLine(buf, start, end) !== undefined) fastTaken++;
      const expected = outcome(() => decodeWithProtobufAt(buf, start, end));
      if ('threw' in expected) threw++;
      expect(outcome(() => decodeEntryAt(buf, start, end))).toEqual(expected);
    }
    // The mix exercised both paths and both outcomes.
    expect(fastTaken).toBeGreaterThan(1_000);
    expect(threw).toBeGreaterThan(1_000);
  });
});
