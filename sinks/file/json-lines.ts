/**
 * The file sink's wire form and where its rotations fall.
 *
 * Records → JSON lines, one object per line:
 *   {"time":"<RFC 3339, 9 digits, UTC>","source":"stdout","container_id":…,"container_name":…,
 *    "image_name":…,"image_id":…,"tag":…,"attrs":{…},"truncated":true,"message":"…"}
 * `attrs` only when non-empty, `truncated` only when true. The container part is stringified once per
 * ContainerMeta (pino's trick: no JSON round trip of the whole record per line). Line bytes that are
 * not valid UTF-8 are decoded with U+FFFD replacement characters: JSON text must be Unicode.
 *
 * The core gathers the lines into an EncodedBatch (one entry per line); planRotations() says where in
 * that batch the file must be rotated.
 */
import { collectText, type ContainerMeta, type EncodedBatch, type EntryWriter, type LogRecord } from '../sink.js';
import { writeJsonString } from '../json-bytes.js';
import { isPlainJsonText } from '../plain-bytes.js';
import { RFC3339_NANO_BYTES, Rfc3339NanoSlot } from '../../src/time.js';

/** Where a rotation must happen: before entry `record`, which starts at byte `offset` of batch.bytes. */
export interface RotationCut {
  readonly record: number;
  readonly offset: number;
}

const TIME_OPEN = Buffer.from('{"time":"');
const SOURCE: Readonly<Record<string, Buffer>> = {
  stdout: Buffer.from('","source":"stdout",'),
  stderr: Buffer.from('","source":"stderr",'),
};
const TRUNCATED = Buffer.from('"truncated":true,');
const MESSAGE_OPEN = Buffer.from('"message":');
const LINE_CLOSE = Buffer.from('}\n');
/** `"message":"`: what precedes a line copied as it is. */
const MESSAGE_STRING_OPEN = Buffer.from('"message":"');
const PLAIN_CLOSE = Buffer.from('"}\n');

/** A container's pre-encoded part, alone and with the source before it and `"message":"` after it. */
interface ContainerParts {
  readonly container: Buffer;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
}

/** Turns a record into the bytes of its line in the file, newline included. */
export interface LineEncoder {
  write(record: LogRecord, out: EntryWriter): void;
}

/**
 * Writes bytes, not strings, where it can: the constant parts are pre-encoded (the container part once
 * per ContainerMeta), and a message that is plain printable ASCII (most log lines) is copied from the
 * record's bytes; any other message takes JSON.stringify of its UTF-8 text. The output is the same
 * either way.
 */
export class JsonLinesEncoder implements LineEncoder {
  private readonly containerParts = new WeakMap<ContainerMeta, ContainerParts>();
  private lastContainer: ContainerMeta | undefined;
  private lastParts: ContainerParts | undefined;
  /** `{"time":"` and the 30 bytes of the time, rewritten per line. */
  private readonly time = new Rfc3339NanoSlot(Buffer.concat([TIME_OPEN, Buffer.alloc(RFC3339_NANO_BYTES)]), TIME_OPEN.length);

  /** Writes one record as a JSON line, newline included. */
  write(record: LogRecord, out: EntryWriter): void {
    this.time.set(record.timeNano);
    out.bytes(this.time.buf);
    const parts = this.partsOf(record.container);
    const tail = record.truncated ? undefined : record.source === 'stdout' ? parts.stdout : record.source === 'stderr' ? parts.stderr : undefined;
    if (tail !== undefined && isPlainJsonText(record.line)) {
      // The common case in four copies: head, `","source":…,<container>"message":"`, the line, `"}\n`.
      out.bytes(tail);
      out.bytes(record.line);
      out.bytes(PLAIN_CLOSE);
      return;
    }
    const source = SOURCE[record.source];
    if (source !== undefined) out.bytes(source);
    else out.text(`","source":${JSON.stringify(record.source)},`);
    out.bytes(parts.container);
    if (record.truncated) out.bytes(TRUNCATED);
    out.bytes(MESSAGE_OPEN);
    writeJsonString(record.line, out);
    out.bytes(LINE_CLOSE);
  }

  /** One record as a JSON line (newline included), as text: for tests and tools. */
  line(record: LogRecord): string {
    return collectText((out) => this.write(record, out));
  }

  private partsOf(container: ContainerMeta): ContainerParts {
    if (container === this.lastContainer && this.lastParts !== undefined) return this.lastParts;
    let parts = this.containerParts.get(container);
    if (parts === undefined) {
      const part = Buffer.from(stringifyContainer(container));
      parts = {
        container: part,
        stdout: Buffer.concat([SOURCE['stdout'] as Buffer, part, MESSAGE_STRING_OPEN]),
        stderr: Buffer.concat([SOURCE['stderr'] as Buffer, part, MESSAGE_STRING_OPEN]),
      };
      this.containerParts.set(container, parts);
    }
    this.lastContainer = container;
    this.lastParts = parts;
    return parts;
  }
}

/**
 * Plans rotations as Docker's local driver does: before each line, if the file (starting at
 * `fileSize` bytes) has reached `maxFileBytes`, rotate first. A file therefore exceeds the limit by
 * at most one line, and always holds at least one. Cuts come in batch order.
 */
export function planRotations(batch: EncodedBatch, fileSize: number, maxFileBytes: number): RotationCut[] {
  const cuts: RotationCut[] = [];
  let size = fileSize;
  for (let i = 0; i < batch.count; i++) {
    const start = batch.start(i);
    if (size >= maxFileBytes) {
      cuts.push({ record: i, offset: start });
      size = 0;
    }
    size += batch.end(i) - start;
  }
  return cuts;
}

/** The constant per-container fields, each followed by a comma. */
function stringifyContainer(c: ContainerMeta): string {
  const attrs = Object.keys(c.attrs).length > 0 ? `"attrs":${JSON.stringify(c.attrs)},` : '';
  return `"container_id":${JSON.stringify(c.id)},"container_name":${JSON.stringify(c.name)},"image_name":${JSON.stringify(c.imageName)},`
    + `"image_id":${JSON.stringify(c.imageId)},"tag":${JSON.stringify(c.tag)},${attrs}`;
}
