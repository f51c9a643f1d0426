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
import { rfc3339NanoBytes } from '../../src/time.js';

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
  private readonly containerParts = new WeakMap<ContainerMeta, Buffer>();
  private lastContainer: ContainerMeta | undefined;
  private lastPart: Buffer = Buffer.alloc(0);

  /** Writes one record as a JSON line, newline included. */
  write(record: LogRecord, out: EntryWriter): void {
    out.bytes(TIME_OPEN);
    out.bytes(rfc3339NanoBytes(record.timeNano));
    const source = SOURCE[record.source];
    if (source !== undefined) out.bytes(source);
    else out.text(`","source":${JSON.stringify(record.source)},`);
    out.bytes(this.containerPart(record.container));
    if (record.truncated) out.bytes(TRUNCATED);
    out.bytes(MESSAGE_OPEN);
    writeJsonString(record.line, out);
    out.bytes(LINE_CLOSE);
  }

  /** One record as a JSON line (newline included), as text: for tests and tools. */
  line(record: LogRecord): string {
    return collectText((out) => this.write(record, out));
  }

  private containerPart(container: ContainerMeta): Buffer {
    if (container === this.lastContainer) return this.lastPart;
    let part = this.containerParts.get(container);
    if (part === undefined) {
      part = Buffer.from(stringifyContainer(container));
      this.containerParts.set(container, part);
    }
    this.lastContainer = container;
    this.lastPart = part;
    return part;
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
