/**
 * The per-container local store behind `docker logs` (ReadLogs), in Docker's `local` driver format
 * (protocol.md §6): `<root>/<containerId>/container.log`, rotated `.1` … (`.N.gz` compressed), each
 * record `[u32 BE N][LogEntry][u32 BE N]`.
 *
 * The driver appends through a ContainerLogWriter per FIFO stream and serves ReadLogs with read().
 * A global byte budget deletes whole segments, stopped containers' first.
 *
 * Choices worth knowing:
 * - Rotation is checked before each flush (one write per FIFO chunk), so a segment may exceed
 *   max-size by one flush, where Docker's exceeds it by one record.
 * - Followers read from the files, never from an in-memory queue (read-session.ts): a slow reader
 *   costs one read batch of memory and falls behind on disk. If rotation or the budget deletes
 *   segments it has not reached, it skips to the oldest remaining one and logs a warning once.
 * - Compressed segments carry Docker's `{"lastTime":…}` in the gzip Extra field, so Docker's own
 *   tools read them and Since skips them after reading a few header bytes.
 */
import fs from 'node:fs';
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { Int64Parts } from '../time.js';
import { nextSegmentToEvict } from './budget.js';
import { ContainerLog, type CompressionDelays } from './container-log.js';
import { StoreWriter } from './container-writer.js';
import { ReadSession } from './read-session.js';
import { isSafeContainerId } from './segment-names.js';

/** bytes, count >= 1, gzip rotated segments */
export interface RotationOptions {
  maxSize: number;
  maxFile: number;
  compress: boolean;
}

export const DEFAULT_STORE_BUDGET_BYTES = 1024 * 1024 * 1024;

export interface StoreSettings {
  /** e.g. <stateDir>/containers */
  root: string;
  /** Total store budget in bytes (DEFAULT_STORE_BUDGET_BYTES = 1 GiB). */
  budgetBytes: number;
  logger: Logger;
  /** When rotated segments are compressed (DEFAULT_COMPRESSION_DELAYS; tests shorten them). */
  compressionDelays?: CompressionDelays;
}

export interface ReadRequest {
  /** ns, inclusive */
  since?: bigint;
  /** ns, inclusive */
  until?: bigint;
  /** -1 all, 0 none, N last N entries */
  tail: number;
  follow: boolean;
}

export interface ContainerLogWriter {
  /** Queue one entry: the LogEntry message bytes `buf[start, end)`, as read from the FIFO (copied); timeNano is its decoded time. */
  add(buf: Buffer, start: number, end: number, timeNano: Int64Parts): void;
  /** Write everything queued since the last flush in ONE write syscall, then notify followers. Synchronous. */
  flush(): void;
  /** After a crash: drops queued records that are already the last ones stored (see StoreWriter). */
  dropStoredPrefix(): number;
  /** This stream ended (what is still queued is flushed first). When a container's last writer is released, its followers finish and the budget treats it as stopped. */
  release(): void;
}

export class LogStore {
  private readonly containers = new Map<string, ContainerLog>();
  private readonly writers = new Set<StoreWriter>();
  private readonly sessions = new Set<Promise<void>>();
  private readonly readers = new Set<ReadSession>();
  private readonly logger: Logger;
  private closed = false;

  constructor(private readonly settings: StoreSettings) {
    this.logger = settings.logger;
  }

  /** Scan root at boot (sizes for the budget, torn tails cut); call once before use. */
  async init(): Promise<void> {
    fs.mkdirSync(this.settings.root, { recursive: true });
    for (const dirent of fs.readdirSync(this.settings.root, { withFileTypes: true })) {
      if (!dirent.isDirectory() || !isSafeContainerId(dirent.name) || this.containers.has(dirent.name)) continue;
      try {
        const container = this.loadContainer(dirent.name);
        if (container.segments.length === 0) container.removeDirIfEmpty();
        else this.containers.set(dirent.name, container);
      } catch (err) {
        this.logger.error({ container: dirent.name, err }, 'store: could not load a container log directory; leaving it alone');
      }
    }
    this.enforceBudget();
  }

  /**
   * One writer per live FIFO stream of a container. Opening never truncates what is stored; a torn
   * last record from a crash is cut off when the container is first loaded. The newest writer's
   * rotation options apply.
   */
  openWriter(containerId: string, rotation: RotationOptions): ContainerLogWriter {
    if (this.closed) throw new Error('log store is closed');
    if (!isSafeContainerId(containerId)) throw new Error(`invalid container id ${JSON.stringify(containerId)} for the log store`);
    let container = this.containers.get(containerId);
    if (container === undefined) {
      container = this.loadContainer(containerId);
      this.containers.set(containerId, container);
    }
    container.acquireWriter(normalizeRotation(rotation));
    const writer = new StoreWriter(container, this.logger, (w) => this.writers.delete(w));
    this.writers.add(writer);
    return writer;
  }

  /**
   * Serves ReadLogs into `out`. Resolves when finished: without follow after the backlog; with
   * follow when the container has no open writer left and everything written was sent, or when
   * `out` closes or errors. Does not end `out`: the caller does (an HTTP response, usually).
   * An unknown container resolves with nothing written.
   */
  async read(containerId: string, request: ReadRequest, out: Writable): Promise<void> {
    if (this.closed || !isSafeContainerId(containerId)) return;
    const container = this.containers.get(containerId);
    if (container === undefined) return;
    const session = new ReadSession(container, request, out, this.logger);
    const running = session.run();
    this.readers.add(session);
    this.sessions.add(running);
    try {
      await running;
    } finally {
      this.readers.delete(session);
      this.sessions.delete(running);
    }
  }

  /** Bytes on disk across all containers. */
  /** Bytes of entries that could not be written (disk full, I/O errors), by error code. */
  readonly failedAppendBytes: Record<string, number> = {};
  private lastAppendFailureLog = 0;

  private countAppendFailure(containerId: string, bytes: number, err: NodeJS.ErrnoException): void {
    const code = err.code ?? 'EIO';
    this.failedAppendBytes[code] = (this.failedAppendBytes[code] ?? 0) + bytes;
    // Once a minute at most: a full disk fails every write, and the FIFO keeps being drained.
    const now = Date.now();
    if (now - this.lastAppendFailureLog < 60_000) return;
    this.lastAppendFailureLog = now;
    this.logger.error({ container: containerId, code, failedBytes: this.failedAppendBytes }, 'store: writes failing; entries are not stored for docker logs (sinks still get them)');
  }

  get totalBytes(): number {
    let total = 0;
    for (const c of this.containers.values()) total += c.diskBytes;
    return total;
  }

  /** Rotated segments waiting for their compression or being compressed, across containers (metrics). */
  get segmentsToCompress(): number {
    let n = 0;
    for (const c of this.containers.values()) n += c.segmentsToCompress;
    return n;
  }

  /** Resolves when no compression is running (tests; waiting ones stay waiting). */
  async compressionsDone(): Promise<void> {
    await Promise.all([...this.containers.values()].map((c) => c.compressionsDone()));
  }

  /** Flush and close every writer, end followers, start waiting compressions and wait for them. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.writers]) w.flush();
    this.writers.clear();
    for (const s of this.readers) s.stop();
    for (const c of this.containers.values()) c.close();
    await Promise.all([...this.sessions]);
    await Promise.all([...this.containers.values()].map((c) => c.settled()));
  }

  private loadContainer(containerId: string): ContainerLog {
    return ContainerLog.load(this.settings.root, containerId, this.logger, {
      onRotated: () => this.enforceBudget(),
      onCompressed: () => this.enforceBudget(),
      onAppendFailed: (bytes, err) => this.countAppendFailure(containerId, bytes, err),
    }, this.settings.compressionDelays);
  }

  /**
   * Deletes whole segments, oldest first, stopped containers first, until under budget. Rotated
   * segments waiting for their compression are compressed first, and while compressions run, only
   * what they cannot free (were they to shrink to nothing) is deleted: deleting history to make room
   * for bytes about to shrink would lose lines for nothing. Each finished compression checks again,
   * so the store is over its budget only while they run.
   */
  private enforceBudget(): void {
    let total = this.totalBytes;
    if (this.closed || total <= this.settings.budgetBytes) return;
    let shrinking = 0;
    for (const c of this.containers.values()) shrinking += c.compressWaitingNow();
    total -= shrinking;
    while (total > this.settings.budgetBytes) {
      const victim = nextSegmentToEvict(this.containers.values());
      if (victim === undefined) return;
      const { container, segment } = victim;
      const file = container.fileName(segment);
      const bytes = container.deleteSegment(segment);
      if (!segment.deleted) return; // refused: never the live current file
      total -= bytes;
      this.logger.info({ container: container.id, segment: file, bytes }, 'store: over budget, deleted the oldest log segment');
      if (container.segments.length === 0 && container.writerCount === 0) {
        container.removeDirIfEmpty();
        this.containers.delete(container.id);
      }
    }
  }
}

function normalizeRotation(rotation: RotationOptions): RotationOptions {
  const maxFile = Number.isFinite(rotation.maxFile) ? Math.max(1, Math.floor(rotation.maxFile)) : 1;
  return {
    maxSize: rotation.maxSize > 0 ? rotation.maxSize : Number.POSITIVE_INFINITY,
    maxFile,
    // Docker rejects compress with max-file 1: there is never a rotated file to compress.
    compress: rotation.compress && maxFile > 1,
  };
}
