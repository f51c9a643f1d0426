/**
 * Whether a log line's bytes can be copied into a JSON string as they are: the scan every JSON
 * encoder runs over every byte of every line (for 200-byte lines it was most of the file sink's own
 * time). Four bytes at a time: a 32-bit word is tested for "some byte may need escaping" with a few
 * integer operations (the classic has-zero-byte / has-less-than tricks), and only a word that may
 * is looked at byte by byte. 110–120 instead of 190–210 ns for a 200-byte line (micro benchmark in BENCHMARKS.md).
 * Long lines (from 1 KiB) take native passes first: `isAscii` (SIMD) and `indexOf` (memchr) for the
 * bytes that need no word trick, and then a lighter word test for control characters and DEL only:
 * 0.6–0.7 instead of 1.1–1.25 ns per byte of a 16–40 KiB line; below 1 KiB the calls cost more than
 * they save.
 */
import { isAscii } from 'node:buffer';

const HIGHS = 0x80808080;

/** High bit of each byte of `word` that is zero, or of one after such a byte (exact for "any"). */
function zeroByte(word: number): number {
  return (word - 0x01010101) & ~word;
}

/**
 * High bits where a byte of `word` may be one JSON.stringify changes: below 0x20 (has-less-than), 0x7f
 * and above (0x7f + 1 or the high bit itself), `"`, `\\`. No false negatives; a false positive only
 * sends the line to the byte-by-byte check.
 */
function jsonMayHold(word: number): number {
  return ((word - 0x20202020) & ~word) | ((word + 0x01010101) | word) | zeroByte(word ^ 0x22222222) | zeroByte(word ^ 0x5c5c5c5c);
}

/** The same, and `<` `>` `&`. */
function dockerJsonMayHold(word: number): number {
  return jsonMayHold(word) | zeroByte(word ^ 0x3c3c3c3c) | zeroByte(word ^ 0x3e3e3e3e) | zeroByte(word ^ 0x26262626);
}

function tableOf(notPlain: (byte: number) => boolean): Uint8Array {
  const table = new Uint8Array(256);
  for (let byte = 0; byte < 256; byte++) table[byte] = notPlain(byte) ? 1 : 0;
  return table;
}

const isJsonSpecial = (b: number): boolean => b < 0x20 || b > 0x7e || b === 0x22 || b === 0x5c;
const JSON_SPECIAL = tableOf(isJsonSpecial);
const DOCKER_JSON_SPECIAL = tableOf((b) => isJsonSpecial(b) || b === 0x3c || b === 0x3e || b === 0x26);

/** Below this a line is scanned byte by byte: no word view is worth making. */
const WORD_SCAN_MIN_BYTES = 16;
/** From this length the native passes go first (nativeScanSays). */
const NATIVE_SCAN_MIN_BYTES = 1024;

/**
 * High bits where a byte of an ASCII `word` (no high bits: isAscii said so) is below 0x20 or is 0x7f.
 * Exact for "any" on ASCII bytes: no borrow or carry crosses into a neighbour.
 */
function controlMayHold(word: number): number {
  return ((word - 0x20202020) & ~word) | (word + 0x01010101);
}

/**
 * One Int32Array over the ArrayBuffer last scanned: lines are views into the FIFO chunk they were
 * read in (64 KiB), so one view serves a whole chunk. It keeps that buffer alive until a line of
 * another buffer is scanned.
 */
let wordsOf: ArrayBufferLike | undefined;
let words: Int32Array<ArrayBufferLike> = new Int32Array(0);

function wordsOver(buffer: ArrayBufferLike): Int32Array<ArrayBufferLike> {
  if (buffer !== wordsOf) {
    words = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
    wordsOf = buffer;
  }
  return words;
}

function bytesArePlain(bytes: Uint8Array, from: number, to: number, special: Uint8Array): boolean {
  let seen = 0;
  for (let i = from; i < to; i++) seen |= special[bytes[i] as number] as number;
  return seen === 0;
}

/**
 * A long line's scan: false when a native pass finds a byte above 0x7e or one of `avoid`, else the
 * word test for control characters and DEL over the ASCII bytes left.
 */
function longLineIsPlain(line: Uint8Array, avoid: readonly number[], special: Uint8Array): boolean {
  const bytes = Buffer.isBuffer(line) ? line : Buffer.from(line.buffer, line.byteOffset, line.length);
  if (!isAscii(bytes)) return false;
  for (const byte of avoid) if (bytes.indexOf(byte) !== -1) return false;
  const length = line.length;
  const view = wordsOver(line.buffer);
  const start = line.byteOffset;
  const first = (start + 3) >>> 2;
  const end = (start + length) >>> 2;
  let seen = 0;
  for (let w = first; w < end; w++) seen |= controlMayHold(view[w] as number);
  if ((seen & HIGHS) !== 0) return false;
  return bytesArePlain(line, 0, (first << 2) - start, special) && bytesArePlain(line, (end << 2) - start, length, special);
}

const JSON_AVOID = [0x22, 0x5c];
const DOCKER_JSON_AVOID = [0x22, 0x5c, 0x3c, 0x3e, 0x26];

// The two scans below are one loop written out twice, on purpose: with the word test as a parameter
// V8 stopped inlining it once both scans were in use (the Docker scan took 280 ns), and with the
// head/tail check in a helper function the JSON scan took 140–150 instead of 110–120 ns.

/** True when the bytes are printable ASCII without `"` or `\\`: then JSON.stringify of their text is exactly them between quotes. */
export function isPlainJsonText(line: Uint8Array): boolean {
  const length = line.length;
  if (length < WORD_SCAN_MIN_BYTES) return bytesArePlain(line, 0, length, JSON_SPECIAL);
  if (length >= NATIVE_SCAN_MIN_BYTES) return longLineIsPlain(line, JSON_AVOID, JSON_SPECIAL);
  const view = wordsOver(line.buffer);
  const start = line.byteOffset;
  const first = (start + 3) >>> 2;
  const end = (start + length) >>> 2;
  let seen = 0;
  for (let w = first; w < end; w++) seen |= jsonMayHold(view[w] as number);
  if ((seen & HIGHS) !== 0) return bytesArePlain(line, 0, length, JSON_SPECIAL);
  return bytesArePlain(line, 0, (first << 2) - start, JSON_SPECIAL) && bytesArePlain(line, (end << 2) - start, length, JSON_SPECIAL);
}

/**
 * True when the bytes are printable ASCII that Docker's json-file writer (ffjson) copies as they are:
 * none of `"` `\\` and, since it escapes them for browsers, `<` `>` `&`.
 */
export function isPlainDockerJsonText(line: Uint8Array): boolean {
  const length = line.length;
  if (length < WORD_SCAN_MIN_BYTES) return bytesArePlain(line, 0, length, DOCKER_JSON_SPECIAL);
  if (length >= NATIVE_SCAN_MIN_BYTES) return longLineIsPlain(line, DOCKER_JSON_AVOID, DOCKER_JSON_SPECIAL);
  const view = wordsOver(line.buffer);
  const start = line.byteOffset;
  const first = (start + 3) >>> 2;
  const end = (start + length) >>> 2;
  let seen = 0;
  for (let w = first; w < end; w++) seen |= dockerJsonMayHold(view[w] as number);
  if ((seen & HIGHS) !== 0) return bytesArePlain(line, 0, length, DOCKER_JSON_SPECIAL);
  return bytesArePlain(line, 0, (first << 2) - start, DOCKER_JSON_SPECIAL) && bytesArePlain(line, (end << 2) - start, length, DOCKER_JSON_SPECIAL);
}
