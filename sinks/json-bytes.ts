/**
 * JSON string values written as bytes where that is exact: most log lines are printable ASCII, and
 * then their bytes are their own JSON string body, so they are copied instead of being decoded to a
 * string, stringified and encoded back to UTF-8.
 */
import type { EntryWriter } from './encoded-batch.js';
import { isPlainJsonText } from './plain-bytes.js';

const QUOTE = Buffer.from('"');

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

const HEX = '0123456789abcdef';

/**
 * The body (no quotes) of `text` as a JSON string the way Docker's json-file writer escapes it: `\n`
 * `\r` `\"` `\\` short, other control characters and `<` `>` `&` as `\u00xx`, U+2028/U+2029 as
 * `\u2028`/`\u2029`, everything else as it is.
 */
export function dockerJsonStringBody(text: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    let escaped: string;
    if (c === 0x0a) escaped = '\\n';
    else if (c === 0x0d) escaped = '\\r';
    else if (c === 0x22) escaped = '\\"';
    else if (c === 0x5c) escaped = '\\\\';
    else if (c < 0x20 || c === 0x3c || c === 0x3e || c === 0x26) escaped = `\\u00${HEX[c >> 4] as string}${HEX[c & 0xf] as string}`;
    else if (c === 0x2028 || c === 0x2029) escaped = `\\u${c.toString(16)}`;
    else continue;
    out += text.slice(from, i) + escaped;
    from = i + 1;
  }
  return out + text.slice(from);
}
