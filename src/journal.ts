/**
 * The journal of live streams, so a restarted shiplog re-attaches to the FIFOs it was reading:
 * dockerd holds both ends of every FIFO and never re-sends StartLogging to a plugin that comes back
 * (protocol.md §3.6), so remembering them is the plugin's job. Files per stream under
 * `<state-dir>/streams/`: `<fifo name>.json` holds the path and the StartLogging Info, and
 * `<fifo name>.pending` the bytes read from the FIFO that are not yet fully processed (PendingBytes),
 * so the next reader — after a clean stop or a `kill -9` — continues exactly where this one stopped.
 * (`<fifo name>.carry`, raw bytes, is what versions before the pending file left on a clean stop; it
 * is still read.)
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { ContainerInfo } from './container-info.js';

/**
 * The pending file: a 9-byte header — state, then `start` and `end` (uint32 LE) — and the bytes
 * `[start, end)` of the data area after it. Older versions wrote a state byte (0, 1, 2 below) and
 * the bytes after it; such a file left by an upgraded shiplog is still read.
 */
const HEADER_BYTES = 9;
/** The bytes `[start, end)` are exact: the next reader continues with them … */
const STATE_EXACT = 0x11;
/** … or the reader was looking for a frame start: the next one must resync. */
const STATE_RESYNC = 0x10;
const LEGACY_STATE_EXACT = 1;
const LEGACY_STATE_APPENDING = 2;
/**
 * Live bytes move back to the start of the data area once `end` passes this, at the next cut that
 * leaves no more of them than the bytes before them (so a move never overwrites what it moves); a
 * cut that leaves none starts over at 0 at no cost. The
 * file stays at about this size: overwritten in place, never truncated (an ftruncate per event-loop
 * turn freed the pages the next chunk had to allocate again: ~30 of the ~34 µs the pending file
 * cost per 64 KiB chunk; BENCHMARKS.md).
 */
const COMPACT_AT_BYTES = 256 * 1024;

/** What an earlier reader left in its pending file. */
export interface TakenCarry {
  readonly bytes: Buffer;
  /** The last append was cut short (a file of an older version): after `bytes`' whole frames, the next reader must resync. */
  readonly cutShort: boolean;
}

/** What a stream reports to its pending file (tests give their own). */
export interface PendingBytesLog {
  /** Bytes just read from the FIFO, before anything is done with them. */
  append(chunk: Buffer): void;
  /**
   * Everything read so far is in the store and handed to sinks, but for `carry`, the bytes of a frame
   * read only in part (the last bytes appended; undefined: resyncing).
   */
  processed(carry: Buffer | undefined): void;
  close(): void;
}

/**
 * A pipe gives each byte once: what shiplog has read is gone from the FIFO. So every chunk is
 * written here (page cache: a process crash loses nothing written; no fsync) before it is
 * processed, and once its frames are in the store and their records delivered or in the sinks'
 * spools (LogStream calls SinkRunner.secure() first, once per event-loop turn), the header is moved
 * on to the bytes of a frame read only in part. After a `kill -9` the next start processes the
 * file's bytes again (the store drops those it already holds, StoreWriter.dropStoredPrefix; sinks get
 * them again with the same ids), then reads on from the FIFO.
 *
 * Every change is one write of data the header does not cover yet, then one write of the header
 * (9 bytes in one page: a kill cannot stop it part-way). So a kill leaves the old header or the new
 * one, never bytes it does not describe. What no user-space reader can keep: a chunk a kill catches
 * between read() and the end of its write here (README, "What a kill -9 can lose"). Two writes per
 * FIFO chunk, one per event-loop turn, and now and then a carry's bytes and one more header. If a write
 * fails (disk full), the file is removed, and a crash then costs what it did without it: the next
 * reader resyncs.
 */
export class PendingBytes implements PendingBytesLog {
  private fd: number | undefined;
  /** As the header on disk says (none yet: the first header is always written). */
  private state = -1;
  /** The live bytes: `[start, end)` of the data area. */
  private start = 0;
  private end = 0;
  private readonly header = Buffer.alloc(HEADER_BYTES);

  constructor(private readonly file: string, private readonly logger: Logger, resume: Buffer | undefined) {
    try {
      this.fd = fs.openSync(file, 'w', 0o600);
      if (resume !== undefined && resume.length > 0) this.writeData(resume, 0);
      this.writeHeader(resume === undefined ? STATE_RESYNC : STATE_EXACT, 0, resume?.length ?? 0);
    } catch (err) {
      this.fail(err);
    }
  }

  append(chunk: Buffer): void {
    if (this.fd === undefined) return;
    try {
      this.writeData(chunk, this.end);
      this.writeHeader(this.state, this.start, this.end + chunk.length);
    } catch (err) {
      this.fail(err);
    }
  }

  processed(carry: Buffer | undefined): void {
    if (this.fd === undefined) return;
    try {
      if (carry === undefined) {
        this.writeHeader(STATE_RESYNC, 0, 0);
        return;
      }
      const length = carry.length;
      if (length > this.end - this.start) {
        // Bytes from before the live ones (a frame start found across a resync): the file lacks
        // some of them, so the carry is written whole, after everything live.
        this.writeData(carry, this.end);
        this.writeHeader(STATE_EXACT, this.end, this.end + length);
        return;
      }
      if (length === 0) {
        this.writeHeader(STATE_EXACT, 0, 0);
        return;
      }
      const carryStart = this.end - length;
      this.writeHeader(STATE_EXACT, carryStart, this.end);
      // The move writes over bytes just processed: only once the header no longer covers them.
      if (this.end >= COMPACT_AT_BYTES && length <= carryStart) {
        this.writeData(carry, 0);
        this.writeHeader(STATE_EXACT, 0, length);
      }
    } catch (err) {
      this.fail(err);
    }
  }

  private writeHeader(state: number, start: number, end: number): void {
    if (state === this.state && start === this.start && end === this.end) return;
    this.header[0] = state;
    this.header.writeUInt32LE(start, 1);
    this.header.writeUInt32LE(end, 5);
    this.writeAll(this.header, 0);
    this.state = state;
    this.start = start;
    this.end = end;
  }

  private writeData(bytes: Buffer, at: number): void {
    this.writeAll(bytes, HEADER_BYTES + at);
  }

  /** One write; a short one (disk full) is an error like a failed one. */
  private writeAll(bytes: Buffer, position: number): void {
    const written = fs.writeSync(this.fd as number, bytes, 0, bytes.length, position);
    if (written !== bytes.length) throw new Error(`short write to the pending file (${written} of ${bytes.length} bytes)`);
  }

  close(): void {
    if (this.fd === undefined) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      // nothing left to do with it
    }
    this.fd = undefined;
  }

  private fail(err: unknown): void {
    this.logger.error({ file: this.file, err: (err as Error).message }, 'cannot keep the bytes read from the FIFO on disk; after a crash this stream resyncs (may lose the entry being read)');
    this.close();
    try {
      fs.rmSync(this.file, { force: true });
    } catch {
      // a stale file would be worse than none, but there is nothing else to try
    }
  }
}

/** The bytes a pending file says are exact, with whether a (legacy) append was cut short; undefined: resync. */
function readPendingFile(file: Buffer): TakenCarry | undefined {
  const state = file[0];
  if (state === STATE_EXACT) {
    if (file.length < HEADER_BYTES) return undefined;
    const start = file.readUInt32LE(1);
    const end = file.readUInt32LE(5);
    if (start > end || HEADER_BYTES + end > file.length) return undefined;
    return { bytes: file.subarray(HEADER_BYTES + start, HEADER_BYTES + end), cutShort: false };
  }
  if (state === LEGACY_STATE_EXACT) return { bytes: file.subarray(1), cutShort: false };
  if (state === LEGACY_STATE_APPENDING) return { bytes: file.subarray(1), cutShort: true };
  return undefined;
}

export interface JournalEntry {
  readonly file: string;
  readonly info: ContainerInfo;
  readonly startedAt: string;
}

export class StreamJournal {
  constructor(private readonly dir: string) {}

  async init(): Promise<void> {
    await fs.promises.mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Durable before StartLogging answers: written to a temp name, then renamed. */
  async record(entry: JournalEntry): Promise<void> {
    const target = this.entryPath(entry.file);
    const tmp = `${target}.tmp`;
    await fs.promises.writeFile(tmp, JSON.stringify(entry), { mode: 0o600 });
    await fs.promises.rename(tmp, target);
  }

  /** The stream ended for good (EOF): forget it and its pending bytes. */
  async remove(file: string): Promise<void> {
    await Promise.all([
      fs.promises.rm(this.entryPath(file), { force: true }),
      fs.promises.rm(this.pendingPath(file), { force: true }),
      fs.promises.rm(this.carryPath(file), { force: true }),
    ]);
  }

  /** Removes a stream's pending file alone (a stream that failed to open). */
  async removePending(file: string): Promise<void> {
    await fs.promises.rm(this.pendingPath(file), { force: true });
  }

  /** The pending file of a stream, starting with `resume` (the bytes it continues with; undefined: it resyncs). */
  openPending(file: string, logger: Logger, resume: Buffer | undefined): PendingBytes {
    return new PendingBytes(this.pendingPath(file), logger, resume);
  }

  /**
   * The bytes an earlier process read from the FIFO and did not finish (its pending file, or an
   * older version's carry), with whether its last append was cut short; undefined when the next reader
   * must resync (no file, or the earlier reader was resyncing itself).
   */
  async takeCarry(file: string): Promise<TakenCarry | undefined> {
    const pending = await fs.promises.readFile(this.pendingPath(file)).catch(() => undefined);
    const carry = await fs.promises.readFile(this.carryPath(file)).catch(() => undefined);
    if (carry !== undefined) await fs.promises.rm(this.carryPath(file), { force: true });
    if (pending !== undefined) return readPendingFile(pending);
    return carry === undefined ? undefined : { bytes: carry, cutShort: false };
  }

  async list(): Promise<JournalEntry[]> {
    const names = await fs.promises.readdir(this.dir).catch(() => [] as string[]);
    const entries: JournalEntry[] = [];
    for (const name of names) {
      if (!name.endsWith('.json')) continue;
      try {
        const parsed = JSON.parse(await fs.promises.readFile(path.join(this.dir, name), 'utf8')) as Partial<JournalEntry>;
        if (typeof parsed.file === 'string' && parsed.info !== undefined && typeof parsed.startedAt === 'string') entries.push(parsed as JournalEntry);
      } catch {
        await fs.promises.rm(path.join(this.dir, name), { force: true });
      }
    }
    return entries;
  }

  private entryPath(file: string): string {
    return path.join(this.dir, `${path.basename(file)}.json`);
  }

  private pendingPath(file: string): string {
    return path.join(this.dir, `${path.basename(file)}.pending`);
  }

  private carryPath(file: string): string {
    return path.join(this.dir, `${path.basename(file)}.carry`);
  }
}
