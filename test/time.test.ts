import { describe, expect, it } from 'vitest';
import { bigIntToParts, formatRfc3339Nano, parseRfc3339Nano, partsToBigInt, Rfc3339NanoSlot, rfc3339NanoBytes, splitSeconds } from '../src/time.js';

describe('nanosecond time', () => {
  it('splits int64 ns into seconds and nanos exactly, matching bigint arithmetic', () => {
    let seed = 42n;
    for (let i = 0; i < 20000; i++) {
      seed = (seed * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
      const ns = seed % 4_000_000_000_000_000_000n; // up to year ~2096
      const { seconds, nanos } = splitSeconds(bigIntToParts(ns));
      expect(BigInt(seconds) * 1_000_000_000n + BigInt(nanos)).toBe(ns);
      expect(nanos).toBeGreaterThanOrEqual(0);
      expect(nanos).toBeLessThan(1e9);
    }
  });

  it('formats RFC 3339 with nine fractional digits', () => {
    expect(formatRfc3339Nano(bigIntToParts(1795452233042059423n))).toBe('2026-11-23T16:43:53.042059423Z');
    expect(formatRfc3339Nano(bigIntToParts(1795452233000000001n))).toBe('2026-11-23T16:43:53.000000001Z');
    expect(formatRfc3339Nano(bigIntToParts(0n))).toBe('1970-01-01T00:00:00.000000000Z');
  });

  it('parses Go RFC 3339 times with offsets and fractions to exact ns; zero time is unset', () => {
    expect(parseRfc3339Nano('2026-11-23T16:43:53.042059423Z')).toBe(1795452233042059423n);
    expect(parseRfc3339Nano('2026-11-23T18:43:53.5+02:00')).toBe(1795452233500000000n);
    expect(parseRfc3339Nano('2020-01-02T03:04:05Z')).toBe(1577934245000000000n);
    expect(parseRfc3339Nano('0001-01-01T00:00:00Z')).toBeUndefined();
    expect(() => parseRfc3339Nano('yesterday')).toThrow(/RFC 3339/);
  });

  it('round-trips parts and bigint', () => {
    const ns = 0xfedcba9876543210n & 0x7fffffffffffffffn;
    expect(partsToBigInt(bigIntToParts(ns))).toBe(ns);
  });
});

describe('rfc3339NanoBytes', () => {
  it('gives formatRfc3339Nano text as bytes, for nanos with leading zeros and across second changes', () => {
    const samples = [0n, 1n, 999_999_999n, 1_000_000_000n, 1_795_452_233_042_059_423n, 1_795_452_233_000_000_007n, 1_795_452_234_100_000_000n];
    let x = 12345n;
    for (let i = 0; i < 2000; i++) {
      x = (x * 6364136223846793005n + 1442695040888963407n) % (1n << 62n);
      samples.push(1_600_000_000_000_000_000n + (x % 400_000_000_000_000_000n));
    }
    for (const ns of samples) {
      const t = bigIntToParts(ns);
      expect(rfc3339NanoBytes(t).toString('latin1')).toBe(formatRfc3339Nano(t));
    }
  });

  it('a slot formats a run of times as independent formatting does: small steps, second and low-word boundaries, backwards, jumps', () => {
    /** Independent of src/time.ts: bigint division and Date. */
    const reference = (ns: bigint): string =>
      `${new Date(Number(ns / 1_000_000_000n) * 1000).toISOString().slice(0, 19)}.${String(ns % 1_000_000_000n).padStart(9, '0')}Z`;
    const slot = new Rfc3339NanoSlot(Buffer.alloc(40), 5);
    const lowWrap = (1n << 32n) * 418_000_000n; // a multiple of 2^32 near 2026: the low word wraps to 0 here
    const times: bigint[] = [];
    for (const base of [1_795_452_233_999_999_000n, lowWrap - 3_000n, 1_600_000_000_000_000_000n]) {
      let ns = base;
      for (let i = 0; i < 300; i++) {
        ns += BigInt((i * 7919) % 1000); // steps of 0..999 ns, repeats included
        times.push(ns);
      }
      times.push(ns - 5n, ns - 1_000_000_000n, ns + 3_000_000_000n, ns + 999_999_999n, ns);
    }
    let crossedWrap = false;
    for (const ns of times) {
      slot.set(bigIntToParts(ns));
      expect(slot.buf.toString('latin1', 5, 35)).toBe(reference(ns));
      if (ns >= lowWrap && ns - 3_000n < lowWrap) crossedWrap = true;
    }
    expect(crossedWrap).toBe(true);
  });
});
