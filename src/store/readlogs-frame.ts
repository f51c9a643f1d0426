/**
 * Turns a stored LogEntry into the frame dockerd's ReadLogs consumer expects (protocol.md §2.5):
 * only `source`, `time_nano` and `line`, with `\n` appended to complete lines, because dockerd
 * writes `line` verbatim and adds nothing.
 *
 * The frame is written straight into one buffer with one copy of the line: byte for byte what
 * `frame(encodeEntry(source, timeNano, line + '\n'))` (protobufjs) gives, without the copy to add the
 * newline, the Writer's operation list and the copy into the frame (test/readlogs-frame.test.ts).
 */
import type { DecodedEntry } from '../entry.js';
import { varint32Length, varint64Length, writeVarint32, writeVarint64 } from './protobuf-wire.js';

const NEWLINE = 0x0a;
/** Field tags: (field number << 3) | wire type. */
const TAG_TIME_NANO = (2 << 3) | 0; // varint
const TAG_LINE = (3 << 3) | 2; // length-delimited
/** The whole `source` field (tag 1, length 6, UTF-8 name) for each source dockerd reads back. */
const SOURCE_STDOUT = Uint8Array.of((1 << 3) | 2, 6, ...Buffer.from('stdout'));
const SOURCE_STDERR = Uint8Array.of((1 << 3) | 2, 6, ...Buffer.from('stderr'));
const SOURCE_FIELD_LENGTH = 8;
/** Beyond this the frame's uint32 length prefix could not hold the message. */
const MAX_LINE_FIELD_LENGTH = 0xffffffff - SOURCE_FIELD_LENGTH - 11 - 6;

/** dockerd silently drops any other source, so the store does not send them. */
export function isReadableSource(source: string): boolean {
  return source === 'stdout' || source === 'stderr';
}

/** A non-final chunk of a partial group continues on the next chunk: no `\n` after it. */
export function endsLine(entry: DecodedEntry): boolean {
  return !entry.partial || entry.partialLast;
}

/** `[uint32 BE length][LogEntry {source, time_nano, line (+ '\n')}]` for a stdout or stderr entry. */
export function readLogsFrame(entry: DecodedEntry): Buffer {
  const sourceField = sourceFieldOf(entry.source);
  const line = entry.line;
  const newline = endsLine(entry);
  const lineLength = newline ? line.length + 1 : line.length;
  if (lineLength > MAX_LINE_FIELD_LENGTH) throw new RangeError(`ReadLogs line of ${lineLength} bytes does not fit a frame`);
  const time = entry.timeNano;
  // proto3 leaves zero/empty fields out, as protobufjs' encodeEntry does.
  const hasTime = time.low !== 0 || time.high !== 0;
  const messageLength = SOURCE_FIELD_LENGTH
    + (hasTime ? 1 + varint64Length(time) : 0)
    + (lineLength > 0 ? 1 + varint32Length(lineLength) + lineLength : 0);

  const out = Buffer.allocUnsafe(4 + messageLength);
  out.writeUInt32BE(messageLength, 0);
  out.set(sourceField, 4);
  let at = 4 + SOURCE_FIELD_LENGTH;
  if (hasTime) {
    out[at++] = TAG_TIME_NANO;
    at = writeVarint64(out, at, time);
  }
  if (lineLength > 0) {
    out[at++] = TAG_LINE;
    at = writeVarint32(out, at, lineLength);
    out.set(line, at);
    at += line.length;
    if (newline) out[at++] = NEWLINE;
  }
  if (at !== out.length) throw new Error(`ReadLogs frame: wrote ${at} of ${out.length} bytes`);
  return out;
}

function sourceFieldOf(source: string): Uint8Array {
  if (source === 'stdout') return SOURCE_STDOUT;
  if (source === 'stderr') return SOURCE_STDERR;
  // The caller filters with isReadableSource; anything else reaching here is a bug, not data to send.
  throw new Error(`readLogsFrame: source ${JSON.stringify(source)} is not readable (only stdout and stderr are)`);
}
