/**
 * Entries a sink refused for good (mapping errors, retries exhausted) go to
 * `<state-dir>/dead-letters/<sink>.ndjson`, one JSON object per line:
 *   {"dead_lettered_at":"<ISO time>","reason":"…","entry":"<exactly what the sink would have sent>"}
 * `entry` is the sink's wire form (the file sink's JSON line; Elasticsearch's bulk action and
 * document lines), so `jq -r .entry` gives text that can be replayed as is. Never silently away. The
 * file is capped: at `maxBytes` it is rotated once to `.1` (the older `.1` is replaced, and that is
 * logged).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';

export interface DeadEntry {
  /** The entry in the sink's wire form. */
  readonly entry: Uint8Array;
  readonly reason: string;
}

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
  append(letters: readonly DeadEntry[]): Promise<void> {
    if (letters.length === 0) return this.chain;
    const at = new Date().toISOString();
    const text = letters.map((l) => JSON.stringify({
      dead_lettered_at: at,
      reason: l.reason,
      entry: Buffer.from(l.entry.buffer, l.entry.byteOffset, l.entry.length).toString('utf8'),
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
