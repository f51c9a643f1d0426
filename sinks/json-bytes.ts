/**
 * JSON string values written as bytes where that is exact: most log lines are printable ASCII, and
 * then their bytes are their own JSON string body, so they are copied instead of being decoded to a
 * string, stringified and encoded back to UTF-8.
 */
import type { EntryWriter } from './encoded-batch.js';

const QUOTE = Buffer.from('"');

/**
 * True when the bytes are printable ASCII without `"` or `\\`: then JSON.stringify of their text is
 * exactly them between quotes.
 */
export function isPlainJsonText(line: Uint8Array): boolean {
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as number;
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return false;
  }
  return true;
}

/**
 * `line` as a JSON string value, quotes included: the same bytes JSON.stringify(line.toString('utf8'))
 * gives (invalid UTF-8 becomes U+FFFD, as in that decoding).
 */
export function writeJsonString(line: Buffer, out: EntryWriter): void {
  if (isPlainJsonText(line)) {
    out.bytes(QUOTE);
    out.bytes(line);
    out.bytes(QUOTE);
  } else {
    out.text(JSON.stringify(line.toString('utf8')));
  }
}
