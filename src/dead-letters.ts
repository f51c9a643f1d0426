/**
 * Records a sink refused for good (mapping errors, retries exhausted) go to
 * `<state-dir>/dead-letters/<sink>.ndjson` with the reason, never silently away. The file is capped:
 * at `maxBytes` it is rotated once to `.1` (the older `.1` is replaced, and that is logged).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { DeadLetter } from '../sinks/sink.js';
import { formatRfc3339Nano } from './time.js';

export class DeadLetterFile {
  private size = -1;
  private chain: Promise<void> = Promise.resolve();
  written = 0;

  constructor(private readonly file: string, private readonly logger: Logger, private readonly maxBytes = 100 * 1024 * 1024) {}

  static forSink(stateDir: string, sinkName: string, logger: Logger): DeadLetterFile {
    return new DeadLetterFile(path.join(stateDir, 'dead-letters', `${sinkName}.ndjson`), logger);
  }

  get path(): string {
    return this.file;
  }

  /** Appends in order; resolves when written. Never rejects: a failure is logged with the count lost. */
  append(letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return this.chain;
    const text = letters.map((l) => JSON.stringify({
      dead_lettered_at: new Date().toISOString(),
      reason: l.reason,
      time: formatRfc3339Nano(l.record.timeNano),
      source: l.record.source,
      container_id: l.record.container.id,
      container_name: l.record.container.name,
      truncated: l.record.truncated || undefined,
      message: l.record.line.toString('utf8'),
    })).join('\n') + '\n';
    this.chain = this.chain.then(() => this.write(text, letters.length));
    return this.chain;
  }

  private async write(text: string, count: number): Promise<void> {
    try {
      await fs.promises.mkdir(path.dirname(this.file), { recursive: true });
      if (this.size < 0) this.size = await fs.promises.stat(this.file).then((s) => s.size, () => 0);
      if (this.size >= this.maxBytes) {
        await fs.promises.rename(this.file, `${this.file}.1`);
        this.logger.warn({ file: this.file }, 'dead-letter file reached its cap; rotated to .1, replacing the older one');
        this.size = 0;
      }
      await fs.promises.appendFile(this.file, text, { mode: 0o640 });
      this.size += Buffer.byteLength(text);
      this.written += count;
    } catch (err) {
      this.logger.error({ err, file: this.file, records: count }, 'could not write dead letters; these records are lost');
    }
  }
}
