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

/** First byte of a pending file: what follows is exact (continue with it) … */
const STATE_EXACT = 1;
/** … or the reader was looking for a frame start, or rewriting the file (the next reader must resync) … */
const STATE_RESYNC = 0;
/**
 * … or a chunk was being appended: what follows is the stream up to a point inside that chunk, and
 * the rest of the chunk is lost (a kill stopped the write part-way). The next reader processes the
 * whole frames, drops the frame cut short and resyncs.
 */
const STATE_APPENDING = 2;

/** What an earlier reader left in its pending file. */
export interface TakenCarry {
  readonly bytes: Buffer;
  /** The last append was cut short: after `bytes`' whole frames, the next reader must resync. */
  readonly cutShort: boolean;
}

/** What a stream reports to its pending file (tests give their own). */
export interface PendingBytesLog {
  /** Bytes just read from the FIFO, before anything is done with them. */
  append(chunk: Buffer): void;
  /** Everything read so far is in the store and handed to sinks, but for `carry` (undefined: resyncing). */
  processed(carry: Buffer | undefined): void;
  close(): void;
}

/**
 * A pipe gives each byte once: what shiplog has read is gone from the FIFO. So every chunk is
 * appended here (page cache: a process crash loses nothing written; no fsync) before it is
 * processed, and once its frames are in the store and their records delivered or in the sinks'
 * spools (LogStream calls SinkRunner.secure() first, once per event-loop turn), the file is cut back
 * to the bytes of a frame read only in part. After a `kill -9` the next start processes the file's bytes again (the
 * store drops those it already holds, StoreWriter.dropStoredPrefix; sinks get them again with the
 * same ids), then reads on from the FIFO. What no user-space reader can keep: a chunk a kill catches
 * between read() and the append here (README, "What a kill -9 can lose"). A kill can also stop the
 * append itself part-way (a 64 KiB write into the page cache can be interrupted by a fatal signal,
 * e.g. while dirty-page throttling holds it): the state byte says an append was under way, and the
 * next reader keeps the whole frames, drops the one cut off and resyncs, instead of joining it to
 * unrelated bytes. A carry rewritten in place is marked "resync" until it is whole. Three writes per FIFO
 * chunk to append (state, chunk, state) and one to four per event-loop turn to cut back, all but the
 * chunk one byte or one partial frame. If a write fails (disk full), the file is removed, and a crash then costs what
 * it did without it: the next reader resyncs.
 */
export class PendingBytes implements PendingBytesLog {
  private fd: number | undefined;
  /** Bytes after the state byte. */
  private length = 0;
  private state = STATE_EXACT;

  constructor(private readonly file: string, private readonly logger: Logger, resume: Buffer | undefined) {
    try {
      this.fd = fs.openSync(file, 'w', 0o600);
      this.writeState(resume === undefined ? STATE_RESYNC : STATE_EXACT);
      if (resume !== undefined && resume.length > 0) this.writeAll(resume, 1);
      this.length = resume?.length ?? 0;
    } catch (err) {
      this.fail(err);
    }
  }

  append(chunk: Buffer): void {
    if (this.fd === undefined) return;
    try {
      // A kill can stop a large write part-way: the marker tells the next reader the end may be cut short.
      const marked = this.state === STATE_EXACT;
      if (marked) this.writeState(STATE_APPENDING);
      this.writeAll(chunk, 1 + this.length);
      this.length += chunk.length;
      if (marked) this.writeState(STATE_EXACT);
    } catch (err) {
      this.fail(err);
    }
  }

  processed(carry: Buffer | undefined): void {
    if (this.fd === undefined) return;
    try {
      if (carry === undefined) {
        if (this.state !== STATE_RESYNC) this.writeState(STATE_RESYNC);
        if (this.length !== 0) fs.ftruncateSync(this.fd, 1);
        this.length = 0;
        return;
      }
      if (carry.length === 0) {
        if (this.length !== 0) fs.ftruncateSync(this.fd, 1);
      } else {
        // The carry is rewritten in place: a kill in between must not leave it followed by stale bytes
        // that pass as exact, so the file says "resync" until it is whole again.
        if (this.state !== STATE_RESYNC) this.writeState(STATE_RESYNC);
        this.writeAll(carry, 1);
        if (carry.length !== this.length) fs.ftruncateSync(this.fd, 1 + carry.length);
      }
      if (this.state !== STATE_EXACT) this.writeState(STATE_EXACT);
      this.length = carry.length;
    } catch (err) {
      this.fail(err);
    }
  }

  private writeState(state: number): void {
    this.writeAll(Buffer.of(state), 0);
    this.state = state;
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
    if (pending !== undefined) {
      const state = pending[0];
      if (state === STATE_EXACT) return { bytes: pending.subarray(1), cutShort: false };
      if (state === STATE_APPENDING) return { bytes: pending.subarray(1), cutShort: true };
      return undefined;
    }
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
