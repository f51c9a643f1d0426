/**
 * LogEntry decode/encode with protobufjs' generated static code (src/generated, from proto/entry.proto);
 * the FIFO reader decodes whole lines' entries by hand first (entry-fast-path.ts).
 */
import protobuf from 'protobufjs/minimal.js';
import { decodeWholeLine, EMPTY_LINE } from './entry-fast-path.js';
import { LogEntry } from './generated/entry.js';
import type { Int64Parts } from './time.js';

export type LogSource = 'stdout' | 'stderr';

/** One decoded FIFO entry. `line` is a view into the frame's bytes, not a copy. */
export interface DecodedEntry {
  source: string;
  timeNano: Int64Parts;
  line: Uint8Array;
  partial: boolean;
  partialId: string;
  partialOrdinal: number;
  partialLast: boolean;
}

const ZERO_TIME: Int64Parts = Object.freeze({ low: 0, high: 0 });

/** Decodes one LogEntry message. Throws on malformed protobuf; the caller counts and skips. */
export function decodeEntry(message: Uint8Array): DecodedEntry {
  return fromLogEntry(LogEntry.decode(protobuf.Reader.create(message)));
}

/** One reader for decodeEntryAt: decoding is synchronous, so it is never shared by two decodes at once. */
const AT_READER = protobuf.Reader.create(Buffer.alloc(0));
const NO_BYTES = Buffer.alloc(0);

/**
 * Decodes the LogEntry message at `buf[start, end)` without a view of it (the FIFO reader's hot
 * path: `line` is still a view into `buf`): a whole line's entry by hand (entry-fast-path.ts),
 * anything else with protobufjs. Throws on malformed protobuf, as decodeEntry.
 */
export function decodeEntryAt(buf: Buffer, start: number, end: number): DecodedEntry {
  return decodeWholeLine(buf, start, end) ?? decodeWithProtobufAt(buf, start, end);
}

/** decodeEntryAt with protobufjs' generated code: every message the fast path does not take. */
export function decodeWithProtobufAt(buf: Buffer, start: number, end: number): DecodedEntry {
  AT_READER.buf = buf;
  AT_READER.pos = start;
  AT_READER.len = end;
  try {
    return fromLogEntry(LogEntry.decode(AT_READER, end - start));
  } finally {
    AT_READER.buf = NO_BYTES; // keeps no chunk alive
  }
}

function fromLogEntry(e: LogEntry): DecodedEntry {
  const meta = e.partialLogMetadata;
  const t = e.timeNano;
  return {
    source: e.source,
    // Plain halves, not the Long: the same shape as the fast path's.
    timeNano: typeof t === 'number' ? { low: t >>> 0, high: Math.floor(t / 4294967296) } : t == null ? ZERO_TIME : { low: t.low, high: t.high },
    line: e.line !== undefined && e.line.length > 0 ? e.line : EMPTY_LINE,
    partial: e.partial === true,
    partialId: meta?.id ?? '',
    partialOrdinal: meta?.ordinal ?? 0,
    partialLast: meta?.last === true,
  };
}

/** Encodes the fields dockerd's ReadLogs consumer uses (source, time_nano, line). */
export function encodeEntry(source: string, timeNano: Int64Parts, line: Uint8Array): Uint8Array {
  const w = protobuf.Writer.create();
  if (source !== '') w.uint32(10).string(source);
  if (timeNano.low !== 0 || timeNano.high !== 0) w.uint32(16).int64(asLong(timeNano));
  if (line.length > 0) w.uint32(26).bytes(line);
  return w.finish();
}

/** protobufjs' writer reads only `low`/`high` of a Long (LongBits.from), which Int64Parts has. */
function asLong(t: Int64Parts): protobuf.Long {
  return { low: t.low | 0, high: t.high | 0, unsigned: false } as protobuf.Long;
}

/** `[uint32 BE length][message]`, the framing of the FIFO and of ReadLogs responses. */
export function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(4 + message.length);
  out.writeUInt32BE(message.length, 0);
  out.set(message, 4);
  return out;
}
