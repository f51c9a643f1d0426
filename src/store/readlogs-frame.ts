/**
 * Turns a stored LogEntry into the frame dockerd's ReadLogs consumer expects (protocol.md §2.5):
 * only `source`, `time_nano` and `line`, with `\n` appended to complete lines, because dockerd
 * writes `line` verbatim and adds nothing.
 */
import { encodeEntry, frame, type DecodedEntry } from '../entry.js';

const NEWLINE = 0x0a;

/** dockerd silently drops any other source, so the store does not send them. */
export function isReadableSource(source: string): boolean {
  return source === 'stdout' || source === 'stderr';
}

/** A non-final chunk of a partial group continues on the next chunk: no `\n` after it. */
export function endsLine(entry: DecodedEntry): boolean {
  return !entry.partial || entry.partialLast;
}

export function readLogsFrame(entry: DecodedEntry): Buffer {
  let line = entry.line;
  if (endsLine(entry)) {
    const withNewline = Buffer.allocUnsafe(line.length + 1);
    withNewline.set(line, 0);
    withNewline[line.length] = NEWLINE;
    line = withNewline;
  }
  return frame(encodeEntry(entry.source, entry.timeNano, line));
}
