/**
 * Nanosecond timestamps. dockerd stamps entries with int64 nanoseconds since the epoch (~1.7e18),
 * beyond 2^53, so a JS number cannot hold them. On the hot path a timestamp stays as the two
 * uint32 halves protobufjs decodes (`Int64Parts`); bigint is used where exact comparison matters.
 */

/** The two 32-bit halves of a non-negative int64, as protobufjs' Long carries them. */
export interface Int64Parts {
  readonly low: number;
  readonly high: number;
}

const TWO_32 = 4294967296;
const NS_PER_S = 1_000_000_000;
/** (2^32 mod 1e9) and (2^48 mod 1e9): let us reduce high*2^32 mod 1e9 without leaving exact doubles. */
const TWO_32_MOD_1E9 = TWO_32 % NS_PER_S; // 294967296
const TWO_48_MOD_1E9 = Number((1n << 48n) % 1_000_000_000n);

export function partsToBigInt(t: Int64Parts): bigint {
  return (BigInt(t.high >>> 0) << 32n) | BigInt(t.low >>> 0);
}

export function bigIntToParts(ns: bigint): Int64Parts {
  return { low: Number(ns & 0xffffffffn) | 0, high: Number((ns >> 32n) & 0xffffffffn) | 0 };
}

/** Splits an int64 into whole seconds and the nanoseconds within that second, exactly, with no bigint. */
export function splitSeconds(t: Int64Parts): { seconds: number; nanos: number } {
  const high = t.high >>> 0;
  const low = t.low >>> 0;
  const hi16 = Math.floor(high / 65536);
  const lo16 = high % 65536;
  const nanos = ((hi16 * TWO_48_MOD_1E9) % NS_PER_S + (lo16 * TWO_32_MOD_1E9) % NS_PER_S + low) % NS_PER_S;
  // (exact - nanos) is a multiple of 1e9; the double approximation is off by < 1e9/2, so rounding is exact.
  const seconds = Math.round((high * TWO_32 + low - nanos) / NS_PER_S);
  return { seconds, nanos };
}

/** Bytes of an RFC 3339 time with nine fractional digits: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`. */
export const RFC3339_NANO_BYTES = 30;

/** '000'…'999' as ASCII digits, three bytes each: nine fractional digits in three lookups. */
const DIGITS3 = (() => {
  const t = new Uint8Array(3000);
  for (let v = 0; v < 1000; v++) {
    t[3 * v] = 0x30 + Math.floor(v / 100);
    t[3 * v + 1] = 0x30 + (Math.floor(v / 10) % 10);
    t[3 * v + 2] = 0x30 + (v % 10);
  }
  return t;
})();

/**
 * RFC 3339 times with nine fractional digits, UTC (`2026-11-24T18:29:56.123456789Z`, 30 bytes), as
 * Go's RFC3339Nano pads them, written into one place of a buffer an encoder reuses: the date part is
 * rewritten only when the second changes, the digits every time. Consecutive log lines are close in
 * time: a time in the same second as the last one, and not before it, takes its nanoseconds from the
 * difference of the low words instead of a full split.
 */
export class Rfc3339NanoSlot {
  private second = Number.NaN;
  /** The last time set (unsigned halves) and its nanoseconds within its second. */
  private lastHigh = -1;
  private lastLow = 0;
  private lastNanos = 0;

  constructor(readonly buf: Buffer, private readonly at: number) {
    buf.write('0000-00-00T00:00:00.000000000Z', at, 'latin1');
  }

  set(t: Int64Parts): void {
    const high = t.high >>> 0;
    const low = t.low >>> 0;
    const at = this.at;
    const ahead = low - this.lastLow;
    let nanos: number;
    if (high === this.lastHigh && ahead >= 0 && this.lastNanos + ahead < NS_PER_S) {
      nanos = this.lastNanos + ahead;
    } else {
      const split = splitSeconds(t);
      nanos = split.nanos;
      if (split.seconds !== this.second) {
        this.second = split.seconds;
        this.buf.write(new Date(split.seconds * 1000).toISOString().slice(0, 19), at, 'latin1');
      }
    }
    this.lastHigh = high;
    this.lastLow = low;
    this.lastNanos = nanos;
    const millis = Math.floor(nanos / 1_000_000);
    const belowMillis = nanos - millis * 1_000_000;
    const micros = Math.floor(belowMillis / 1000);
    put3(this.buf, at + 20, millis);
    put3(this.buf, at + 23, micros);
    put3(this.buf, at + 26, belowMillis - micros * 1000);
    // Also every time: an encoder may have written over them after the last call (json-file trims).
    this.buf[at + 19] = 0x2e; // .
    this.buf[at + 29] = 0x5a; // Z
  }
}

function put3(buf: Buffer, at: number, v: number): void {
  buf[at] = DIGITS3[3 * v] as number;
  buf[at + 1] = DIGITS3[3 * v + 1] as number;
  buf[at + 2] = DIGITS3[3 * v + 2] as number;
}

const shared = new Rfc3339NanoSlot(Buffer.alloc(RFC3339_NANO_BYTES), 0);

/**
 * RFC 3339 with nine fractional digits, UTC, as bytes, for encoders writing into a buffer: the
 * returned buffer is reused by the next call, so copy it before calling again.
 */
export function rfc3339NanoBytes(t: Int64Parts): Buffer {
  shared.set(t);
  return shared.buf;
}

/** rfc3339NanoBytes as text. */
export function formatRfc3339Nano(t: Int64Parts): string {
  return rfc3339NanoBytes(t).toString('latin1');
}

export function formatRfc3339NanoBigInt(ns: bigint): string {
  return formatRfc3339Nano(bigIntToParts(ns));
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/**
 * Parses a Go RFC 3339 time (what dockerd sends for ReadLogs Since/Until) to nanoseconds since the
 * epoch. Go's zero time `0001-01-01T00:00:00Z` means "unset" and yields undefined.
 */
export function parseRfc3339Nano(text: string): bigint | undefined {
  const m = RFC3339.exec(text);
  if (!m) throw new Error(`not an RFC 3339 time: ${JSON.stringify(text)}`);
  const [, y, mo, d, h, mi, s, frac, , sign, oh, om] = m;
  if (y === '0001' && mo === '01' && d === '01' && h === '00' && mi === '00' && s === '00' && !frac) return undefined;
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  let ns = BigInt(ms) * 1_000_000n + BigInt((frac ?? '').padEnd(9, '0') || '0');
  if (sign) {
    const offsetMinutes = BigInt(Number(oh) * 60 + Number(om));
    ns += (sign === '+' ? -1n : 1n) * offsetMinutes * 60n * 1_000_000_000n;
  }
  return ns;
}
