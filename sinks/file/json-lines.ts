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
import type { ContainerMeta, EncodedBatch, LogRecord } from '../sink.js';
import { formatRfc3339Nano } from '../../src/time.js';

/** Where a rotation must happen: before entry `record`, which starts at byte `offset` of batch.bytes. */
export interface RotationCut {
  readonly record: number;
  readonly offset: number;
}

export class JsonLinesEncoder {
  private readonly containerParts = new WeakMap<ContainerMeta, string>();
  private lastContainer: ContainerMeta | undefined;
  private lastPart = '';

  /** One record as a JSON line, newline included. */
  line(record: LogRecord): string {
    return `{"time":"${formatRfc3339Nano(record.timeNano)}","source":"${record.source}",${this.containerPart(record.container)}`
      + `${record.truncated ? '"truncated":true,' : ''}"message":${JSON.stringify(record.line.toString('utf8'))}}\n`;
  }

  private containerPart(container: ContainerMeta): string {
    if (container === this.lastContainer) return this.lastPart;
    let part = this.containerParts.get(container);
    if (part === undefined) {
      part = stringifyContainer(container);
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
