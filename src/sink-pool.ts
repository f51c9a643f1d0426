/**
 * Sink instances shared by containers whose options give the same instance key (e.g. one
 * Elasticsearch connection for every container that ships to the same cluster and index),
 * reference-counted by live streams. Each instance has its disk spool under
 * `<state-dir>/spool/<sink>/<hash of instance key>/`; at start-up, recoverSpools() recreates the
 * instances that left records there and lets them deliver.
 */
import { MemoryBudget } from './memory-budget.js';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { sinkDefinitions } from '../sinks/index.js';
import type { ContainerMeta, SinkDefinition } from '../sinks/sink.js';
import { DeadLetterFile } from './dead-letters.js';
import { parseTable, plainEnvName } from './option-table.js';
import type { ActiveSink } from './options.js';
import { settingsTable } from './settings.js';
import { SinkRunner } from './sink-runner.js';
import { listSpools, spoolDirFor } from './spool/meta.js';
import type { SpoolIo } from './spool/spool.js';

interface PoolEntry {
  readonly runner: SinkRunner;
  refs: number;
}

export interface SinkPoolOptions {
  /** Spool bound per sink instance (bytes); 0 = no spool. Default 1 GB. */
  readonly spoolMaxBytes?: number;
  /**
   * Every record goes to the spool too (the file sink's: unless acknowledged within the event-loop
   * turn that read it; see sink-runner.ts). Default: the SPOOL_WRITE_THROUGH setting from the environment (true when
   * unset).
   */
  readonly spoolWriteThrough?: boolean;
  /** Sink definitions recoverSpools() may recreate (default: the registry, sinks/index.ts). */
  readonly definitions?: readonly SinkDefinition[];
  /** Spool tuning, for tests. */
  readonly spoolSegmentBytes?: number;
  readonly spoolIo?: SpoolIo;
}

export const DEFAULT_SPOOL_MAX_BYTES = 1_000_000_000;

/** SPOOL_WRITE_THROUGH from the environment, parsed as the settings table does (throws on a bad value, as readSettings does). */
function writeThroughFromEnv(): boolean {
  const table = { 'spool-write-through': settingsTable['spool-write-through'] };
  return parseTable(table, {}, process.env, plainEnvName)['spool-write-through'];
}

export class SinkPool {
  private readonly entries = new Map<string, PoolEntry>();
  private readonly deadLetters = new Map<string, DeadLetterFile>();
  private readonly writeThrough: boolean;
  /** SINK_QUEUE_SIZE is one budget for all instances: per instance it would multiply with containers. */
  private readonly memory: MemoryBudget;

  constructor(
    private readonly stateDir: string,
    private readonly logger: Logger,
    private readonly queueLimitBytes: number,
    private readonly closeDeadlineMs: number,
    private readonly options: SinkPoolOptions = {},
  ) {
    this.writeThrough = options.spoolWriteThrough ?? writeThroughFromEnv();
    this.memory = new MemoryBudget(queueLimitBytes);
  }

  get size(): number {
    return this.entries.size;
  }

  runners(): SinkRunner[] {
    return [...this.entries.values()].map((e) => e.runner);
  }

  acquire(active: ActiveSink, container: ContainerMeta): SinkRunner {
    const { definition, options } = active;
    const instanceKey = definition.instanceKey(options, container);
    const key = `${definition.name}\u0000${instanceKey}`;
    const existing = this.entries.get(key);
    if (existing !== undefined) {
      existing.refs++;
      return existing.runner;
    }
    const logger = this.logger.child({ sink: definition.name });
    const sink = definition.create(options, { container, logger, stateDir: this.stateDir });
    let deadLetters = this.deadLetters.get(definition.name);
    if (deadLetters === undefined) {
      deadLetters = DeadLetterFile.forSink(this.stateDir, definition.name, this.logger);
      this.deadLetters.set(definition.name, deadLetters);
    }
    const spoolMaxBytes = this.options.spoolMaxBytes ?? DEFAULT_SPOOL_MAX_BYTES;
    if (spoolMaxBytes > 0 && active.raw === undefined) {
      logger.warn('sink options came without their text: records spooled for this instance cannot be delivered after a restart');
    }
    const spool = spoolMaxBytes <= 0 ? undefined : {
      dir: spoolDirFor(this.stateDir, definition.name, instanceKey),
      maxBytes: spoolMaxBytes,
      writeThrough: this.writeThrough,
      logger,
      meta: active.raw === undefined ? undefined : { version: 1 as const, sink: definition.name, options: active.raw, container, createdAt: new Date().toISOString() },
      ...(this.options.spoolSegmentBytes !== undefined ? { segmentBytes: this.options.spoolSegmentBytes } : {}),
      ...(this.options.spoolIo !== undefined ? { io: this.options.spoolIo } : {}),
    };
    const runner = new SinkRunner(sink, definition.batchLimits(options), deadLetters, logger, this.queueLimitBytes, spool, this.memory);
    this.entries.set(key, { runner, refs: 1 });
    return runner;
  }

  /**
   * A stream is done with `runner`. When no stream uses it any more it stays open until it has
   * delivered (or dead-lettered) everything it holds, spool included, however long the backend is
   * away, then closes: a container that stops during an outage loses nothing to the stop.
   */
  async release(runner: SinkRunner): Promise<void> {
    const found = [...this.entries].find(([, e]) => e.runner === runner);
    if (found === undefined) return;
    const [key, entry] = found;
    entry.refs--;
    runner.flush();
    if (entry.refs > 0) return;
    await runner.idle();
    if (entry.refs > 0 || this.entries.get(key) !== entry) return;
    this.entries.delete(key);
    await runner.close(this.closeDeadlineMs);
  }

  /**
   * At start-up, before any stream: every spool left with records by an earlier run gets its sink
   * instance back (from the sink name, option texts and container kept in its meta.json) and
   * delivers them; the instance then closes when no stream uses it, like any other. A container
   * that asks for the same instance meanwhile shares it (same runner: order kept, nothing sent
   * twice). Returns how many instances were recreated. Never throws: a spool that cannot be given
   * to a sink (unknown sink, bad options) is logged and left on disk.
   */
  async recoverSpools(): Promise<number> {
    if ((this.options.spoolMaxBytes ?? DEFAULT_SPOOL_MAX_BYTES) <= 0) return 0;
    const definitions = this.options.definitions ?? sinkDefinitions;
    let recovered = 0;
    for (const found of await listSpools(this.stateDir)) {
      const meta = found.meta;
      const definition = meta === undefined ? undefined : definitions.find((d) => d.name === meta.sink);
      if (meta === undefined || definition === undefined) {
        this.logger.error({ dir: found.dir, sink: meta?.sink }, 'spool left by an earlier run names no known sink (or has no readable meta.json); left on disk, not delivered');
        continue;
      }
      let runner: SinkRunner;
      try {
        const options = parseTable(definition.options, meta.options, {});
        definition.validate?.(options);
        const expected = spoolDirFor(this.stateDir, definition.name, definition.instanceKey(options, meta.container));
        if (path.resolve(expected) !== path.resolve(found.dir)) {
          // The instance key changed meaning (an upgrade): move the spool where the instance looks.
          if (fs.existsSync(expected)) {
            this.logger.error({ dir: found.dir, expected }, 'spool left by an earlier run belongs where another spool already is; left on disk, not delivered');
            continue;
          }
          await fs.promises.rename(found.dir, expected);
        }
        runner = this.acquire({ definition, options, raw: meta.options }, meta.container);
      } catch (err) {
        this.logger.error({ dir: found.dir, sink: meta.sink, err: (err as Error).message }, 'cannot recreate the sink of a spool left by an earlier run; left on disk, not delivered');
        continue;
      }
      recovered++;
      this.logger.info({ sink: meta.sink, container: meta.container.name, spoolBytes: runner.stats.spoolBytes }, 'delivering records spooled before the restart');
      void this.release(runner);
    }
    return recovered;
  }

  async closeAll(deadlineMs: number): Promise<void> {
    const runners = this.runners();
    this.entries.clear();
    await Promise.all(runners.map((r) => r.close(deadlineMs)));
  }
}
