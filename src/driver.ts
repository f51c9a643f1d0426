/**
 * The logging driver behind the plugin API: the set of live streams keyed by FIFO path (one container
 * has many streams over its life, and they can overlap briefly), StartLogging / StopLogging /
 * ReadLogs, and shutdown. Knows nothing of HTTP.
 */
import os from 'node:os';
import path from 'node:path';
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { type ContainerInfo, normalizeInfo } from './container-info.js';
import { LogStream } from './log-stream.js';
import { OptionError } from './option-table.js';
import { parseContainerOptions } from './options.js';
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
  /** Where FIFOs may live; tests may point this elsewhere. */
  readonly fifoDir?: string;
}

export class Driver {
  private readonly streams = new Map<string, LogStream>();
  private readonly hostname: string;
  private shuttingDown = false;

  constructor(private readonly parts: DriverParts) {
    this.hostname = parts.settings['host-name'] !== '' ? parts.settings['host-name'] : os.hostname();
  }

  get liveStreams(): number {
    return this.streams.size;
  }

  /** Resolves when the stream of `file` has ended and what it read is in the store (at once if none). */
  whenEnded(file: string): Promise<void> {
    return this.streams.get(path.resolve(file))?.ended ?? Promise.resolve();
  }

  /** Validates options, opens the FIFO and starts reading. No network I/O: sinks connect in the background. */
  async startLogging(file: string, rawInfo: Partial<ContainerInfo>): Promise<void> {
    if (this.shuttingDown) throw new DriverError('shiplog is shutting down');
    const fifo = this.checkFifoPath(file);
    if (this.streams.has(fifo)) throw new DriverError(`already logging from ${fifo}`);
    const info = normalizeInfo(rawInfo);
    if (!/^[0-9a-f]{12,64}$/.test(info.ContainerID)) throw new DriverError(`Info.ContainerID ${JSON.stringify(info.ContainerID)} is not a container id`);

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
    try {
      for (const active of options.sinks) runners.push(this.parts.sinks.acquire(active, container));
      const stream = new LogStream({
        file: fifo, container, store, runners, logger,
        reassembly: { maxBytes: options.core['partial-max-size'], holdMs: options.core['partial-timeout'] },
      });
      await stream.open();
      this.streams.set(fifo, stream);
      void stream.ended.then(() => this.onStreamEnded(stream, store, runners));
      logger.info({ file: fifo, name: container.name, sinks: options.sinks.map((s) => s.definition.name) }, 'logging started');
    } catch (err) {
      store.release();
      for (const r of runners) void this.parts.sinks.release(r);
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
    if (!/^[0-9a-f]{12,64}$/.test(info.ContainerID)) throw new DriverError(`Info.ContainerID ${JSON.stringify(info.ContainerID)} is not a container id`);
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

  /** Stops reading every FIFO (unread bytes stay in the pipes), hands what was read to store and sinks. */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    const streams = [...this.streams.values()];
    for (const s of streams) s.close();
    await Promise.all(streams.map((s) => s.ended));
  }

  private async onStreamEnded(stream: LogStream, store: { release(): void }, runners: readonly SinkRunner[]): Promise<void> {
    this.streams.delete(stream.file);
    store.release();
    await Promise.all(runners.map((r) => this.parts.sinks.release(r)));
  }

  private checkFifoPath(file: unknown): string {
    if (typeof file !== 'string' || file === '') throw new DriverError('File: a FIFO path is required');
    const dir = this.parts.fifoDir ?? FIFO_DIR;
    const resolved = path.resolve(file);
    if (path.dirname(resolved) !== dir) throw new DriverError(`File ${JSON.stringify(file)} is not a FIFO under ${dir}; shiplog reads only dockerd's logging FIFOs`);
    return resolved;
  }
}
