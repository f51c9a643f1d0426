/**
 * Turns a stored LogEntry into the frame dockerd's ReadLogs consumer expects (protocol.md §2.5):
 * only `source`, `time_nano` and `line`, with `\n` appended to complete lines, because dockerd
 * writes `line` verbatim and adds nothing.
 *
 * The frame is written straight into the reader's buffer with one copy of the line: byte for byte what
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

/** The bytes the frame of `entry` takes, length prefix included. */
export function readLogsFrameLength(entry: DecodedEntry): number {
  return 4 + messageLength(entry, lineFieldLength(entry));
}

/**
 * Writes `[uint32 BE length][LogEntry {source, time_nano, line (+ '\n')}]` for a stdout or stderr
 * entry into `out` at `at` and returns where it ends; -1, with nothing written, when `out` has fewer
 * than readLogsFrameLength(entry) bytes from `at`. A reader writes a batch's frames into one buffer,
 * with no buffer per frame and no concatenation, and the length is worked out once per frame.
 *
 * A frame is never longer than the store record it comes from: the record is the entry plus 8 bytes
 * of framing, the frame the entry's source, time and line fields plus 4; the newline and a longer
 * length varint add at most 2 bytes to the line field, and 3 where the entry had no line at all.
 */
export function writeReadLogsFrame(out: Buffer, at: number, entry: DecodedEntry): number {
  const sourceField = sourceFieldOf(entry.source);
  const line = entry.line;
  const lineLength = lineFieldLength(entry);
  const length = messageLength(entry, lineLength);
  if (at + 4 + length > out.length) return -1;
  const time = entry.timeNano;
  out.writeUInt32BE(length, at);
  out.set(sourceField, at + 4);
  at += 4 + SOURCE_FIELD_LENGTH;
  if (time.low !== 0 || time.high !== 0) {
    out[at++] = TAG_TIME_NANO;
    at = writeVarint64(out, at, time);
  }
  if (lineLength > 0) {
    out[at++] = TAG_LINE;
    at = writeVarint32(out, at, lineLength);
    out.set(line, at);
    at += line.length;
    if (lineLength > line.length) out[at++] = NEWLINE;
  }
  return at;
}

/** The line field's length: the line and, where it ends a line, `\n`. */
function lineFieldLength(entry: DecodedEntry): number {
  const lineLength = endsLine(entry) ? entry.line.length + 1 : entry.line.length;
  if (lineLength > MAX_LINE_FIELD_LENGTH) throw new RangeError(`ReadLogs line of ${lineLength} bytes does not fit a frame`);
  return lineLength;
}

function messageLength(entry: DecodedEntry, lineLength: number): number {
  const time = entry.timeNano;
  // proto3 leaves zero/empty fields out, as protobufjs' encodeEntry does.
  const hasTime = time.low !== 0 || time.high !== 0;
  return SOURCE_FIELD_LENGTH
    + (hasTime ? 1 + varint64Length(time) : 0)
    + (lineLength > 0 ? 1 + varint32Length(lineLength) + lineLength : 0);
}

function sourceFieldOf(source: string): Uint8Array {
  if (source === 'stdout') return SOURCE_STDOUT;
  if (source === 'stderr') return SOURCE_STDERR;
  // The caller filters with isReadableSource; anything else reaching here is a bug, not data to send.
  throw new Error(`ReadLogs frame: source ${JSON.stringify(source)} is not readable (only stdout and stderr are)`);
}
