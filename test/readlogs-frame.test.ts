/**
 * writeReadLogsFrame writes the ReadLogs frame itself; protobufjs is the reference. Every frame must equal,
 * byte for byte, `frame(encodeEntry(source, timeNano, line + '\n' if the entry ends a line))` and
 * decode with protobufjs to the same source, exact time_nano and line. Seeded, so a failure reproduces.
 */
import { describe, expect, it } from 'vitest';
import { encodeEntry, frame, type DecodedEntry } from '../src/entry.js';
import { LogEntry } from '../src/generated/entry.js';
import { readLogsFrameLength, writeReadLogsFrame } from '../src/store/readlogs-frame.js';
import { RECORD_OVERHEAD } from '../src/store/record-format.js';
import { bigIntToParts, partsToBigInt, type Int64Parts } from '../src/time.js';

/** xorshift32: small, seeded, fast. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
  return { next, int: (n: number) => next() % n, bool: () => (next() & 1) === 1 };
}
type Rng = ReturnType<typeof rng>;

const TWO_53 = 1n << 53n;
const LINE_SIZES = [0, 1, 127, 128, 16383, 16384, 16385, 1 << 20];
/** Around the varint byte boundaries, 2^53 (the end of exact doubles), dockerd's ~1.8e18, and the sign bit. */
const SPECIAL_TIMES: bigint[] = [
  0n, 1n, 127n, 128n, 16383n, 16384n, (1n << 32n) - 1n, 1n << 32n, (1n << 35n) - 1n, 1n << 35n,
  TWO_53 - 1n, TWO_53, TWO_53 + 1n, 1_795_452_233_042_059_423n, (1n << 56n) - 1n, 1n << 56n,
  (1n << 63n) - 1n, -1n, -(1n << 63n), -(1n << 32n), -TWO_53 - 1n,
];

/** One frame on its own: written into a buffer of exactly readLogsFrameLength bytes, which it must fill. */
function readLogsFrame(e: DecodedEntry): Buffer {
  const out = Buffer.alloc(readLogsFrameLength(e));
  expect(writeReadLogsFrame(out, 0, e)).toBe(out.length);
  return out;
}

/** The reference: protobufjs' encoder and the existing framing, newline added by copying. */
function expectedFrame(e: DecodedEntry): Buffer {
  const endsLine = !e.partial || e.partialLast;
  const line = endsLine ? Buffer.concat([e.line, Buffer.from('\n')]) : e.line;
  return frame(encodeEntry(e.source, e.timeNano, line));
}

/** int64 as Int64Parts, in the signed form protobufjs decodes or (half the time) the unsigned one. */
function parts(ns: bigint, unsignedForm: boolean): Int64Parts {
  const p = bigIntToParts(BigInt.asIntN(64, ns));
  return unsignedForm ? { low: p.low >>> 0, high: p.high >>> 0 } : p;
}

function randomTime(r: Rng): bigint {
  switch (r.int(4)) {
    case 0: return SPECIAL_TIMES[r.int(SPECIAL_TIMES.length)] as bigint;
    case 1: return BigInt.asIntN(64, (BigInt(r.next()) << 32n) | BigInt(r.next())); // any bit pattern
    case 2: { // uniform below 2^bits, so every varint length shows up
      const bits = BigInt(r.int(65));
      return BigInt.asIntN(64, ((BigInt(r.next()) << 32n) | BigInt(r.next())) & ((1n << bits) - 1n));
    }
    default: return 1_795_452_233_000_000_000n + BigInt(r.next()) * 1000n; // dockerd's timestamps
  }
}

function randomLength(r: Rng): number {
  const k = r.int(100);
  if (k < 20) return LINE_SIZES[r.int(LINE_SIZES.length - 1)] as number; // boundaries below 1 MiB
  if (k === 20) return r.int((1 << 20) + 1); // up to 1 MiB
  if (k < 30) return r.int(20_000);
  return r.int(300);
}

/** The line as decodeEntry hands it out: a view at some offset into a larger buffer, Buffer or plain Uint8Array. */
function randomLine(r: Rng, length: number): Uint8Array {
  const pad = r.int(8);
  const backing = new Uint8Array(pad + length + r.int(8));
  for (let i = 0; i < backing.length; i++) backing[i] = r.next() & 0xff;
  const view = backing.subarray(pad, pad + length);
  return r.bool() ? Buffer.from(view.buffer, view.byteOffset, view.byteLength) : view;
}

function entry(source: string, ns: bigint, line: Uint8Array, partial: boolean, partialLast: boolean, unsignedForm = false): DecodedEntry {
  return { source, timeNano: parts(ns, unsignedForm), line, partial, partialId: partial ? 'p1' : '', partialOrdinal: partial ? 2 : 0, partialLast };
}

function randomEntry(r: Rng): DecodedEntry {
  const partial = r.int(3) === 0;
  return entry(r.bool() ? 'stdout' : 'stderr', randomTime(r), randomLine(r, randomLength(r)), partial, partial && r.bool(), r.bool());
}

/** Decodes a frame with protobufjs: length prefix checked, then the LogEntry. */
function decodeFrame(f: Buffer) {
  expect(f.readUInt32BE(0)).toBe(f.length - 4);
  const d = LogEntry.decode(f.subarray(4));
  const t = d.timeNano;
  if (typeof t === 'number') throw new Error('protobufjs decoded time_nano as a number: it would not be exact');
  return { decoded: d, ns: partsToBigInt({ low: t.low, high: t.high }) };
}

describe('writeReadLogsFrame', () => {
  it('equals protobufjs byte for byte on 20,000 seeded random entries (both sources, full int64 range, partials, lines to 1 MiB)', () => {
    const r = rng(20261124);
    const seen = { stdout: 0, stderr: 0, beyond2to53: 0, signBit: 0, zeroTime: 0, empty: 0, big: 0, partialChunk: 0, partialLast: 0 };
    for (let i = 0; i < 20_000; i++) {
      const e = randomEntry(r);
      expect(readLogsFrame(e).equals(expectedFrame(e)), `entry ${i}`).toBe(true);
      const ns = BigInt.asUintN(64, partsToBigInt(e.timeNano));
      seen[e.source as 'stdout' | 'stderr']++;
      if (ns > TWO_53) seen.beyond2to53++;
      if (ns >= 1n << 63n) seen.signBit++;
      if (ns === 0n) seen.zeroTime++;
      if (e.line.length === 0) seen.empty++;
      if (e.line.length > 16385) seen.big++;
      if (e.partial) seen[e.partialLast ? 'partialLast' : 'partialChunk']++;
    }
    // The generator did produce every kind of entry the test names.
    for (const [kind, n] of Object.entries(seen)) expect(n, kind).toBeGreaterThan(20);
  });

  it('equals protobufjs at the varint boundaries of the line field (0/1/127/128/16383/16384/16385 bytes, 1 MiB), with and without the newline', () => {
    const r = rng(7);
    for (const size of LINE_SIZES) {
      const line = randomLine(r, size);
      for (const [partial, partialLast] of [[false, false], [true, false], [true, true]] as const) {
        for (const source of ['stdout', 'stderr']) {
          const e = entry(source, 1_795_452_233_042_059_423n, line, partial, partialLast);
          expect(readLogsFrame(e).equals(expectedFrame(e)), `${source} ${size} bytes partial=${partial} last=${partialLast}`).toBe(true);
        }
      }
    }
  });

  it('equals protobufjs for time_nano 0, around 2^32 and 2^53, dockerd-sized, 2^63-1 and with the sign bit set, in signed and unsigned Int64Parts', () => {
    for (const ns of SPECIAL_TIMES) {
      for (const unsignedForm of [false, true]) {
        const e = entry('stderr', ns, Buffer.from('x'), false, false, unsignedForm);
        expect(readLogsFrame(e).equals(expectedFrame(e)), `${ns} unsigned=${unsignedForm}`).toBe(true);
      }
    }
  });

  it('decodes with protobufjs to the same source, exact time_nano and line (+ \\n when the entry ends a line), and no partial fields', () => {
    const r = rng(99);
    for (let i = 0; i < 5_000; i++) {
      const e = randomEntry(r);
      const { decoded, ns } = decodeFrame(readLogsFrame(e));
      expect(decoded.source).toBe(e.source);
      expect(BigInt.asIntN(64, ns)).toBe(BigInt.asIntN(64, partsToBigInt(e.timeNano)));
      const endsLine = !e.partial || e.partialLast;
      const want = endsLine ? Buffer.concat([e.line, Buffer.from('\n')]) : Buffer.from(e.line);
      expect(Buffer.from(decoded.line).equals(want), `entry ${i}`).toBe(true);
      expect(decoded.partial).toBe(false);
      expect(decoded.partialLogMetadata ?? null).toBeNull();
    }
  });

  it('keeps a time_nano beyond 2^53 exact (one more than 2^53 does not round)', () => {
    for (const ns of [TWO_53 + 1n, 1_795_452_233_042_059_423n, (1n << 63n) - 1n]) {
      const { ns: back } = decodeFrame(readLogsFrame(entry('stdout', ns, Buffer.from('line1'), false, false)));
      expect(back).toBe(ns);
    }
  });

  it('appends \\n to complete and partial-last entries only, empty lines included', () => {
    const line = (e: DecodedEntry) => Buffer.from(decodeFrame(readLogsFrame(e)).decoded.line).toString();
    expect(line(entry('stdout', 1n, Buffer.from('a'), false, false))).toBe('a\n');
    expect(line(entry('stdout', 1n, Buffer.from('a'), true, true))).toBe('a\n');
    expect(line(entry('stdout', 1n, Buffer.from('a'), true, false))).toBe('a');
    expect(line(entry('stderr', 1n, new Uint8Array(0), false, false))).toBe('\n');
    expect(line(entry('stderr', 1n, new Uint8Array(0), true, false))).toBe('');
  });

  it('matches the frame captured from dockerd 20.10 for stdout "line1" (protocol.md §4.2)', () => {
    // The captured frame carried "line1" without "\n": a partial chunk, to compare bytes as sent.
    const e = entry('stdout', 1_795_452_233_042_059_423n, Buffer.from('line1'), true, false);
    expect(readLogsFrame(e).toString('hex')).toBe('000000190a067374646f7574109fc19d8db1c9aef5181a056c696e6531');
  });

  it('throws for sources other than stdout and stderr instead of framing them', () => {
    for (const source of ['', 'other', 'Stdout', 'stdoüt', 'stdout ']) {
      expect(() => readLogsFrame(entry(source, 1n, Buffer.from('x'), false, false)), JSON.stringify(source)).toThrow(/not readable/);
    }
  });

  it('writeReadLogsFrame writes the same frames back to back into one buffer, each ending where the next starts', () => {
    const r = rng(31337);
    const entries = Array.from({ length: 2_000 }, () => randomEntry(r));
    const expected = Buffer.concat(entries.map(expectedFrame));
    const out = Buffer.alloc(expected.length + 16, 0xee);
    let at = 0;
    for (const e of entries) {
      const end = writeReadLogsFrame(out, at, e);
      expect(end - at).toBe(readLogsFrameLength(e));
      at = end;
    }
    expect(at).toBe(expected.length);
    expect(out.subarray(0, at).equals(expected)).toBe(true);
    // Nothing written past the last frame.
    expect(out.subarray(at).every((b) => b === 0xee)).toBe(true);
  });

  it('writes nothing and returns -1 when the buffer is one byte short of the frame', () => {
    const r = rng(8);
    for (let i = 0; i < 200; i++) {
      const e = randomEntry(r);
      const length = readLogsFrameLength(e);
      const out = Buffer.alloc(length + 9, 0xee);
      expect(writeReadLogsFrame(out.subarray(0, length - 1 + 5), 5, e), `entry ${i}`).toBe(-1);
      expect(out.every((b) => b === 0xee), `entry ${i}`).toBe(true);
      expect(writeReadLogsFrame(out, 5, e)).toBe(5 + length);
    }
  });

  it('a frame is never longer than the store record of its entry (what lets a reader size its buffer by the batch)', () => {
    const r = rng(4242);
    let tightest = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 20_000; i++) {
      const e = randomEntry(r);
      // The entry as dockerd sends it and the store keeps it: every field, partial metadata included.
      const t = e.timeNano;
      const stored = LogEntry.encode({
        source: e.source,
        timeNano: { low: t.low | 0, high: t.high | 0, unsigned: false } as unknown as number,
        line: e.line,
        partial: e.partial,
        ...(e.partial ? { partialLogMetadata: { id: e.partialId, ordinal: e.partialOrdinal, last: e.partialLast } } : {}),
      }).finish();
      const record = stored.length + RECORD_OVERHEAD;
      expect(readLogsFrameLength(e), `entry ${i}`).toBeLessThanOrEqual(record);
      tightest = Math.min(tightest, record - readLogsFrameLength(e));
    }
    // An empty whole line at time 0 is the tightest case: source only in the record, `\n` added in the frame.
    const empty = entry('stdout', 0n, new Uint8Array(0), false, false);
    const storedEmpty = LogEntry.encode({ source: 'stdout' }).finish();
    expect(storedEmpty.length + RECORD_OVERHEAD - readLogsFrameLength(empty)).toBe(1);
    expect(tightest).toBeGreaterThanOrEqual(1);
  });
});
