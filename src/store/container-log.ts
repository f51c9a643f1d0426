/**
 * One container's segments on disk and in memory: the current file, rotated and compressed files,
 * appends, rotation, and wake-ups for followers.
 *
 * Each segment has a sequence number that never changes (oldest lowest); its file name is derived
 * from its distance to the current segment: index = currentSeq - seq (0 = container.log, k = .k or
 * .k.gz). Readers hold positions as (seq, offset) and open files synchronously by the name valid at
 * that instant; an open fd keeps reading the same bytes after a rename or unlink.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { RotationOptions } from './store.js';
import { compressSegment, readGzipLastTime } from './gzip-segment.js';
import { inspectLastRecord, lastWholeRecordEnd } from './segment-inspect.js';
import {
  CURRENT_FILE,
  compressionTempName,
  isTempFile,
  parseSegmentFileName,
  segmentFileName,
} from './segment-names.js';

export interface SegmentState {
  readonly seq: number;
  /** Renamed to `.k.gz` (the plain file is gone). */
  compressed: boolean;
  /** Bytes on disk: the compressed size once compressed. */
  diskBytes: number;
  /** Time of the segment's last entry; undefined when empty or unknown. */
  lastTime: bigint | undefined;
  /** Deleted by rotation or the budget; a reader holding its fd may still finish it. */
  deleted: boolean;
}

/** A point in a container's log: a segment and a byte offset (uncompressed) within it. */
export interface Position {
  seq: number;
  offset: number;
}

export function comparePositions(a: Position, b: Position): number {
  return a.seq !== b.seq ? a.seq - b.seq : a.offset - b.offset;
}

/** What a reader waiting for new data registers. */
export interface Follower {
  wake(): void;
}

export interface ContainerLogHooks {
  /** After a rotation, so the store can enforce its budget. */
  onRotated(): void;
  /** After a rotated segment's compression finished (or failed): the store checks its budget again. */
  onCompressed(): void;
  /** A write failed (disk full, I/O error): the entries in it are not stored. */
  onAppendFailed(bytes: number, err: NodeJS.ErrnoException): void;
}

const FILE_MODE = 0o640;

/**
 * When a rotated segment is gzipped: once the container's log has had no append for `quietMs`, and at
 * the latest `latestMs` after its rotation. A burst (the moment shiplog must keep dockerd's pace) then
 * does not pay for compression on the cores the containers and dockerd need; the same work runs when
 * the burst is over, and a log that never pauses is still compressed, `latestMs` behind. Uncompressed
 * rotated files stay within what `max-size` × `max-file` allows anyway; the store budget, which
 * counts them at their plain size, compresses the waiting ones before it deletes anything (Store).
 */
export interface CompressionDelays {
  readonly quietMs: number;
  readonly latestMs: number;
}

export const DEFAULT_COMPRESSION_DELAYS: CompressionDelays = Object.freeze({ quietMs: 1000, latestMs: 30_000 });

/** A rotated segment waiting for its compression, and when it must start at the latest. */
interface DeferredCompression {
  readonly segment: SegmentState;
  readonly dueAt: number;
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

export class ContainerLog {
  /** Ascending seq. The current segment, when its file exists, is last and has seq === currentSeq. */
  readonly segments: SegmentState[] = [];
  currentSeq = 0;
  writerCount = 0;
  private fd: number | undefined;
  private rotation: RotationOptions = { maxSize: Number.POSITIVE_INFINITY, maxFile: 1, compress: false };
  private readonly followers = new Set<Follower>();
  /** Segments being compressed (their diskBytes still the plain size), each with its compression. */
  private readonly compressions = new Map<SegmentState, Promise<void>>();
  /** Rotated segments waiting for a quiet moment (CompressionDelays), oldest first; never a deleted one. */
  private deferred: DeferredCompression[] = [];
  private deferTimer: NodeJS.Timeout | undefined;
  /** performance.now() of the last append. */
  private lastAppendAt = 0;

  private constructor(
    readonly id: string,
    readonly dir: string,
    private readonly logger: Logger,
    private readonly hooks: ContainerLogHooks,
    private readonly delays: CompressionDelays,
  ) {}

  /**
   * Builds the state from what is on disk (nothing, for a new container). Cuts a torn last record of
   * container.log, removes leftovers of interrupted compressions. Synchronous: it runs at boot and
   * from openWriter, which must not yield.
   */
  static load(root: string, id: string, logger: Logger, hooks: ContainerLogHooks, delays: CompressionDelays = DEFAULT_COMPRESSION_DELAYS): ContainerLog {
    const log = new ContainerLog(id, path.join(root, id), logger, hooks, delays);
    let names: string[];
    try {
      names = fs.readdirSync(log.dir);
    } catch (err) {
      if (isNotFound(err)) return log;
      throw err;
    }
    const rotated = new Map<number, { plain: boolean; gz: boolean }>();
    let hasCurrent = false;
    for (const name of names) {
      if (isTempFile(name)) {
        fs.rmSync(path.join(log.dir, name), { force: true });
        continue;
      }
      const parsed = parseSegmentFileName(name);
      if (!parsed) continue;
      if (parsed.index === 0) {
        hasCurrent = true;
        continue;
      }
      const forms = rotated.get(parsed.index) ?? { plain: false, gz: false };
      if (parsed.compressed) forms.gz = true;
      else forms.plain = true;
      rotated.set(parsed.index, forms);
    }
    const maxIndex = Math.max(0, ...rotated.keys());
    log.currentSeq = maxIndex;
    for (let index = maxIndex; index >= 1; index--) {
      const forms = rotated.get(index);
      if (!forms) continue;
      if (forms.plain && forms.gz) {
        // Compression was interrupted between rename and unlink: the plain file is complete for sure.
        fs.rmSync(path.join(log.dir, segmentFileName(index, true)), { force: true });
      }
      const compressed = !forms.plain;
      const file = path.join(log.dir, segmentFileName(index, compressed));
      const diskBytes = fs.statSync(file).size;
      const lastTime = compressed ? readGzipLastTime(file) : plainLastTime(file);
      log.segments.push({ seq: maxIndex - index, compressed, diskBytes, lastTime, deleted: false });
    }
    if (hasCurrent) log.segments.push(log.loadCurrent());
    return log;
  }

  private loadCurrent(): SegmentState {
    const file = path.join(this.dir, CURRENT_FILE);
    const fd = fs.openSync(file, 'r+');
    try {
      let size = fs.fstatSync(fd).size;
      let last = inspectLastRecord(fd, size);
      if (last.kind === 'torn') {
        const goodEnd = lastWholeRecordEnd(fd, size);
        fs.ftruncateSync(fd, goodEnd);
        this.logger.warn({ container: this.id, cutBytes: size - goodEnd }, 'store: cut a torn last record (crash while writing)');
        size = goodEnd;
        last = inspectLastRecord(fd, size);
      }
      const lastTime = last.kind === 'ok' ? last.time : undefined;
      return { seq: this.currentSeq, compressed: false, diskBytes: size, lastTime, deleted: false };
    } finally {
      fs.closeSync(fd);
    }
  }

  get currentSegment(): SegmentState | undefined {
    const last = this.segments[this.segments.length - 1];
    return last !== undefined && last.seq === this.currentSeq ? last : undefined;
  }

  get currentSize(): number {
    return this.currentSegment?.diskBytes ?? 0;
  }

  get diskBytes(): number {
    let total = 0;
    for (const s of this.segments) total += s.diskBytes;
    return total;
  }

  /** Where the log ends right now; everything before it is whole records. */
  endPosition(): Position {
    return { seq: this.currentSeq, offset: this.currentSize };
  }

  segmentAtOrAfter(seq: number): SegmentState | undefined {
    for (const s of this.segments) if (s.seq >= seq) return s;
    return undefined;
  }

  fileName(segment: SegmentState): string {
    return segmentFileName(this.currentSeq - segment.seq, segment.compressed);
  }

  /**
   * Opens a segment by the name it has at this instant (synchronously, so no rotation or finished
   * compression can slip in between); undefined when it is gone. `size` is the file size (compressed
   * size for .gz). The caller closes `fd`.
   */
  openFd(segment: SegmentState): { fd: number; compressed: boolean; size: number } | undefined {
    if (segment.deleted) return undefined;
    const compressed = segment.compressed;
    let fd: number;
    try {
      fd = fs.openSync(path.join(this.dir, this.fileName(segment)), 'r');
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    return { fd, compressed, size: fs.fstatSync(fd).size };
  }

  acquireWriter(rotation: RotationOptions): void {
    this.rotation = rotation;
    this.writerCount++;
    if (this.fd === undefined) this.openCurrentForAppend();
  }

  releaseWriter(): void {
    if (this.writerCount === 0) return;
    this.writerCount--;
    if (this.writerCount === 0) this.closeCurrentFile();
    this.notifyFollowers();
  }

  private openCurrentForAppend(): void {
    fs.mkdirSync(this.dir, { recursive: true });
    this.fd = fs.openSync(path.join(this.dir, CURRENT_FILE), 'a', FILE_MODE);
    if (this.currentSegment === undefined) {
      this.segments.push({ seq: this.currentSeq, compressed: false, diskBytes: fs.fstatSync(this.fd).size, lastTime: undefined, deleted: false });
    }
  }

  private closeCurrentFile(): void {
    if (this.fd === undefined) return;
    fs.closeSync(this.fd);
    this.fd = undefined;
  }

  /**
   * Appends whole records (`[N][entry][N]`…) in one write, rotating first if the current file is
   * full, then wakes followers. A failed write is rolled back so the file stays whole records.
   */
  append(records: Buffer, lastTime: bigint): void {
    if (this.fd === undefined || records.length === 0) return;
    const before = this.currentSegment;
    const rotated = before !== undefined && before.diskBytes > 0 && before.diskBytes >= this.rotation.maxSize;
    if (rotated) this.rotate();
    const current = this.currentSegment;
    if (this.fd === undefined || current === undefined) return;
    let written = 0;
    try {
      // One write; the loop runs again only after a short write (disk nearly full).
      while (written < records.length) written += fs.writeSync(this.fd, records, written);
    } catch (err) {
      this.hooks.onAppendFailed(records.length, err as NodeJS.ErrnoException);
      if (written > 0) {
        try {
          fs.ftruncateSync(this.fd, current.diskBytes);
        } catch {
          // nothing more to try; the next load cuts the torn record
        }
      }
      if (rotated) this.hooks.onRotated();
      return;
    }
    current.diskBytes += records.length;
    current.lastTime = lastTime;
    this.lastAppendAt = performance.now();
    this.notifyFollowers();
    // After the write, so the budget sees what the new segment holds.
    if (rotated) this.hooks.onRotated();
  }

  /**
   * The last `maxBytes` bytes of the current segment (fewer when it holds fewer; empty when there is
   * none). Used once per re-attached stream, to find records an earlier process stored just before
   * it was killed (StoreWriter.dropStoredPrefix).
   */
  readTail(maxBytes: number): Buffer {
    const current = this.currentSegment;
    if (current === undefined || current.diskBytes === 0 || maxBytes <= 0) return Buffer.alloc(0);
    const length = Math.min(maxBytes, current.diskBytes);
    const tail = Buffer.allocUnsafe(length);
    let fd: number | undefined;
    try {
      fd = fs.openSync(path.join(this.dir, CURRENT_FILE), 'r');
      let got = 0;
      while (got < length) {
        const n = fs.readSync(fd, tail, got, length - got, current.diskBytes - length + got);
        if (n === 0) break;
        got += n;
      }
      return got === length ? tail : Buffer.alloc(0);
    } catch (err) {
      if (!isNotFound(err)) this.logger.warn({ container: this.id, err: (err as Error).message }, 'store: cannot read the end of the current file');
      return Buffer.alloc(0);
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
  }

  /** Docker's `local` rotation (protocol.md §6): shift .N-1→.N, drop beyond max-file, current → .1. */
  private rotate(): void {
    const current = this.currentSegment;
    if (current === undefined) return;
    this.closeCurrentFile();
    const maxFile = Math.max(1, Math.floor(this.rotation.maxFile));
    const rotated = this.segments.filter((s) => s !== current);
    if (maxFile === 1) {
      for (const s of rotated) this.removeSegmentFile(s);
      this.removeSegmentFile(current);
    } else {
      // Oldest first = highest index first, so no rename lands on an existing name.
      for (const s of rotated) {
        const index = this.currentSeq - s.seq;
        if (index + 1 > maxFile - 1) this.removeSegmentFile(s);
        else this.renameSegmentFile(s, index + 1);
      }
      this.renameSegmentFile(current, 1);
    }
    this.currentSeq++;
    this.openCurrentForAppend();
    if (maxFile > 1 && this.rotation.compress && !current.deleted) this.deferCompression(current);
  }

  private deferCompression(segment: SegmentState): void {
    this.deferred.push({ segment, dueAt: performance.now() + this.delays.latestMs });
    this.armDeferTimer();
  }

  /** Wakes when the log may have become quiet or the oldest waiting segment is due. */
  private armDeferTimer(): void {
    const first = this.deferred[0];
    if (this.deferTimer !== undefined || first === undefined) return;
    const now = performance.now();
    const wait = Math.min(this.lastAppendAt + this.delays.quietMs - now, first.dueAt - now);
    this.deferTimer = setTimeout(() => {
      this.deferTimer = undefined;
      this.startDueCompressions();
    }, Math.max(1, Math.ceil(wait)));
    this.deferTimer.unref();
  }

  private startDueCompressions(): void {
    const now = performance.now();
    const quiet = now - this.lastAppendAt >= this.delays.quietMs;
    const waiting: DeferredCompression[] = [];
    for (const d of this.deferred) {
      if (quiet || now >= d.dueAt) this.startCompression(d.segment);
      else waiting.push(d);
    }
    this.deferred = waiting;
    this.armDeferTimer();
  }

  /**
   * Starts every waiting compression now (store close, budget); returns the plain bytes of the
   * segments being compressed, these included.
   */
  compressWaitingNow(): number {
    if (this.deferTimer !== undefined) clearTimeout(this.deferTimer);
    this.deferTimer = undefined;
    const waiting = this.deferred;
    this.deferred = [];
    for (const d of waiting) this.startCompression(d.segment);
    let bytes = 0;
    for (const s of this.compressions.keys()) bytes += s.diskBytes;
    return bytes;
  }

  /** Rotated segments waiting for their compression or being compressed (metrics). */
  get segmentsToCompress(): number {
    return this.deferred.length + this.compressions.size;
  }

  private renameSegmentFile(segment: SegmentState, toIndex: number): void {
    const from = path.join(this.dir, this.fileName(segment));
    const to = path.join(this.dir, segmentFileName(toIndex, segment.compressed));
    try {
      fs.renameSync(from, to);
    } catch (err) {
      this.logger.warn({ container: this.id, err }, 'store: could not rename a log segment; dropping it');
      this.forgetSegment(segment);
    }
  }

  /**
   * Deletes a segment for the budget; returns the bytes freed. The current file only goes when no
   * writer has it open, and then a later writer starts a new seq, so no reader takes the new file
   * for the deleted one.
   */
  deleteSegment(segment: SegmentState): number {
    const isCurrent = segment.seq === this.currentSeq;
    if (isCurrent && this.writerCount > 0) return 0;
    const bytes = segment.diskBytes;
    this.removeSegmentFile(segment);
    // Only when nothing older is left: file names of older segments derive from currentSeq.
    if (isCurrent && this.segments.length === 0) this.currentSeq++;
    return bytes;
  }

  private removeSegmentFile(segment: SegmentState): void {
    fs.rmSync(path.join(this.dir, this.fileName(segment)), { force: true });
    this.forgetSegment(segment);
  }

  private forgetSegment(segment: SegmentState): void {
    segment.deleted = true;
    this.deferred = this.deferred.filter((d) => d.segment !== segment);
    const i = this.segments.indexOf(segment);
    if (i >= 0) this.segments.splice(i, 1);
  }

  /** gzip a rotated segment off the event loop (the compression thread), to a temporary name, then rename. */
  private startCompression(segment: SegmentState): void {
    const source = path.join(this.dir, this.fileName(segment));
    const temp = path.join(this.dir, compressionTempName(segment.seq));
    let sourceFd: number;
    try {
      sourceFd = fs.openSync(source, 'r');
    } catch (err) {
      this.logger.warn({ container: this.id, err }, 'store: could not open a rotated segment to compress it');
      return;
    }
    const done = compressSegment(sourceFd, temp, segment.lastTime)
      .then((compressedBytes) => this.installCompressed(segment, temp, compressedBytes))
      .catch((err: unknown) => {
        removeQuietly(temp);
        this.logger.warn({ container: this.id, err }, 'store: compressing a rotated segment failed; kept it uncompressed');
      });
    this.compressions.set(segment, done.finally(() => {
      this.compressions.delete(segment);
      this.hooks.onCompressed();
    }));
  }

  /** Puts a finished .gz in place of its plain segment. Sync, in one tick: readers open by the current name and see either form, never neither. */
  private installCompressed(segment: SegmentState, temp: string, compressedBytes: number): void {
    if (segment.deleted) {
      fs.rmSync(temp, { force: true });
      if (this.segments.length === 0 && this.writerCount === 0) this.removeDirIfEmpty();
      return;
    }
    const index = this.currentSeq - segment.seq;
    fs.renameSync(temp, path.join(this.dir, segmentFileName(index, true)));
    segment.compressed = true;
    segment.diskBytes = compressedBytes;
    // If this unlink failed, both forms would exist; load keeps the plain one.
    fs.rmSync(path.join(this.dir, segmentFileName(index, false)), { force: true });
  }

  /** Starts the waiting compressions; resolves when none is running. */
  async settled(): Promise<void> {
    this.compressWaitingNow();
    await this.compressionsDone();
  }

  /** Resolves when no compression is running (waiting ones stay waiting). */
  async compressionsDone(): Promise<void> {
    while (this.compressions.size > 0) await Promise.all([...this.compressions.values()]);
  }

  /** Removes the directory once nothing is left in it. */
  removeDirIfEmpty(): void {
    try {
      fs.rmdirSync(this.dir);
    } catch {
      // not empty (a file we do not own, or a compression finishing) or already gone
    }
  }

  addFollower(follower: Follower): void {
    this.followers.add(follower);
  }

  removeFollower(follower: Follower): void {
    this.followers.delete(follower);
  }

  notifyFollowers(): void {
    for (const f of this.followers) f.wake();
  }

  /** Closes the file; writers are done. */
  close(): void {
    this.writerCount = 0;
    this.closeCurrentFile();
    this.notifyFollowers();
  }
}

function removeQuietly(file: string): void {
  try {
    fs.rmSync(file, { force: true });
  } catch {
    // a leftover temp file is removed at the next load
  }
}

function plainLastTime(file: string): bigint | undefined {
  const fd = fs.openSync(file, 'r');
  try {
    const last = inspectLastRecord(fd, fs.fstatSync(fd).size);
    return last.kind === 'ok' ? last.time : undefined;
  } finally {
    fs.closeSync(fd);
  }
}
