/**
 * Sink instances shared by containers whose options give the same instance key (e.g. one
 * Elasticsearch connection for every container that ships to the same cluster and index),
 * reference-counted by live streams.
 */
import type { Logger } from 'pino';
import type { ContainerMeta } from '../sinks/sink.js';
import { DeadLetterFile } from './dead-letters.js';
import type { ActiveSink } from './options.js';
import { SinkRunner } from './sink-runner.js';

interface PoolEntry {
  readonly runner: SinkRunner;
  refs: number;
}

export class SinkPool {
  private readonly entries = new Map<string, PoolEntry>();
  private readonly deadLetters = new Map<string, DeadLetterFile>();

  constructor(private readonly stateDir: string, private readonly logger: Logger, private readonly queueLimitBytes: number, private readonly closeDeadlineMs: number) {}

  get size(): number {
    return this.entries.size;
  }

  runners(): SinkRunner[] {
    return [...this.entries.values()].map((e) => e.runner);
  }

  acquire(active: ActiveSink, container: ContainerMeta): SinkRunner {
    const { definition, options } = active;
    const key = `${definition.name}\u0000${definition.instanceKey(options, container)}`;
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
    const runner = new SinkRunner(sink, definition.batchLimits(options), deadLetters, logger, this.queueLimitBytes);
    this.entries.set(key, { runner, refs: 1 });
    return runner;
  }

  /**
   * A stream is done with `runner`. When no stream uses it any more it stays open until it has
   * delivered (or dead-lettered) everything it holds, however long the backend is away, then closes:
   * a container that stops during an outage loses nothing to the stop.
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

  async closeAll(deadlineMs: number): Promise<void> {
    const runners = this.runners();
    this.entries.clear();
    await Promise.all(runners.map((r) => r.close(deadlineMs)));
  }
}
