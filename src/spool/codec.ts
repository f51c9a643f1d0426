/**
 * The spool's on-disk format. A segment file is an 8-byte header followed by entries:
 *
 *   entry  = magic u32 | bodyLength u32 | crc32(body) u32 | body          (big-endian)
 *   body   = type u8 | payload
 *   META   (1): metaIndex u32 | ContainerMeta as JSON      — once per distinct container per segment
 *   RECORD (2): metaIndex u32 | source u8 | flags u8 | timeHigh u32 | timeLow u32 | seq u32 | line bytes
 *   SEAL   (3): records u32                                 — last entry of a finished segment
 *   ENCODED (4): the record as the sink encoded it (its wire form: a JSON line, a bulk action and
 *               document, ...) — what write-through and a stop store from memory, where records are
 *               kept as bytes. A spool belongs to one sink instance, so it is that sink's wire form;
 *               read back, it goes into a batch as it is, with no second encoding.
 *
 * Every field recordId() reads (container id, source, time_nano, seq) round-trips exactly; the line is
 * raw bytes (and an ENCODED entry carries the id the sink put in it). RECORD and ENCODED entries are
 * both "records" to the counts, the SEAL and the reader. A reader that meets a bad checksum scans
 * forward for the next entry that checks out, so one damaged record costs that record, not the segment.
 */
import type { ContainerMeta, LogRecord } from '../../sinks/sink.js';
import { crc32 } from './crc32.js';

export const SEGMENT_MAGIC = Buffer.from('SHIPSPL1', 'latin1');
export const SEGMENT_HEADER_BYTES = SEGMENT_MAGIC.length;
export const ENTRY_MAGIC = 0x5350_4c45; // "SPLE"
export const ENTRY_HEADER_BYTES = 12;
export const RECORD_FIXED_BYTES = 1 + 4 + 1 + 1 + 4 + 4 + 4;
/** Sanity bound on one entry; anything larger is a damaged length field. */
export const MAX_ENTRY_BODY = 1 << 30;

export const EntryType = { Meta: 1, Record: 2, Seal: 3, Encoded: 4 } as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export const SEAL_ENTRY_BYTES = ENTRY_HEADER_BYTES + 1 + 4;

const FLAG_TRUNCATED = 1;

/** Bytes a record takes in a segment. */
export function recordEntryBytes(r: LogRecord): number {
  return ENTRY_HEADER_BYTES + RECORD_FIXED_BYTES + r.line.length;
}

/** Writes the header of the entry whose body is `buf[at + 12, at + 12 + bodyLength)`, body already in place. */
function finishEntry(buf: Buffer, at: number, bodyLength: number): number {
  buf.writeUInt32BE(ENTRY_MAGIC, at);
  buf.writeUInt32BE(bodyLength, at + 4);
  const bodyStart = at + ENTRY_HEADER_BYTES;
  buf.writeUInt32BE(crc32(buf, bodyStart, bodyStart + bodyLength), at + 8);
  return ENTRY_HEADER_BYTES + bodyLength;
}

/** Encodes a RECORD entry at `buf[at]` (the caller ensured room). Returns the bytes written. */
export function encodeRecord(buf: Buffer, at: number, r: LogRecord, metaIndex: number): number {
  let p = at + ENTRY_HEADER_BYTES;
  buf[p++] = EntryType.Record;
  buf.writeUInt32BE(metaIndex, p); p += 4;
  buf[p++] = r.source === 'stderr' ? 1 : 0;
  buf[p++] = r.truncated ? FLAG_TRUNCATED : 0;
  buf.writeUInt32BE(r.timeNano.high >>> 0, p); p += 4;
  buf.writeUInt32BE(r.timeNano.low >>> 0, p); p += 4;
  buf.writeUInt32BE(r.seq >>> 0, p); p += 4;
  p += r.line.copy(buf, p);
  return finishEntry(buf, at, p - at - ENTRY_HEADER_BYTES);
}

/** Bytes an ENCODED entry of `length` wire bytes takes in a segment. */
export function encodedEntryBytes(length: number): number {
  return ENTRY_HEADER_BYTES + 1 + length;
}

/** Encodes an ENCODED entry holding `bytes` at `buf[at]` (the caller ensured room). Returns the bytes written. */
export function encodeEncoded(buf: Buffer, at: number, bytes: Uint8Array): number {
  const start = at + ENTRY_HEADER_BYTES;
  buf[start] = EntryType.Encoded;
  buf.set(bytes, start + 1);
  return finishEntry(buf, at, 1 + bytes.length);
}

export function metaEntryBytes(json: Buffer): number {
  return ENTRY_HEADER_BYTES + 1 + 4 + json.length;
}

export function encodeMeta(buf: Buffer, at: number, metaIndex: number, json: Buffer): number {
  let p = at + ENTRY_HEADER_BYTES;
  buf[p++] = EntryType.Meta;
  buf.writeUInt32BE(metaIndex, p); p += 4;
  p += json.copy(buf, p);
  return finishEntry(buf, at, p - at - ENTRY_HEADER_BYTES);
}

export function encodeSeal(records: number): Buffer {
  const buf = Buffer.allocUnsafe(SEAL_ENTRY_BYTES);
  buf[ENTRY_HEADER_BYTES] = EntryType.Seal;
  buf.writeUInt32BE(records >>> 0, ENTRY_HEADER_BYTES + 1);
  finishEntry(buf, 0, 5);
  return buf;
}

export type ParsedEntry =
  | { readonly type: typeof EntryType.Meta; readonly metaIndex: number; readonly meta: ContainerMeta | undefined }
  /** `bodyStart`/`bodyEnd`: where the body lies in the parsed buffer (decodeRecord() reads it). */
  | { readonly type: typeof EntryType.Record; readonly metaIndex: number; readonly bodyStart: number; readonly bodyEnd: number }
  | { readonly type: typeof EntryType.Seal; readonly records: number }
  /** `bytes()`: a view of the wire bytes in the parsed buffer. */
  | { readonly type: typeof EntryType.Encoded; readonly bytes: () => Buffer }
  | { readonly type: 'unknown' };

export type HeaderCheck =
  | { readonly ok: true; readonly bodyLength: number }
  | { readonly ok: false };

/** Checks magic and length of the entry header at `buf[at]` (12 bytes must be there). */
export function readHeader(buf: Buffer, at: number): HeaderCheck {
  if (buf.readUInt32BE(at) !== ENTRY_MAGIC) return { ok: false };
  const bodyLength = buf.readUInt32BE(at + 4);
  if (bodyLength < 1 || bodyLength > MAX_ENTRY_BODY) return { ok: false };
  return { ok: true, bodyLength };
}

/** True when the body at `buf[at + 12, at + 12 + bodyLength)` matches the header's checksum. */
export function checksumOk(buf: Buffer, at: number, bodyLength: number): boolean {
  const bodyStart = at + ENTRY_HEADER_BYTES;
  return crc32(buf, bodyStart, bodyStart + bodyLength) === buf.readUInt32BE(at + 8);
}

/** True for the entry types that hold a record (RECORD, ENCODED): what the counts and the SEAL count. */
export function holdsRecord(type: number | undefined): boolean {
  return type === EntryType.Record || type === EntryType.Encoded;
}

/**
 * Parses a checked entry body. A RECORD is returned undecoded (its line is copied out only when the
 * reader keeps it), so skipping acknowledged records at start-up costs no allocation.
 */
export function parseBody(buf: Buffer, at: number, bodyLength: number): ParsedEntry {
  const start = at + ENTRY_HEADER_BYTES;
  const end = start + bodyLength;
  const type = buf[start];
  if (type === EntryType.Record && bodyLength >= RECORD_FIXED_BYTES) {
    return { type: EntryType.Record, metaIndex: buf.readUInt32BE(start + 1), bodyStart: start, bodyEnd: end };
  }
  if (type === EntryType.Encoded) return { type: EntryType.Encoded, bytes: () => buf.subarray(start + 1, end) };
  if (type === EntryType.Meta && bodyLength >= 5) {
    return { type: EntryType.Meta, metaIndex: buf.readUInt32BE(start + 1), meta: parseMeta(buf.toString('utf8', start + 5, end)) };
  }
  if (type === EntryType.Seal && bodyLength === 5) return { type: EntryType.Seal, records: buf.readUInt32BE(start + 1) };
  return { type: 'unknown' };
}

/**
 * The record of a RECORD body at buf[bodyStart, bodyEnd) (from parseBody). Its line is a view of
 * `buf`, valid while `buf` is (the spool's reader lends it to its SpoolReader for one call). No
 * closure and no copy per record: a reader slower than its input decodes every record it spooled.
 */
export function decodeRecord(buf: Buffer, bodyStart: number, bodyEnd: number, container: ContainerMeta): LogRecord {
  const line = buf.subarray(bodyStart + RECORD_FIXED_BYTES, bodyEnd);
  return {
    container,
    source: buf[bodyStart + 5] === 1 ? 'stderr' : 'stdout',
    truncated: ((buf[bodyStart + 6] as number) & FLAG_TRUNCATED) !== 0,
    // Signed halves, as protobufjs' Long and bigIntToParts carry them; recordId reads them `>>> 0`.
    timeNano: { high: buf.readInt32BE(bodyStart + 7), low: buf.readInt32BE(bodyStart + 11) },
    seq: buf.readUInt32BE(bodyStart + 15),
    line,
  };
}

function isStringMap(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}

/** A JSON object from text, or undefined when the text is not JSON or not an object. */
export function parseJsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A ContainerMeta from JSON, or undefined when it does not have that shape. */
export function parseMeta(text: string): ContainerMeta | undefined {
  const o = parseJsonObject(text);
  if (o === undefined) return undefined;
  const { id, name, imageName, imageId, tag, attrs, labels, hostname } = o;
  if (typeof id !== 'string' || typeof name !== 'string' || typeof imageName !== 'string' || typeof imageId !== 'string'
    || typeof tag !== 'string' || typeof hostname !== 'string' || !isStringMap(attrs) || !isStringMap(labels)) return undefined;
  return { id, name, imageName, imageId, tag, attrs, labels, hostname };
}

/** ContainerMeta as stored: only its known fields, in a fixed order. */
export function metaJson(m: ContainerMeta): string {
  return JSON.stringify({ id: m.id, name: m.name, imageName: m.imageName, imageId: m.imageId, tag: m.tag, attrs: m.attrs, labels: m.labels, hostname: m.hostname });
}
