/**
 * The disk spool of one sink instance: an append-only queue of records in segment files under its
 * own directory, read back in order in bounded batches, released by acknowledgement. A record is
 * stored as a LogRecord (what overflows the memory queue) or as the sink's own encoding of it, bytes
 * (what write-through and a stop take from memory, where records wait encoded): a SpoolItem.
 *
 * - **Append** is synchronous and never waits on the disk's flush: records are encoded into a staging
 *   buffer, written with one `write` per event-loop turn (or every 256 KiB) into the page cache, and
 *   `fdatasync`ed in the background every `syncBytes` (1 MiB) or `syncIntervalMs` (250 ms), and when a
 *   segment is finished or the spool closed. A process crash loses nothing written; a power loss at
 *   most the last unsynced second. With `flushPerTask` the write happens at the end of the current
 *   task instead (a microtask: for the FIFO reader, right after the chunk that produced the records),
 *   so a `kill -9` cannot fall between a chunk reaching the local store and its records reaching here.
 * - **Held records** (write-through, see sink-runner.ts): append(record, true) stores a record the
 *   caller also keeps in memory and delivers from there. It counts as handed to the reader at once: the
 *   reader skips it (only after a restart is it read back, from the checkpoint on), and the caller
 *   acknowledges it with the position append() returned. A held record the spool cannot store is not
 *   dropped (the caller still has it), only logged: it is not protected against a crash.
 * - **Segments** (`<16-digit id>.seg`, see codec.ts) roll at `segmentBytes`; each holds each distinct
 *   ContainerMeta once and ends with a SEAL entry carrying its record count.
 * - **Acknowledgement**: ack(position) records that everything before it was delivered (checkpoint.ts)
 *   and deletes whole segments behind it.
 * - **Bound**: the files together stay under `maxBytes`. An append that would pass it first deletes the
 *   oldest whole segment; its records not yet handed to the reader are reported dropped
 *   ('spool-full'). A write that fails with ENOSPC does the same ('disk-full') and retries once; what
 *   still cannot be written is reported dropped ('disk-full', or 'spool-error' for other errors).
 *   Nothing here throws at the caller.
 * - **Damage**: a record whose checksum fails is skipped and reported ('spool-corrupt'); reading
 *   resumes at the next entry that checks out.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { ENTRY_OVERHEAD_BYTES } from '../../sinks/encoded-batch.js';
import type { ContainerMeta, LogRecord } from '../../sinks/sink.js';
import {
  ENTRY_HEADER_BYTES, ENTRY_MAGIC, EntryType, RECORD_FIXED_BYTES, SEAL_ENTRY_BYTES, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC,
  checksumOk, decodeRecord, encodeEncoded, encodeMeta, encodeRecord, encodeSeal, encodedEntryBytes, holdsRecord, metaEntryBytes, metaJson, parseBody,
  readHeader, recordEntryBytes,
} from './codec.js';
import { type Checkpoint, CheckpointFile, type Position, comparePositions } from './checkpoint.js';
import { META_FILE, type SpoolMeta, writeMetaSync } from './meta.js';

export type SpoolDropReason = 'spool-full' | 'disk-full' | 'spool-corrupt' | 'spool-error';

/** The file operations of the write path, replaceable in tests to inject ENOSPC and other faults. */
export interface SpoolIo {
  openSync(file: string, flags: number, mode: number): number;
  writeSync(fd: number, buf: Buffer, offset: number, length: number, position: number): number;
  fdatasync(fd: number, done: (err: NodeJS.ErrnoException | null) => void): void;
}

export const nodeSpoolIo: SpoolIo = {
  openSync: (file, flags, mode) => fs.openSync(file, flags, mode),
  writeSync: (fd, buf, offset, length, position) => fs.writeSync(fd, buf, offset, length, position),
  fdatasync: (fd, done) => fs.fdatasync(fd, done),
};

export interface SpoolOptions {
  readonly dir: string;
  /** Bound on the segment files together (bytes). */
  readonly maxBytes: number;
  readonly logger: Logger;
  /** Records the spool lost, with the reason. Called synchronously; must not call back into the spool. */
  readonly onDrop: (reason: SpoolDropReason, count: number) => void;
  /** Written as meta.json when the directory is created, so a restart can recreate the sink. */
  readonly meta?: SpoolMeta | undefined;
  /** Default: maxBytes / 16, within 4 KiB … 16 MiB. */
  readonly segmentBytes?: number;
  readonly syncBytes?: number;
  readonly syncIntervalMs?: number;
  readonly io?: SpoolIo;
  /** Write staged records at the end of the current task (microtask) rather than on the next event-loop turn. */
  readonly flushPerTask?: boolean;
}

/** A record as the spool stores it: the record, or the sink's encoding of it (its wire bytes). */
export type SpoolItem = LogRecord | Uint8Array;

/**
 * Takes what read() reads, in order and synchronously. Each record is lent for the call: its line is a
 * view of the spool's read buffer, which the next refill overwrites, so a reader that keeps a record
 * copies it (the sink runner encodes it at once, so a record read back allocates no line of its own).
 */
export interface SpoolReader {
  record(record: LogRecord): void;
  /** An entry spooled in the sink's encoding: a view of its wire bytes, lent like a record. */
  encoded(bytes: Buffer): void;
  /** Forget what this read gave so far: its segment was dropped meanwhile (its records counted as dropped). */
  discard(): void;
}

export interface SpoolBatch {
  /** Records given to the reader. */
  readonly count: number;
  /** Sum of recordBytes() of the records, wire bytes plus ENTRY_OVERHEAD_BYTES for an encoded one (the runner's memory accounting). */
  readonly bytes: number;
  /** ack(end) once the records are delivered. */
  readonly end: Position;
}

export type SpoolRead =
  | { readonly kind: 'batch'; readonly batch: SpoolBatch }
  /** Nothing left to read now. */
  | { readonly kind: 'empty' }
  /** The next record is larger than the bytes the caller allowed. */
  | { readonly kind: 'no-room' };

interface Segment {
  readonly id: number;
  /** Bytes of the file that hold whole entries (for the segment being written: what was written). */
  size: number;
  /** RECORD entries in it. */
  records: number;
  /** Records handed to the reader, or acknowledged before this process started. */
  consumed: number;
  /** Offset just past its last RECORD entry. */
  recordsEnd: number;
  /** Records before this offset were acknowledged before this process started. */
  startOff: number;
  dropped: boolean;
  /** Index → container of the META entries this process wrote into it (lets the reader start mid-segment). */
  readonly metas?: Map<number, ContainerMeta>;
}

interface Writer {
  readonly seg: Segment;
  readonly fd: number;
  readonly metaByObject: Map<ContainerMeta, number>;
  readonly metaByJson: Map<string, number>;
  nextMeta: number;
}

interface Cursor {
  readonly seg: Segment;
  readonly fh: fs.promises.FileHandle;
  buf: Buffer;
  /** buf[0, bufLen) holds the file's bytes [bufStart, bufStart + bufLen). */
  bufStart: number;
  bufLen: number;
  pos: number;
  readonly metas: Map<number, ContainerMeta | undefined>;
  /** A damaged entry was logged (further ones in this segment are only counted). */
  warned: boolean;
  /** Records before this offset were handed out already (held): skipped, not counted. */
  skipBefore: number;
}

const STAGE_FLUSH_BYTES = 256 * 1024;
const READ_BLOCK = 1024 * 1024;
const MAGIC_BYTES = Buffer.from([ENTRY_MAGIC >>> 24, (ENTRY_MAGIC >>> 16) & 0xff, (ENTRY_MAGIC >>> 8) & 0xff, ENTRY_MAGIC & 0xff]);
const SEGMENT_NAME = /^(\d{16})\.seg$/;
const CHECKPOINT_FILE = 'checkpoint';

function segmentName(id: number): string {
  return `${String(id).padStart(16, '0')}.seg`;
}

function errCode(err: unknown): string {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : '';
}

function isDiskFull(err: unknown): boolean {
  const code = errCode(err);
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** recordBytes() of the record in an entry with this body length, without decoding it. */
function recordBytesOfBody(bodyLength: number): number {
  return bodyLength - RECORD_FIXED_BYTES + 256;
}

/** What the runner accounts for an encoded record of this body length: its wire bytes and ENTRY_OVERHEAD_BYTES. */
function encodedBytesOfBody(bodyLength: number): number {
  return bodyLength - 1 + ENTRY_OVERHEAD_BYTES;
}

/** Appends encoded entries to a growable buffer. */
class EntryBuffer {
  buf = Buffer.allocUnsafe(64 * 1024);
  len = 0;

  reserve(bytes: number): void {
    if (this.len + bytes <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + bytes));
    this.buf.copy(bigger, 0, 0, this.len);
    this.buf = bigger;
  }

  /** After a flush: drop a buffer a huge record grew, keep the usual one. */
  clear(): void {
    this.len = 0;
    if (this.buf.length > 4 * STAGE_FLUSH_BYTES) this.buf = Buffer.allocUnsafe(64 * 1024);
  }
}

/** Counts of the entries of a whole segment file, read at start-up. */
function scanSegment(file: string, size: number, startOff: number): { records: number; before: number; recordsEnd: number; size: number } {
  const out = { records: 0, before: 0, recordsEnd: 0, size };
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return { records: 0, before: 0, recordsEnd: 0, size: 0 };
  }
  out.size = buf.length;
  let pos = SEGMENT_HEADER_BYTES;
  while (pos + ENTRY_HEADER_BYTES <= buf.length) {
    const h = readHeader(buf, pos);
    if (h.ok && pos + ENTRY_HEADER_BYTES + h.bodyLength <= buf.length && checksumOk(buf, pos, h.bodyLength)) {
      const next = pos + ENTRY_HEADER_BYTES + h.bodyLength;
      if (holdsRecord(buf[pos + ENTRY_HEADER_BYTES])) {
        out.records++;
        if (pos < startOff) out.before++;
        out.recordsEnd = next;
      }
      pos = next;
      continue;
    }
    const at = buf.indexOf(MAGIC_BYTES, pos + 1);
    if (at < 0) break;
    pos = at;
  }
  return out;
}

/** The SEAL entry at the end of a finished segment, if it is there and intact. */
function readSeal(file: string, size: number): number | undefined {
  if (size < SEGMENT_HEADER_BYTES + SEAL_ENTRY_BYTES) return undefined;
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const buf = Buffer.alloc(SEAL_ENTRY_BYTES);
    if (fs.readSync(fd, buf, 0, SEAL_ENTRY_BYTES, size - SEAL_ENTRY_BYTES) !== SEAL_ENTRY_BYTES) return undefined;
    const h = readHeader(buf, 0);
    if (!h.ok || h.bodyLength !== 5 || !checksumOk(buf, 0, 5)) return undefined;
    const parsed = parseBody(buf, 0, 5);
    return parsed.type === EntryType.Seal ? parsed.records : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

export class Spool {
  private readonly dir: string;
  private readonly maxBytes: number;
  private readonly segmentBytes: number;
  private readonly syncBytes: number;
  private readonly syncIntervalMs: number;
  private readonly io: SpoolIo;
  private readonly logger: Logger;
  private readonly checkpointFile: CheckpointFile;
  /** Ascending ids; dropped segments are removed from the list. */
  private segments: Segment[] = [];
  private writer: Writer | undefined;
  private readonly staged = new EntryBuffer();
  private stagedRecords = 0;
  /** Of stagedRecords, the held ones (see the module comment). */
  private stagedHeld = 0;
  private flushImmediate: NodeJS.Immediate | undefined;
  private flushMicrotask = false;
  /** Just past the last held record: the reader starts there at the latest. */
  private skipTo: Position | undefined;
  private lastUnprotectedLog = 0;
  private unsynced = 0;
  private syncTimer: NodeJS.Timeout | undefined;
  private syncQueued = false;
  /** fdatasync and close of segment files, in order. */
  private fdChain: Promise<void> = Promise.resolve();
  private cursor: Cursor | undefined;
  /** Id of the segment the reader is in or last finished. */
  private lastReadSeg = -1;
  private reading = false;
  private checkpoint: Checkpoint;
  private nextId: number;
  private totalBytes = 0;
  private dirReady = false;
  private closed = false;
  private warnedCheckpoint = false;

  constructor(private readonly options: SpoolOptions) {
    this.dir = options.dir;
    this.maxBytes = options.maxBytes;
    this.segmentBytes = options.segmentBytes ?? Math.min(16 * 1024 * 1024, Math.max(4096, Math.floor(options.maxBytes / 16)));
    this.syncBytes = options.syncBytes ?? 1024 * 1024;
    this.syncIntervalMs = options.syncIntervalMs ?? 250;
    this.io = options.io ?? nodeSpoolIo;
    this.logger = options.logger;
    this.checkpointFile = new CheckpointFile(path.join(this.dir, CHECKPOINT_FILE));
    // Ids of a new spool start from the clock (in µs), so files of an earlier spool in the same
    // directory whose deletion is still under way can never share a name with new ones.
    this.nextId = Date.now() * 1000;
    this.checkpoint = { pos: { seg: this.nextId, off: SEGMENT_HEADER_BYTES } };
    this.open();
  }

  /** Bytes of the spool's segment files (and of records about to be written). */
  get bytes(): number {
    return this.totalBytes;
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  get directory(): string {
    return this.dir;
  }

  /** True when a record is waiting to be read (never after close or abandon: nothing can be read then). */
  hasUnread(): boolean {
    if (this.closed) return false;
    return this.stagedRecords > this.stagedHeld || this.segments.some((s) => s.records > s.consumed);
  }

  /** True when no record after the acknowledged point is stored (nothing to deliver after a restart). */
  isEmpty(): boolean {
    if (this.stagedRecords > 0) return false;
    const cp = this.checkpoint;
    return this.segments.every((s) => {
      if (s.records === 0 || s.id < cp.pos.seg) return true;
      const from = s.id === cp.pos.seg ? cp.pos.off : s.id === cp.resume?.seg ? cp.resume.off : SEGMENT_HEADER_BYTES;
      return s.recordsEnd <= from;
    });
  }

  // ---- start-up ------------------------------------------------------------------------------------

  private open(): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return; // no spool yet
    }
    const ids = names.map((n) => SEGMENT_NAME.exec(n)?.[1]).filter((x): x is string => x !== undefined).map(Number).sort((a, b) => a - b);
    const cp = this.checkpointFile.read() ?? { pos: { seg: ids[0] ?? this.nextId, off: SEGMENT_HEADER_BYTES } };
    this.checkpoint = cp;
    for (const id of ids) {
      const file = path.join(this.dir, segmentName(id));
      if (id < cp.pos.seg) {
        fs.rmSync(file, { force: true });
        continue;
      }
      const size = fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0;
      const startOff = id === cp.pos.seg ? cp.pos.off : id === cp.resume?.seg ? cp.resume.off : SEGMENT_HEADER_BYTES;
      const seal = startOff <= SEGMENT_HEADER_BYTES ? readSeal(file, size) : undefined;
      const counts = seal !== undefined
        ? { records: seal, before: 0, recordsEnd: size - SEAL_ENTRY_BYTES, size }
        : scanSegment(file, size, startOff);
      this.segments.push({
        id, size: counts.size, records: counts.records, consumed: counts.before, recordsEnd: counts.recordsEnd, startOff, dropped: false,
      });
      this.totalBytes += counts.size;
    }
    this.nextId = Math.max(this.nextId, cp.pos.seg + 1, (ids[ids.length - 1] ?? 0) + 1);
    this.dirReady = true;
    if (this.isEmpty()) {
      this.removeAll();
    } else {
      this.logger.info({ dir: this.dir, segments: this.segments.length, bytes: this.totalBytes }, 'spool holds records from before the restart; delivering them first');
    }
  }

  // ---- append --------------------------------------------------------------------------------------

  /**
   * Stores a record — a LogRecord, or its sink's encoding of it as bytes (an ENCODED entry, no
   * container metadata needed) — at the end of the spool. Synchronous; never throws; what cannot be
   * stored is reported through onDrop. `held`: the caller keeps the record and delivers it itself (see the
   * module comment); returns the position just past it, to acknowledge once it is delivered
   * (undefined when it could not be stored).
   */
  append(item: SpoolItem, held = false): Position | undefined {
    if (this.closed) {
      this.lose('spool-error', 1, held ? 1 : 0);
      return undefined;
    }
    const record = item instanceof Uint8Array ? undefined : item;
    const entryBytes = item instanceof Uint8Array ? encodedEntryBytes(item.length) : recordEntryBytes(item);
    if (entryBytes + SEGMENT_HEADER_BYTES + SEAL_ENTRY_BYTES > this.maxBytes) {
      this.lose('spool-full', 1, held ? 1 : 0); // larger than the whole spool
      return undefined;
    }
    let w: Writer | undefined;
    let json: string | undefined;
    for (;;) {
      w = this.writerFor(entryBytes, held);
      if (w === undefined) return undefined;
      json = record === undefined || w.metaByObject.has(record.container) ? undefined : metaJson(record.container);
      const needed = entryBytes + (json !== undefined ? metaEntryBytes(Buffer.from(json)) : 0);
      // Room also for this segment's SEAL and the next one's header, so rolling never passes the bound.
      if (this.totalBytes + needed + SEAL_ENTRY_BYTES + SEGMENT_HEADER_BYTES <= this.maxBytes) break;
      if (!this.dropOldest('spool-full', true)) {
        this.lose('spool-full', 1, held ? 1 : 0);
        return undefined;
      }
    }
    if (record === undefined) {
      this.staged.reserve(entryBytes);
      this.staged.len += encodeEncoded(this.staged.buf, this.staged.len, item as Uint8Array);
    } else {
      this.stageRecord(w, record, json, entryBytes);
    }
    this.stagedRecords++;
    this.totalBytes += entryBytes;
    // The file is written at seg.size, staged bytes in order: this record ends here.
    const end: Position = { seg: w.seg.id, off: w.seg.size + this.staged.len };
    if (held) {
      this.stagedHeld++;
      this.skipTo = end;
    }
    if (this.staged.len >= STAGE_FLUSH_BYTES) this.flush();
    else if (this.options.flushPerTask === true) {
      if (!this.flushMicrotask) {
        this.flushMicrotask = true;
        queueMicrotask(() => {
          if (!this.flushMicrotask) return; // flushed meanwhile
          this.flushMicrotask = false;
          this.flush();
        });
      }
    } else this.flushImmediate ??= setImmediate(() => this.flush());
    return end;
  }

  /** Stages a RECORD entry (and, first, the META entry of its container if this segment has none yet). */
  private stageRecord(w: Writer, record: LogRecord, json: string | undefined, entryBytes: number): void {
    let metaIndex = w.metaByObject.get(record.container);
    if (metaIndex === undefined) {
      const text = json ?? metaJson(record.container);
      metaIndex = w.metaByJson.get(text);
      if (metaIndex === undefined) {
        metaIndex = w.nextMeta++;
        const bytes = Buffer.from(text);
        this.staged.reserve(metaEntryBytes(bytes));
        const n = encodeMeta(this.staged.buf, this.staged.len, metaIndex, bytes);
        this.staged.len += n;
        this.totalBytes += n;
        w.metaByJson.set(text, metaIndex);
        w.seg.metas?.set(metaIndex, record.container);
      }
      w.metaByObject.set(record.container, metaIndex);
    }
    this.staged.reserve(entryBytes);
    this.staged.len += encodeRecord(this.staged.buf, this.staged.len, record, metaIndex);
  }

  /** `count` records could not be stored: dropped (onDrop), but for the `heldCount` held ones only logged — the caller still has them. */
  private lose(reason: SpoolDropReason, count: number, heldCount: number): void {
    if (count > heldCount) this.options.onDrop(reason, count - heldCount);
    if (heldCount === 0) return;
    const now = Date.now();
    if (now - this.lastUnprotectedLog < 60_000) return;
    this.lastUnprotectedLog = now;
    this.logger.error({ dir: this.dir, reason, records: heldCount }, 'records could not be written through to the spool: they are delivered from memory, but a crash before that loses them (logged at most once a minute)');
  }

  /** Writes staged records to the file now (into the page cache; fdatasync follows in the background). */
  flush(): void {
    if (this.flushImmediate !== undefined) {
      clearImmediate(this.flushImmediate);
      this.flushImmediate = undefined;
    }
    this.flushMicrotask = false;
    const w = this.writer;
    if (this.staged.len === 0 || w === undefined) return;
    let err = this.tryWrite(w, this.staged.buf, this.staged.len);
    if (err !== undefined && isDiskFull(err) && this.dropOldest('disk-full', false)) err = this.tryWrite(w, this.staged.buf, this.staged.len);
    const bytes = this.staged.len;
    const records = this.stagedRecords;
    const held = this.stagedHeld;
    this.staged.clear();
    this.stagedRecords = 0;
    this.stagedHeld = 0;
    if (err !== undefined) {
      this.totalBytes -= bytes;
      // The lost bytes may have held META entries: every container is written again before its next record.
      w.metaByObject.clear();
      w.metaByJson.clear();
      if (records > held) this.logger.error({ dir: this.dir, err: (err as Error).message, records: records - held }, 'spool write failed; records dropped (counted)');
      this.lose(isDiskFull(err) ? 'disk-full' : 'spool-error', records, held);
      // Positions handed out for held records point into bytes that were not written: later records
      // must not take those offsets (acknowledging one would pass them), so they go to a new segment.
      if (held > 0) this.roll();
      return;
    }
    w.seg.size += bytes;
    if (records > 0) {
      w.seg.records += records;
      w.seg.consumed += held;
      w.seg.recordsEnd = w.seg.size;
    }
    this.unsynced += bytes;
    if (this.unsynced >= this.syncBytes) this.syncNow();
    else if (this.syncTimer === undefined) {
      this.syncTimer = setTimeout(() => this.syncNow(), this.syncIntervalMs);
      this.syncTimer.unref();
    }
  }

  /** Writes buf[0, len) at the end of the writer's segment; undefined on success, else the error (the file is cut back). */
  private tryWrite(w: Writer, buf: Buffer, len: number): unknown {
    let done = 0;
    try {
      while (done < len) {
        const n = this.io.writeSync(w.fd, buf, done, len - done, w.seg.size + done);
        if (n <= 0) throw Object.assign(new Error('write wrote nothing'), { code: 'EIO' });
        done += n;
      }
      return undefined;
    } catch (err) {
      // Bytes past seg.size are never read and the next write overwrites them; cutting them off is tidiness.
      try {
        fs.ftruncateSync(w.fd, w.seg.size);
      } catch {
        // harmless
      }
      return err;
    }
  }

  private writerFor(needed: number, held: boolean): Writer | undefined {
    const w = this.writer;
    if (w !== undefined && w.seg.size + this.staged.len + needed > this.segmentBytes && w.seg.records + this.stagedRecords > 0) this.roll();
    if (this.writer !== undefined) return this.writer;
    let err = this.openWriter();
    if (err !== undefined && isDiskFull(err) && this.dropOldest('disk-full', false)) err = this.openWriter();
    if (err !== undefined) {
      if (!held) this.logger.error({ dir: this.dir, err: (err as Error).message }, 'cannot create a spool segment; record dropped (counted)');
      this.lose(isDiskFull(err) ? 'disk-full' : 'spool-error', 1, held ? 1 : 0);
      return undefined;
    }
    return this.writer;
  }

  private ensureDir(): void {
    if (this.dirReady && (this.options.meta === undefined || fs.existsSync(path.join(this.dir, META_FILE)))) return;
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (this.options.meta !== undefined) writeMetaSync(this.dir, this.options.meta);
    this.dirReady = true;
  }

  private openWriter(): unknown {
    const id = this.nextId++;
    const file = path.join(this.dir, segmentName(id));
    let fd: number | undefined;
    try {
      this.ensureDir();
      fd = this.io.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
      const seg: Segment = { id, size: 0, records: 0, consumed: 0, recordsEnd: 0, startOff: SEGMENT_HEADER_BYTES, dropped: false, metas: new Map() };
      const w: Writer = { seg, fd, metaByObject: new Map(), metaByJson: new Map(), nextMeta: 0 };
      const err = this.tryWrite(w, SEGMENT_MAGIC, SEGMENT_HEADER_BYTES);
      if (err !== undefined) throw err;
      seg.size = SEGMENT_HEADER_BYTES;
      this.writer = w;
      this.segments.push(seg);
      this.totalBytes += SEGMENT_HEADER_BYTES;
      // The new file's directory entry, durable in the background like the data.
      const dir = this.dir;
      this.fdChain = this.fdChain.then(() => syncDirAsync(dir));
      return undefined;
    } catch (err) {
      if (fd !== undefined) fs.closeSync(fd);
      removeQuietly(file);
      return err;
    }
  }

  /** Finishes the segment being written: staged records out, SEAL, then fdatasync and close in the background. */
  private roll(): void {
    this.flush();
    const w = this.writer;
    if (w === undefined) return;
    this.writer = undefined;
    const seal = encodeSeal(w.seg.records);
    if (this.tryWrite(w, seal, seal.length) === undefined) {
      w.seg.size += seal.length;
      this.totalBytes += seal.length;
    }
    this.unsynced = 0;
    this.syncQueued = false;
    const fd = w.fd;
    this.fdChain = this.fdChain.then(() => this.datasync(fd)).then(() => closeFd(fd));
  }

  private syncNow(): void {
    if (this.syncTimer !== undefined) {
      clearTimeout(this.syncTimer);
      this.syncTimer = undefined;
    }
    const w = this.writer;
    if (w === undefined || this.unsynced === 0) return;
    this.unsynced = 0;
    if (this.syncQueued) return; // the queued one has not started: it covers these bytes too
    this.syncQueued = true;
    this.fdChain = this.fdChain.then(() => {
      this.syncQueued = false;
      return this.datasync(w.fd);
    });
  }

  private datasync(fd: number): Promise<void> {
    return new Promise((resolve) => {
      this.io.fdatasync(fd, (err) => {
        if (err !== null && err.code !== 'EBADF') this.logger.error({ dir: this.dir, err: err.message }, 'spool fdatasync failed');
        resolve();
      });
    });
  }

  /**
   * Deletes the oldest whole segment; its records not yet read are reported dropped with `reason`.
   * `rollWriter`: the segment being written may be finished first so it can go too. False when there
   * was nothing to delete.
   */
  private dropOldest(reason: SpoolDropReason, rollWriter: boolean): boolean {
    const seg = this.segments[0];
    if (seg === undefined) return false;
    if (this.writer?.seg === seg) {
      if (!rollWriter || seg.records + this.stagedRecords === 0) return false;
      this.roll();
    }
    this.segments.shift();
    seg.dropped = true;
    this.totalBytes -= seg.size;
    const lost = Math.max(0, seg.records - seg.consumed);
    try {
      fs.rmSync(path.join(this.dir, segmentName(seg.id)), { force: true });
    } catch (err) {
      this.logger.error({ dir: this.dir, err: (err as Error).message }, 'could not delete a spool segment');
    }
    if (lost > 0) this.options.onDrop(reason, lost);
    return true;
  }

  // ---- read ----------------------------------------------------------------------------------------

  /**
   * Gives `reader` the next records in order, from one segment: at most `maxRecords`, and at most
   * `maxBytes` of recordBytes() — except that the first record may be larger when `allowOversize`
   * (else 'no-room'). One read at a time.
   */
  async read(reader: SpoolReader, maxRecords: number, maxBytes: number, allowOversize: boolean): Promise<SpoolRead> {
    if (this.reading) throw new Error('Spool.read: a read is already running');
    this.reading = true;
    try {
      return await this.readLocked(reader, Math.max(1, maxRecords), maxBytes, allowOversize);
    } finally {
      this.reading = false;
    }
  }

  private async readLocked(reader: SpoolReader, maxRecords: number, maxBytes: number, allowOversize: boolean): Promise<SpoolRead> {
    this.flush();
    await this.skipHeld();
    for (;;) {
      if (this.closed) return { kind: 'empty' };
      let c = this.cursor;
      if (c !== undefined && c.seg.dropped) {
        await this.closeCursor();
        c = undefined;
      }
      if (c === undefined) {
        const next = this.segments.find((s) => s.id > this.lastReadSeg);
        if (next === undefined) return { kind: 'empty' };
        this.lastReadSeg = next.id;
        try {
          const fh = await fs.promises.open(path.join(this.dir, segmentName(next.id)), 'r');
          this.cursor = { seg: next, fh, buf: Buffer.allocUnsafe(READ_BLOCK), bufStart: 0, bufLen: 0, pos: SEGMENT_HEADER_BYTES, metas: new Map(), warned: false, skipBefore: 0 };
        } catch (err) {
          if (!next.dropped) {
            this.logger.error({ dir: this.dir, err: (err as Error).message }, 'cannot read a spool segment; its records are dropped (counted)');
            this.options.onDrop('spool-error', Math.max(0, next.records - next.consumed));
            next.consumed = next.records;
          }
        }
        continue;
      }
      let count = 0;
      let bytes = 0;
      let end = c.pos;
      let stop: 'full' | 'end' | 'caught-up' | 'no-room' = 'full';
      while (count < maxRecords) {
        // An entry already in the 1 MiB read buffer is taken synchronously; the async nextEntry()
        // (refills, the segment's end, damaged entries) only when it is not. Its promises for every
        // entry were ~40 % of the bytes the Elasticsearch sink allocated reading its overflow back.
        const e = this.entryInBuffer(c) ?? await this.nextEntry(c);
        if (c.seg.dropped) break;
        if (e === 'end' || e === 'caught-up') {
          stop = e;
          break;
        }
        const parsed = parseBody(c.buf, e.at - c.bufStart, e.bodyLength);
        const after = e.at + ENTRY_HEADER_BYTES + e.bodyLength;
        if (parsed.type === EntryType.Record || parsed.type === EntryType.Encoded) {
          if (e.at < c.seg.startOff || e.at < c.skipBefore) {
            c.pos = after; // acknowledged before the restart, or held (handed out when appended)
            continue;
          }
          const meta = parsed.type === EntryType.Record ? c.metas.get(parsed.metaIndex) : undefined;
          if (parsed.type === EntryType.Record && meta === undefined) {
            c.pos = after;
            c.seg.consumed++;
            this.options.onDrop('spool-corrupt', 1);
            continue;
          }
          const size = parsed.type === EntryType.Record ? recordBytesOfBody(e.bodyLength) : encodedBytesOfBody(e.bodyLength);
          if (count > 0 && bytes + size > maxBytes) break;
          if (count === 0 && size > maxBytes && !allowOversize) {
            stop = 'no-room';
            break;
          }
          if (parsed.type === EntryType.Record) reader.record(decodeRecord(c.buf, parsed.bodyStart, parsed.bodyEnd, meta as ContainerMeta));
          else reader.encoded(parsed.bytes());
          count++;
          bytes += size;
          c.pos = after;
          end = after;
        } else {
          if (parsed.type === EntryType.Meta) c.metas.set(parsed.metaIndex, parsed.meta);
          c.pos = after;
        }
      }
      if (c.seg.dropped) {
        reader.discard(); // its unread records were counted when it was dropped
        continue;
      }
      c.seg.consumed += count;
      if (stop === 'end' || stop === 'caught-up') {
        // Everything countable in it has been read; records that failed their checksum were counted.
        c.seg.consumed = Math.max(c.seg.consumed, c.seg.records);
      }
      if (stop === 'end') await this.closeCursor();
      if (count > 0) return { kind: 'batch', batch: { count, bytes, end: { seg: c.seg.id, off: end } } };
      if (stop === 'no-room') return { kind: 'no-room' };
      if (stop === 'caught-up') return { kind: 'empty' };
    }
  }

  /**
   * Moves the reader past the last held record: what was appended held is the caller's to deliver.
   * Held records are only appended while the reader has nothing left before them (the runner holds
   * records in memory only once the spool is read to its end), so everything between the reader and
   * that point is held, and skipping it loses nothing.
   */
  private async skipHeld(): Promise<void> {
    const to = this.skipTo;
    if (to === undefined) return;
    this.skipTo = undefined;
    const c = this.cursor;
    if (c !== undefined && c.seg.id === to.seg) {
      if (c.pos >= to.off) return;
      if (c.seg.metas !== undefined) {
        for (const [index, meta] of c.seg.metas) c.metas.set(index, meta);
        c.pos = to.off;
      } else {
        c.skipBefore = to.off;
      }
      return;
    }
    if (c !== undefined ? c.seg.id > to.seg : this.lastReadSeg >= to.seg) return;
    await this.closeCursor();
    this.lastReadSeg = to.seg;
    const seg = this.segments.find((s) => s.id === to.seg);
    if (seg === undefined || seg.dropped) return;
    try {
      const fh = await fs.promises.open(path.join(this.dir, segmentName(seg.id)), 'r');
      const known = seg.metas !== undefined;
      this.cursor = {
        seg, fh, buf: Buffer.allocUnsafe(READ_BLOCK), bufStart: 0, bufLen: 0, pos: known ? to.off : SEGMENT_HEADER_BYTES,
        metas: new Map(seg.metas ?? []), warned: false, skipBefore: known ? 0 : to.off,
      };
    } catch (err) {
      // Its held records were never the reader's; any after them are lost, as for any unreadable segment.
      this.logger.error({ dir: this.dir, err: (err as Error).message }, 'cannot read a spool segment; its records are dropped (counted)');
      const lost = Math.max(0, seg.records - seg.consumed);
      seg.consumed = seg.records;
      if (lost > 0) this.options.onDrop('spool-error', lost);
    }
  }

  private async closeCursor(): Promise<void> {
    const c = this.cursor;
    this.cursor = undefined;
    if (c !== undefined) await c.fh.close().catch(() => undefined);
  }

  /** The intact entry at c.pos when all of it is in c.buf already (undefined: ask nextEntry()). */
  private entryInBuffer(c: Cursor): { at: number; bodyLength: number } | undefined {
    const at = c.pos;
    const bufEnd = c.bufStart + c.bufLen;
    if (at < c.bufStart || at + ENTRY_HEADER_BYTES > bufEnd || at + ENTRY_HEADER_BYTES > c.seg.size) return undefined;
    const h = readHeader(c.buf, at - c.bufStart);
    if (!h.ok) return undefined;
    const entryEnd = at + ENTRY_HEADER_BYTES + h.bodyLength;
    if (entryEnd > bufEnd || entryEnd > c.seg.size || !checksumOk(c.buf, at - c.bufStart, h.bodyLength)) return undefined;
    return { at, bodyLength: h.bodyLength };
  }

  /** Next intact entry at or after the cursor (skipping damage, which is counted), or where reading stops. */
  private async nextEntry(c: Cursor): Promise<{ at: number; bodyLength: number } | 'end' | 'caught-up'> {
    const writing = this.writer?.seg === c.seg;
    const end = c.seg.size;
    if (c.pos >= end) return writing ? 'caught-up' : 'end';
    if (end - c.pos >= ENTRY_HEADER_BYTES && await this.fill(c, c.pos, ENTRY_HEADER_BYTES)) {
      const h = readHeader(c.buf, c.pos - c.bufStart);
      if (h.ok && c.pos + ENTRY_HEADER_BYTES + h.bodyLength <= end
        && await this.fill(c, c.pos, ENTRY_HEADER_BYTES + h.bodyLength)
        && checksumOk(c.buf, c.pos - c.bufStart, h.bodyLength)) {
        return { at: c.pos, bodyLength: h.bodyLength };
      }
    }
    if (c.seg.dropped) return 'end';
    c.seg.consumed++; // most likely a record; counted here, not again if the segment is dropped
    this.options.onDrop('spool-corrupt', 1);
    if (!c.warned) {
      c.warned = true;
      this.logger.warn({ dir: this.dir, segment: c.seg.id, offset: c.pos }, 'damaged spool entry skipped (counted as dropped: spool-corrupt; further ones in this segment are only counted)');
    }
    c.pos = await this.resync(c, c.pos + 1, end);
    return this.nextEntry(c);
  }

  /** Offset of the first intact entry at or after `from`, or `end`. */
  private async resync(c: Cursor, from: number, end: number): Promise<number> {
    let p = from;
    while (p + ENTRY_HEADER_BYTES <= end) {
      if (!await this.fill(c, p, Math.min(READ_BLOCK, end - p))) return end;
      const window = c.buf.subarray(0, c.bufLen);
      const found = window.indexOf(MAGIC_BYTES, p - c.bufStart);
      if (found < 0) {
        if (c.bufStart + c.bufLen >= end) return end;
        p = c.bufStart + c.bufLen - (MAGIC_BYTES.length - 1);
        continue;
      }
      const at = c.bufStart + found;
      if (at + ENTRY_HEADER_BYTES > end) return end;
      if (await this.fill(c, at, ENTRY_HEADER_BYTES)) {
        const h = readHeader(c.buf, at - c.bufStart);
        if (h.ok && at + ENTRY_HEADER_BYTES + h.bodyLength <= end
          && await this.fill(c, at, ENTRY_HEADER_BYTES + h.bodyLength)
          && checksumOk(c.buf, at - c.bufStart, h.bodyLength)) return at;
      }
      p = at + 1;
    }
    return end;
  }

  /** Makes the file's bytes [at, at + len) available in c.buf. Never reads past the segment's written size. */
  private async fill(c: Cursor, at: number, len: number): Promise<boolean> {
    if (at >= c.bufStart && at + len <= c.bufStart + c.bufLen) return true;
    const want = Math.max(len, Math.min(READ_BLOCK, c.seg.size - at));
    if (want > c.buf.length || (c.buf.length > 4 * READ_BLOCK && want <= READ_BLOCK)) c.buf = Buffer.allocUnsafe(Math.max(want, READ_BLOCK));
    let got = 0;
    try {
      while (got < want) {
        const { bytesRead } = await c.fh.read(c.buf, got, want - got, at + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } catch (err) {
      this.logger.error({ dir: this.dir, err: (err as Error).message }, 'spool read failed');
    }
    c.bufStart = at;
    c.bufLen = got;
    return got >= len;
  }

  // ---- acknowledgement -------------------------------------------------------------------------------

  /** Everything before `pos` was delivered: move the checkpoint there and delete whole segments behind it. */
  ack(pos: Position): void {
    if (this.closed || comparePositions(pos, this.checkpoint.pos) <= 0) return;
    const resume = this.checkpoint.resume;
    this.checkpoint = resume !== undefined && pos.seg < resume.seg ? { pos, resume } : { pos };
    this.writeCheckpoint();
    while (true) {
      const s = this.segments[0];
      if (s === undefined || s.id >= pos.seg || s === this.writer?.seg || s === this.cursor?.seg) break;
      this.segments.shift();
      s.dropped = true;
      this.totalBytes -= s.size;
      void fs.promises.rm(path.join(this.dir, segmentName(s.id)), { force: true }).catch(() => undefined);
    }
  }

  private writeCheckpoint(): void {
    try {
      this.checkpointFile.write(this.checkpoint);
    } catch (err) {
      if (!this.warnedCheckpoint) {
        this.warnedCheckpoint = true;
        this.logger.warn({ dir: this.dir, err: (err as Error).message }, 'cannot write the spool checkpoint; after a restart more records will be sent again (same ids)');
      }
    }
  }

  /**
   * Everything spooled was delivered: delete the segments (the directory stays, with a checkpoint past
   * them, so that files whose deletion a crash interrupts are known to be done).
   */
  reset(): void {
    if (this.closed) return;
    this.flush();
    if (this.stagedRecords > 0 || this.hasUnread()) return;
    this.clearTimers();
    const w = this.writer;
    this.writer = undefined;
    if (w !== undefined) this.fdChain = this.fdChain.then(() => closeFd(w.fd));
    void this.closeCursor();
    for (const s of this.segments) {
      s.dropped = true;
      fs.rmSync(path.join(this.dir, segmentName(s.id)), { force: true });
    }
    this.segments = [];
    this.totalBytes = 0;
    this.unsynced = 0;
    this.checkpoint = { pos: { seg: this.nextId, off: SEGMENT_HEADER_BYTES } };
    this.lastReadSeg = this.nextId - 1;
    this.skipTo = undefined;
    if (this.dirReady) this.writeCheckpoint();
  }

  // ---- stop ----------------------------------------------------------------------------------------

  /**
   * At a graceful stop: stores records that are older than everything not yet acknowledged in the
   * spool (the runner's memory), so that they are delivered first after the restart: in a segment
   * placed before the acknowledged point, which then moves to its start (the old point becomes the
   * checkpoint's `resume`). With nothing unacknowledged in the spool this is a plain append.
   * Returns how many records were handed to the disk (failures are reported through onDrop).
   */
  storeBefore(records: readonly SpoolItem[]): number {
    if (records.length === 0 || this.closed) return 0;
    this.flush();
    if (this.isEmpty() || this.checkpoint.resume !== undefined) {
      if (!this.isEmpty()) this.logger.warn({ dir: this.dir, records: records.length }, 'records from memory appended after the spooled ones (a second stop before the first backlog was delivered): their order is not kept');
      for (const r of records) this.append(r);
      this.flush();
      return records.length;
    }
    const id = Math.min(this.segments[0]?.id ?? this.checkpoint.pos.seg, this.checkpoint.pos.seg) - 1;
    const file = path.join(this.dir, segmentName(id));
    const out = new EntryBuffer();
    out.reserve(SEGMENT_HEADER_BYTES);
    SEGMENT_MAGIC.copy(out.buf, 0);
    out.len = SEGMENT_HEADER_BYTES;
    const metas = new Map<ContainerMeta, number>();
    let recordsEnd = 0;
    for (const r of records) {
      if (r instanceof Uint8Array) {
        out.reserve(encodedEntryBytes(r.length));
        out.len += encodeEncoded(out.buf, out.len, r);
        recordsEnd = out.len;
        continue;
      }
      let idx = metas.get(r.container);
      if (idx === undefined) {
        idx = metas.size;
        metas.set(r.container, idx);
        const json = Buffer.from(metaJson(r.container));
        out.reserve(metaEntryBytes(json));
        out.len += encodeMeta(out.buf, out.len, idx, json);
      }
      out.reserve(recordEntryBytes(r));
      out.len += encodeRecord(out.buf, out.len, r, idx);
      recordsEnd = out.len;
    }
    const seal = encodeSeal(records.length);
    out.reserve(seal.length);
    out.len += seal.copy(out.buf, out.len);
    let fd: number | undefined;
    try {
      this.ensureDir();
      fd = this.io.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
      let done = 0;
      while (done < out.len) {
        const n = this.io.writeSync(fd, out.buf, done, out.len - done, done);
        if (n <= 0) throw Object.assign(new Error('write wrote nothing'), { code: 'EIO' });
        done += n;
      }
      fs.fdatasyncSync(fd);
    } catch (err) {
      removeQuietly(file);
      this.logger.error({ dir: this.dir, err: (err as Error).message, records: records.length }, 'could not spool the records held in memory at shutdown; dropped (counted)');
      this.options.onDrop(isDiskFull(err) ? 'disk-full' : 'spool-error', records.length);
      return 0;
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
    const old = this.checkpoint.pos;
    const oldSeg = this.segments.find((s) => s.id === old.seg);
    this.segments.unshift({ id, size: out.len, records: records.length, consumed: 0, recordsEnd, startOff: SEGMENT_HEADER_BYTES, dropped: false });
    this.totalBytes += out.len;
    const resume = oldSeg !== undefined && old.off > SEGMENT_HEADER_BYTES ? old : undefined;
    this.checkpoint = resume !== undefined ? { pos: { seg: id, off: SEGMENT_HEADER_BYTES }, resume } : { pos: { seg: id, off: SEGMENT_HEADER_BYTES } };
    this.writeCheckpoint();
    return records.length;
  }

  /**
   * Finishes: staged records written, the segment sealed, everything fdatasynced, the checkpoint
   * synced. With nothing left to deliver, the directory is removed.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.roll();
    this.clearTimers();
    this.closed = true;
    await this.closeCursor();
    await this.fdChain;
    if (this.isEmpty()) {
      this.removeAll();
      return;
    }
    try {
      this.checkpointFile.write(this.checkpoint);
      this.checkpointFile.sync();
      syncDir(this.dir);
    } catch (err) {
      this.logger.warn({ dir: this.dir, err: (err as Error).message }, 'cannot sync the spool checkpoint');
    }
    this.checkpointFile.close();
  }

  /** Closes at once when nothing is left to deliver: removes the directory synchronously. */
  discardIfEmpty(): boolean {
    if (this.closed) return true;
    this.flush();
    if (!this.isEmpty()) return false;
    this.clearTimers();
    this.closed = true;
    const w = this.writer;
    this.writer = undefined;
    if (w !== undefined) this.fdChain = this.fdChain.then(() => closeFd(w.fd));
    void this.closeCursor();
    this.removeAll();
    return true;
  }

  /**
   * Drops the object as a crash would: no flush of what is staged, no seal, no sync. Files stay as
   * they are. For tests of crash recovery.
   */
  abandon(): void {
    this.clearTimers();
    this.closed = true;
    this.staged.clear();
    this.stagedRecords = 0;
    this.stagedHeld = 0;
    this.checkpointFile.close();
    const w = this.writer;
    this.writer = undefined;
    if (w !== undefined) this.fdChain = this.fdChain.then(() => closeFd(w.fd));
    void this.closeCursor();
  }

  private removeAll(): void {
    this.checkpointFile.close();
    for (const s of this.segments) s.dropped = true;
    this.segments = [];
    this.totalBytes = 0;
    try {
      fs.rmSync(this.dir, { recursive: true, force: true });
    } catch (err) {
      this.logger.warn({ dir: this.dir, err: (err as Error).message }, 'could not remove an empty spool directory');
    }
    this.dirReady = false;
  }

  private clearTimers(): void {
    if (this.flushImmediate !== undefined) clearImmediate(this.flushImmediate);
    this.flushImmediate = undefined;
    this.flushMicrotask = false;
    if (this.syncTimer !== undefined) clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
  }
}

function removeQuietly(file: string): void {
  try {
    fs.rmSync(file, { force: true });
  } catch {
    // nothing there to remove
  }
}

/** Makes the directory's entries (new segment files) durable. */
function syncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

async function syncDirAsync(dir: string): Promise<void> {
  try {
    const fh = await fs.promises.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // the directory went away (spool delivered and removed): nothing to make durable
  }
}

function closeFd(fd: number): Promise<void> {
  return new Promise((resolve) => fs.close(fd, () => resolve()));
}
