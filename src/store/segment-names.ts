/**
 * File names inside a container's store directory, as Docker's `local` driver names them:
 * `container.log` (current), `container.log.1` … (rotated, 1 = newest), `container.log.N.gz` (compressed).
 * Compression writes to a hidden temporary name and renames, so readers never see a half-written .gz.
 */

export const CURRENT_FILE = 'container.log';

/** `index` 0 is the current file; `index` k ≥ 1 is the k-th newest rotated file. */
export function segmentFileName(index: number, compressed: boolean): string {
  if (index === 0) return CURRENT_FILE;
  return compressed ? `${CURRENT_FILE}.${index}.gz` : `${CURRENT_FILE}.${index}`;
}

/** Named by the segment's sequence number, not its index, so a rotation during compression does not rename it. */
export function compressionTempName(seq: number): string {
  return `.${CURRENT_FILE}.seq${seq}.gz.tmp`;
}

export function isTempFile(name: string): boolean {
  return name.endsWith('.tmp');
}

const SEGMENT_NAME = /^container\.log(?:\.([1-9]\d{0,5})(\.gz)?)?$/;

export interface ParsedSegmentName {
  index: number;
  compressed: boolean;
}

export function parseSegmentFileName(name: string): ParsedSegmentName | undefined {
  const m = SEGMENT_NAME.exec(name);
  if (!m) return undefined;
  return { index: m[1] === undefined ? 0 : Number(m[1]), compressed: m[2] !== undefined };
}

/** Container ids become directory names: allow only what cannot escape the root. */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function isSafeContainerId(id: string): boolean {
  return CONTAINER_ID.test(id) && !id.includes('..');
}
