/**
 * One FIFO handed over by StartLogging, read until EOF: frames → LogEntry → local store (as received)
 * and → partial reassembly → records → every sink runner of the container. The reader never waits:
 * store writes are one synchronous write per FIFO chunk, and sink runners only queue.
 */
import type net from 'node:net';
import type { Logger } from 'pino';
import type { ContainerMeta, LogRecord } from '../sinks/sink.js';
import { type DecodedEntry, decodeEntryAt, type LogSource } from './entry.js';
import { crashPoint } from './crash-point.js';
import { openFifo } from './fifo.js';
import type { PipeSizeResult } from './pipe-size.js';
import { FrameSplitter, type FrameSink } from './framing.js';
import type { PendingBytesLog } from './journal.js';
import { type AssembledLine, PartialReassembler, type ReassemblyLimits } from './pipeline/partials.js';
import type { SinkRunner } from './sink-runner.js';
import type { ContainerLogWriter } from './store/store.js';

export interface LogStreamStats {
  bytes: number;
  entries: number;
  records: number;
  skipped: { corrupt: number; oversize: number; badSource: number; truncatedAtEof: number; resyncBytes: number };
}

/** How a stream picks up a FIFO another shiplog process was reading (see journal.ts). */
export type ResumeFrom =
  /**
   * The bytes the earlier process had read and not finished (its pending file): processed first.
   * `cutShort` (only in a pending file an older version left): a kill stopped the write of a chunk
   * to that file, so its rest is lost: after the whole frames the stream resyncs.
   */
  | { readonly carry: Buffer; readonly cutShort?: boolean }
  /** Nothing exact was left: the next bytes may begin inside a frame. */
  | { readonly resync: true };

export type StreamEnd = 'eof' | 'error' | 'shutdown';

export interface LogStreamParts {
  readonly file: string;
  readonly container: ContainerMeta;
  readonly store: ContainerLogWriter;
  readonly runners: readonly SinkRunner[];
  readonly reassembly: ReassemblyLimits;
  readonly logger: Logger;
  readonly resume?: ResumeFrom;
  /** Where the bytes read and not yet processed are kept (journal.ts PendingBytes). */
  readonly pending?: PendingBytesLog;
  /** The FIFO's kernel buffer to ask for (setting pipe-size); 0 or absent: the kernel's default. */
  readonly pipeBytes?: number;
}

export class LogStream implements FrameSink {
  readonly stats: LogStreamStats = { bytes: 0, entries: 0, records: 0, skipped: { corrupt: 0, oversize: 0, badSource: 0, truncatedAtEof: 0, resyncBytes: 0 } };
  /** StopLogging arrived: EOF is expected soon. */
  stopping = false;
  /** How the FIFO's buffer resize went, once open (undefined: none was asked for). */
  pipe: PipeSizeResult | undefined;
  /** Resolves once the stream has ended and everything it read is in the store and handed to sinks. */
  readonly ended: Promise<StreamEnd>;
  private resolveEnded!: (why: StreamEnd) => void;
  private socket: net.Socket | undefined;
  private readonly splitter = new FrameSplitter(this);
  private readonly reassembler: PartialReassembler;
  private finished = false;
  private warnedCorrupt = false;
  /** The pending file is updated once per event-loop turn, after the sinks secured the records (secure()). */
  private pendingUpdate: NodeJS.Immediate | undefined;
  /** Per source: the time_nano of the last record and how many records shared it (idempotent ids). */
  private readonly lastTime = { stdout: { low: -1, high: -1, seq: 0 }, stderr: { low: -1, high: -1, seq: 0 } };

  constructor(private readonly parts: LogStreamParts) {
    this.ended = new Promise((resolve) => { this.resolveEnded = resolve; });
    this.reassembler = new PartialReassembler(parts.reassembly, (line) => this.emit(line));
    const resume = parts.resume;
    if (resume !== undefined && !('carry' in resume)) this.splitter.startResync();
  }

  get file(): string {
    return this.parts.file;
  }

  get container(): ContainerMeta {
    return this.parts.container;
  }

  async open(): Promise<void> {
    const resume = this.parts.resume;
    // Already in the pending file (it was opened with them): processed, not appended again.
    if (resume !== undefined && 'carry' in resume) {
      this.process(resume.carry, true);
      // The FIFO's next bytes continue these unless a crash lost a read in between: checked first.
      if (resume.cutShort === true) this.splitter.abandonPartialFrame();
      else this.splitter.expectJoin();
    }
    const { socket, initial, writerGone, pipe } = await openFifo(this.parts.file, this.parts.pipeBytes ?? 0, (chunk) => this.onChunk(chunk));
    this.pipe = pipe;
    if (initial !== undefined) this.onChunk(initial);
    if (socket === undefined || writerGone) {
      // Ends on the next tick, once the caller has registered the stream.
      setImmediate(() => this.finish('eof'));
      return;
    }
    this.socket = socket;
    socket.on('end', () => this.finish('eof'));
    socket.on('error', (err) => {
      this.parts.logger.error({ err, file: this.parts.file }, 'FIFO read failed; ending the stream');
      this.finish('error');
    });
  }

  /** Stop reading now (shutdown). What was read is processed; unread bytes stay in the pipe for the next reader. */
  close(): void {
    this.socket?.pause();
    this.finish('shutdown');
  }

  onFrame(buf: Buffer, start: number, end: number): void {
    const messageStart = start + 4;
    let entry: DecodedEntry;
    try {
      entry = decodeEntryAt(buf, messageStart, end);
    } catch (err) {
      this.stats.skipped.corrupt++;
      // A frame that does not decode probably had a wrong length: the next real frame may start inside it.
      this.splitter.resyncWithin(buf.subarray(messageStart, end));
      if (!this.warnedCorrupt) {
        this.warnedCorrupt = true;
        this.parts.logger.warn({ container: this.parts.container.id, bytes: end - messageStart, err: (err as Error).message }, 'corrupt frame skipped (further ones on this stream are only counted)');
      }
      return;
    }
    this.stats.entries++;
    this.parts.store.add(buf, messageStart, end, entry.timeNano);
    this.reassembler.push(entry);
  }

  onResyncSkipped(bytes: number): void {
    this.stats.skipped.resyncBytes += bytes;
    this.parts.logger.warn({ container: this.parts.container.id, bytes }, 're-attached after a crash inside a frame: skipped to the next frame start (that entry is lost)');
  }

  onOversize(declaredLength: number): void {
    this.stats.skipped.oversize++;
    if (!this.warnedCorrupt) {
      this.warnedCorrupt = true;
      this.parts.logger.warn({ container: this.parts.container.id, declaredLength }, 'frame longer than any dockerd entry skipped (further ones on this stream are only counted)');
    }
  }

  /** Returns how many entries the chunk held (the FIFO's read size follows it). */
  private onChunk(chunk: Buffer): number {
    const entriesBefore = this.stats.entries;
    this.stats.bytes += chunk.length;
    this.parts.pending?.append(chunk);
    crashPoint('after-append');
    this.process(chunk);
    return this.stats.entries - entriesBefore;
  }

  /** `replay`: the pending bytes of a killed process, which may have stored some of their entries already. */
  private process(chunk: Buffer, replay = false): void {
    this.splitter.push(chunk);
    if (replay) {
      const dropped = this.parts.store.dropStoredPrefix();
      if (dropped > 0) this.parts.logger.info({ container: this.parts.container.id, entries: dropped }, 're-attached: entries of the unfinished chunk were already in the store (not stored twice; sinks get them again)');
    }
    this.parts.store.flush();
    crashPoint('after-store');
    const pending = this.parts.pending;
    if (pending === undefined || this.pendingUpdate !== undefined) return;
    // On the next turn: the batches the chunk's records went into were sealed at the end of this
    // task, and a sink that writes synchronously (the file sink) has acknowledged them by then, so
    // secure() only writes to the spool what is still waiting. Chunks read meanwhile join this update.
    this.pendingUpdate = setImmediate(() => {
      this.pendingUpdate = undefined;
      if (this.finished) return;
      for (const runner of this.parts.runners) runner.secure();
      pending.processed(this.splitter.carry());
    });
  }

  private emit(line: AssembledLine): void {
    const source = line.source;
    if (source !== 'stdout' && source !== 'stderr') {
      this.stats.skipped.badSource++;
      return;
    }
    const last = this.lastTime[source];
    if (last.low === line.timeNano.low && last.high === line.timeNano.high) {
      last.seq++;
    } else {
      last.low = line.timeNano.low;
      last.high = line.timeNano.high;
      last.seq = 0;
    }
    const record: LogRecord = {
      container: this.parts.container,
      source: source satisfies LogSource,
      timeNano: line.timeNano,
      line: line.line,
      truncated: line.truncated,
      seq: last.seq,
    };
    this.stats.records++;
    for (const runner of this.parts.runners) runner.push(record);
  }

  private finish(why: StreamEnd): void {
    if (this.finished) return;
    this.finished = true;
    if (why !== 'shutdown') this.splitter.endOfStream();
    if (why !== 'shutdown' && !this.splitter.atBoundary) {
      this.stats.skipped.truncatedAtEof++;
      this.parts.logger.warn({ container: this.parts.container.id, bytes: this.splitter.bufferedBytes, why }, 'stream ended inside a frame; the partial frame is dropped');
    }
    this.reassembler.flushAll();
    this.parts.store.flush();
    this.socket?.destroy();
    if (this.pendingUpdate !== undefined) clearImmediate(this.pendingUpdate);
    this.pendingUpdate = undefined;
    for (const runner of this.parts.runners) runner.flush(); // sends the open batches and secures every record
    // A stop keeps the unfinished frame for the next reader; an EOF leaves nothing to keep.
    this.parts.pending?.processed(why === 'shutdown' ? this.splitter.carry() : Buffer.alloc(0));
    this.parts.pending?.close();
    this.parts.logger.debug({ container: this.parts.container.id, file: this.parts.file, why, ...this.stats }, 'stream ended');
    this.resolveEnded(why);
  }
}
