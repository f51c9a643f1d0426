/**
 * The journal of live streams, so a restarted shiplog re-attaches to the FIFOs it was reading:
 * dockerd holds both ends of every FIFO and never re-sends StartLogging to a plugin that comes back
 * (protocol.md §3.6), so remembering them is the plugin's job. One file per stream under
 * `<state-dir>/streams/`: `<fifo name>.json` holds the path and the StartLogging Info; on a clean
 * stop, `<fifo name>.carry` holds the bytes of a frame read only in part, so the next reader
 * continues exactly where this one stopped.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ContainerInfo } from './container-info.js';

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

  /** The stream ended for good (EOF): forget it and any carry. */
  async remove(file: string): Promise<void> {
    await Promise.all([
      fs.promises.rm(this.entryPath(file), { force: true }),
      fs.promises.rm(this.carryPath(file), { force: true }),
    ]);
  }

  /** Synchronous: called on shutdown, right before the process exits. */
  saveCarry(file: string, bytes: Buffer): void {
    const target = this.carryPath(file);
    fs.writeFileSync(`${target}.tmp`, bytes, { mode: 0o600 });
    fs.renameSync(`${target}.tmp`, target);
  }

  /** The carry left by a clean stop, removed as it is taken; undefined after a crash. */
  async takeCarry(file: string): Promise<Buffer | undefined> {
    const p = this.carryPath(file);
    try {
      const bytes = await fs.promises.readFile(p);
      await fs.promises.rm(p, { force: true });
      return bytes;
    } catch {
      return undefined;
    }
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

  private carryPath(file: string): string {
    return path.join(this.dir, `${path.basename(file)}.carry`);
  }
}
