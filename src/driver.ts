/**
 * The logging driver behind the plugin API: the set of live streams keyed by FIFO path (one container
 * has many streams over its life, and they can overlap briefly), StartLogging / StopLogging /
 * ReadLogs, and shutdown. Knows nothing of HTTP.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { type ContainerInfo, normalizeInfo } from './container-info.js';
import type { PendingBytes, StreamJournal } from './journal.js';
import { LogStream, type LogStreamStats, type ResumeFrom, type StreamEnd } from './log-stream.js';
import { OptionError } from './option-table.js';
import { parseContainerOptions } from './options.js';
import type { PipeSizeResult } from './pipe-size.js';
import { buildContainerMeta } from './pipeline/metadata.js';
import type { Settings } from './settings.js';
import type { SinkPool } from './sink-pool.js';
import type { SinkRunner } from './sink-runner.js';
import type { LogStore, ReadRequest } from './store/store.js';
import { parseRfc3339Nano } from './time.js';

/** dockerd creates every FIFO here (inside the plugin rootfs for managed plugins). */
export const FIFO_DIR = '/run/docker/logging';

/** An error whose message is meant for the user running `docker run` / `docker logs`. */
export class DriverError extends Error {}

export interface ReadConfig {
  Since?: string;
  Until?: string;
  Tail?: number;
  Follow?: boolean;
}

export interface DriverParts {
  readonly settings: Settings;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly store: LogStore;
  readonly sinks: SinkPool;
  readonly logger: Logger;
  readonly journal: StreamJournal;
  /** Where FIFOs may live; tests may point this elsewhere. */
  readonly fifoDir?: string;
}

export class Driver {
  private readonly streams = new Map<string, LogStream>();
  /** Streams that ended and whose journal/store clean-up is still running. */
  private readonly settling = new Map<string, Promise<void>>();
  private readonly hostname: string;
  private shuttingDown = false;
  /** Refusals of the FIFO buffer resize already warned about (each reason once; the rest at debug). */
  private readonly pipeRefusalsWarned = new Set<string>();
  /** Read-only, for metrics: FIFOs that kept the kernel's buffer because a resize was refused. */
  pipeResizeRefusals = 0;

  constructor(private readonly parts: DriverParts) {
    this.hostname = parts.settings['host-name'] !== '' ? parts.settings['host-name'] : os.hostname();
  }

  get liveStreams(): number {
    return this.streams.size;
  }

  /** Read-only, for metrics: the live streams with their container and counters. */
  liveStreamStats(): IterableIterator<Pick<LogStream, 'file' | 'container' | 'stats'>> {
    return this.streams.values();
  }

  /** Read-only, for metrics: the counters of every stream that has ended, summed (so totals survive a stream's end). */
  readonly endedStreamStats: LogStreamStats = { bytes: 0, entries: 0, records: 0, skipped: { corrupt: 0, oversize: 0, badSource: 0, truncatedAtEof: 0, resyncBytes: 0 } };

  /** Resolves when the stream of `file` has ended and what it read is in the store (at once if none). */
  async whenEnded(file: string): Promise<void> {
    const fifo = path.resolve(file);
    await this.streams.get(fifo)?.ended;
    await this.settling.get(fifo);
  }

  /** Validates options, opens the FIFO and starts reading. No network I/O: sinks connect in the background. */
  async startLogging(file: string, rawInfo: Partial<ContainerInfo>): Promise<void> {
    if (this.shuttingDown) throw new DriverError('shiplog is shutting down');
    const fifo = this.checkFifoPath(file);
    if (this.streams.has(fifo)) throw new DriverError(`already logging from ${fifo}`);
    const info = normalizeInfo(rawInfo);
    await this.openStream(fifo, info);
    // Journalled before dockerd hears back, so a crash from here on still re-attaches. A journal that
    // cannot be written (disk full) costs only that: the container must not fail to start over it.
    try {
      await this.parts.journal.record({ file: fifo, info, startedAt: new Date().toISOString() });
    } catch (err) {
      this.parts.logger.error({ file: fifo, err: (err as Error).message }, 'could not journal the stream; it will not be re-attached after a restart');
    }
  }

  /**
   * At boot: re-attach to every journalled FIFO that still exists (dockerd keeps writing into it while
   * shiplog is away and never re-sends StartLogging). A FIFO whose dockerd is gone gives EOF at once
   * and ends normally.
   */
  async reattach(): Promise<number> {
    let attached = 0;
    for (const entry of await this.parts.journal.list()) {
      const isFifo = await fs.promises.stat(entry.file).then((st) => st.isFIFO(), () => false);
      if (!isFifo || this.streams.has(entry.file)) {
        await this.parts.journal.remove(entry.file);
        continue;
      }
      const taken = await this.parts.journal.takeCarry(entry.file);
      const container = entry.info.ContainerID.slice(0, 12);
      if (taken?.cutShort === true) {
        this.parts.logger.error({ file: entry.file, container, keptBytes: taken.bytes.length }, 'the last process was killed while saving a chunk read from this FIFO: the rest of that chunk (one FIFO read: at most PIPE_SIZE) is lost; resyncing after what was saved');
      }
      try {
        const resume: ResumeFrom = taken === undefined ? { resync: true } : taken.cutShort ? { carry: taken.bytes, cutShort: true } : { carry: taken.bytes };
        await this.openStream(entry.file, normalizeInfo(entry.info), resume);
        attached++;
        this.parts.logger.info({ file: entry.file, container, clean: taken !== undefined && !taken.cutShort, carryBytes: taken?.bytes.length }, 're-attached to a FIFO from before the restart');
      } catch (err) {
        this.parts.logger.error({ file: entry.file, err: (err as Error).message }, 'could not re-attach; forgetting the stream');
        await this.parts.journal.remove(entry.file);
      }
    }
    return attached;
  }

  private async openStream(fifo: string, info: ContainerInfo, resume?: ResumeFrom): Promise<void> {
    checkContainerId(info.ContainerID);
    let options;
    let container;
    try {
      options = parseContainerOptions(info.Config, this.parts.env);
      container = buildContainerMeta(info, {
        tag: options.core.tag, labels: options.core.labels, labelsRegex: options.core['labels-regex'],
        env: options.core.env, envRegex: options.core['env-regex'],
      }, this.hostname);
    } catch (err) {
      if (err instanceof OptionError) throw new DriverError(err.message);
      throw err;
    }

    const runners: SinkRunner[] = [];
    const store = this.parts.store.openWriter(info.ContainerID, {
      maxSize: options.core['max-size'], maxFile: options.core['max-file'], compress: options.core.compress,
    });
    const logger = this.parts.logger.child({ container: info.ContainerID.slice(0, 12) });
    let pending: PendingBytes | undefined;
    try {
      for (const active of options.sinks) runners.push(this.parts.sinks.acquire(active, container));
      // A carry cut short is not written back: its stream resyncs after it, as the file will say.
      pending = this.parts.journal.openPending(fifo, logger, resume === undefined ? Buffer.alloc(0) : 'carry' in resume && resume.cutShort !== true ? resume.carry : undefined);
      const stream = new LogStream({
        file: fifo, container, store, runners, logger, pending, pipeBytes: this.parts.settings['pipe-size'],
        reassembly: { maxBytes: options.core['partial-max-size'], holdMs: options.core['partial-timeout'] },
        ...(resume !== undefined ? { resume } : {}),
      });
      await stream.open();
      this.streams.set(fifo, stream);
      void stream.ended.then((why) => {
        const settled = this.onStreamEnded(stream, why, store, runners);
        this.settling.set(fifo, settled);
        void settled.finally(() => this.settling.delete(fifo));
      });
      this.reportPipe(stream.pipe, logger);
      logger.info({ file: fifo, name: container.name, sinks: options.sinks.map((s) => s.definition.name), pipeBytes: stream.pipe !== undefined && 'bytes' in stream.pipe ? stream.pipe.bytes : undefined }, 'logging started');
    } catch (err) {
      store.release();
      for (const r of runners) void this.parts.sinks.release(r);
      if (pending !== undefined) {
        pending.close();
        await this.parts.journal.removePending(fifo);
      }
      if (err instanceof OptionError) throw new DriverError(err.message);
      throw new DriverError(`cannot read ${fifo}: ${(err as Error).message}`);
    }
  }

  /**
   * Answers at once: dockerd closes its end of the FIFO only after this returns, and the stream
   * reads on until that EOF. Unknown files are fine (always succeed: an error here makes dockerd
   * leak the FIFO and the plugin reference).
   */
  stopLogging(file: string): void {
    const stream = this.streams.get(path.resolve(file));
    if (stream === undefined) {
      this.parts.logger.debug({ file }, 'StopLogging for a stream not (or no longer) open');
      return;
    }
    stream.stopping = true;
  }

  /** Checks a ReadLogs request before any byte of the answer is sent. Throws DriverError. */
  parseReadRequest(rawInfo: Partial<ContainerInfo>, config: ReadConfig): { containerId: string; request: ReadRequest } {
    const info = normalizeInfo(rawInfo);
    checkContainerId(info.ContainerID);
    try {
      const since = config.Since !== undefined ? parseRfc3339Nano(config.Since) : undefined;
      const until = config.Until !== undefined ? parseRfc3339Nano(config.Until) : undefined;
      const request: ReadRequest = { tail: typeof config.Tail === 'number' ? config.Tail : -1, follow: config.Follow === true };
      if (since !== undefined) request.since = since;
      if (until !== undefined) request.until = until;
      return { containerId: info.ContainerID, request };
    } catch (err) {
      throw new DriverError((err as Error).message);
    }
  }

  /** Streams the container's stored entries (and, with Follow, new ones until its last stream ends) into `out`. */
  readLogs(containerId: string, request: ReadRequest, out: Writable): Promise<void> {
    return this.parts.store.read(containerId, request, out);
  }

  /**
   * Stops reading every FIFO: unread bytes stay in the pipes (dockerd holds the other end), the bytes
   * of a frame read only in part stay in the stream's pending file, and the journal keeps every
   * stream for the next start to re-attach. What was read is in the store and handed to sinks.
   */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    const streams = [...this.streams.values()];
    for (const s of streams) s.close();
    await Promise.all(streams.map((s) => s.ended));
  }

  private async onStreamEnded(stream: LogStream, why: StreamEnd, store: { release(): void }, runners: readonly SinkRunner[]): Promise<void> {
    this.streams.delete(stream.file);
    addStreamStats(this.endedStreamStats, stream.stats);
    store.release();
    if (why !== 'shutdown') {
      await this.parts.journal.remove(stream.file);
      // EOF without StopLogging: dockerd went away and never removes its FIFOs; nobody will write here again.
      if (!stream.stopping) await fs.promises.rm(stream.file, { force: true }).catch(() => undefined);
    }
    // Sinks may take long to deliver what they hold (an outage); that is not part of ending the stream.
    for (const r of runners) void this.parts.sinks.release(r);
  }

  private reportPipe(pipe: PipeSizeResult | undefined, logger: Logger): void {
    if (pipe === undefined || !('error' in pipe)) return;
    this.pipeResizeRefusals++;
    const fields = { pipeSize: this.parts.settings['pipe-size'], reason: pipe.error };
    if (this.pipeRefusalsWarned.has(pipe.error)) {
      logger.debug(fields, "FIFO keeps the kernel's pipe buffer");
      return;
    }
    this.pipeRefusalsWarned.add(pipe.error);
    logger.warn(fields, "cannot enlarge the FIFO's pipe buffer to PIPE_SIZE; it keeps the kernel's (64 KiB): dockerd blocks sooner while shiplog is busy (further FIFOs refused for this reason are only counted: shiplog_fifo_pipe_resize_refused_total)");
  }

  private checkFifoPath(file: unknown): string {
    if (typeof file !== 'string' || file === '') throw new DriverError('File: a FIFO path is required');
    const dir = this.parts.fifoDir ?? FIFO_DIR;
    const resolved = path.resolve(file);
    if (path.dirname(resolved) !== dir) throw new DriverError(`File ${JSON.stringify(file)} is not a FIFO under ${dir}; shiplog reads only dockerd's logging FIFOs`);
    return resolved;
  }
}

function addStreamStats(into: LogStreamStats, from: Readonly<LogStreamStats>): void {
  into.bytes += from.bytes;
  into.entries += from.entries;
  into.records += from.records;
  for (const k of Object.keys(from.skipped) as (keyof LogStreamStats['skipped'])[]) into.skipped[k] += from.skipped[k];
}

function checkContainerId(id: string): void {
  if (!/^[0-9a-f]{12,64}$/.test(id)) throw new DriverError(`Info.ContainerID ${JSON.stringify(id)} is not a container id`);
}
