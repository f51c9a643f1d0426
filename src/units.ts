/**
 * Parsers for option values, with Docker's semantics so a value means what it means for built-in
 * drivers: sizes as go-units FromHumanSize (decimal: 1k = 1000, "10m", "10MB", "1.5g"), durations as
 * Go's time.ParseDuration ("500ms", "5s", "1m30s"), booleans as strconv.ParseBool. The npm parsers
 * differ on exactly these points (`bytes` is binary and needs "kb"; `ms` reads a bare "5" as 5 ms),
 * which is why these few lines are ours.
 */

const SIZE = /^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$/;
const DECIMAL: Record<string, number> = { k: 1e3, m: 1e6, g: 1e9, t: 1e12, p: 1e15 };

export function parseSize(text: string): number {
  const m = SIZE.exec(text.trim());
  if (!m) throw new Error('is not a size (use e.g. 10m, 512k, 1g)');
  const unit = m[2]?.toLowerCase();
  return Math.floor(Number(m[1]) * (unit ? (DECIMAL[unit] ?? 1) : 1));
}

const DURATION_PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };

/** Go duration syntax to milliseconds. "0" alone is allowed, as in Go. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (s === '0') return 0;
  if (s === '') throw new Error('is not a duration (use e.g. 500ms, 5s, 1m30s)');
  let total = 0;
  DURATION_PART.lastIndex = 0;
  let pos = 0;
  while (pos < s.length) {
    DURATION_PART.lastIndex = pos;
    const m = DURATION_PART.exec(s);
    if (!m || m.index !== pos) throw new Error('is not a duration (use e.g. 500ms, 5s, 1m30s)');
    total += Number(m[1]) * (UNIT_MS[m[2] as string] ?? 0);
    pos = DURATION_PART.lastIndex;
  }
  return total;
}

const TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

export function parseBool(text: string): boolean {
  if (TRUE.has(text)) return true;
  if (FALSE.has(text)) return false;
  throw new Error('is not a boolean (use true or false)');
}

export function parseInteger(text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^-?\d+$/.test(text.trim())) throw new Error(`is not a whole number (use ${min} to ${max})`);
  const n = Number(text);
  if (n < min || n > max) throw new Error(`is out of range (use ${min} to ${max})`);
  return n;
}
