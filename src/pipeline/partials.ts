/**
 * Reassembles dockerd's 16 KiB partial chunks into whole lines for sinks (the store keeps the chunks
 * as received). A group is keyed by its partial id (older daemons send none: then by source, and the
 * first non-partial entry of that source ends it). Nothing is dropped: a group over the size cap is
 * emitted as a truncated record and gathering goes on into a continuation record; a group that
 * waits longer than the hold timeout, or is open at end of stream, is emitted as truncated.
 */
import type { DecodedEntry } from '../entry.js';
import type { Int64Parts } from '../time.js';

export interface AssembledLine {
  readonly source: string;
  readonly timeNano: Int64Parts;
  readonly line: Buffer;
  readonly truncated: boolean;
}

export interface ReassemblyLimits {
  /** Longest line handed to sinks; beyond it the line continues in a further record. */
  readonly maxBytes: number;
  /** How long an incomplete line waits for its next chunk before it is emitted as truncated. */
  readonly holdMs: number;
}

interface OpenGroup {
  /** The map it is open in, under `key`. */
  readonly openIn: Map<string, OpenGroup>;
  readonly key: string;
  readonly source: string;
  readonly timeNano: Int64Parts;
  chunks: Uint8Array[];
  bytes: number;
  /** Part of this line already went out because it hit the size cap. */
  continued: boolean;
  timer: NodeJS.Timeout | undefined;
}

export class PartialReassembler {
  /** Lines gathered by partial id … */
  private readonly openById = new Map<string, OpenGroup>();
  /** … and by source, from daemons that send no id: a plain entry of that source ends the line. */
  private readonly openBySource = new Map<string, OpenGroup>();

  constructor(private readonly limits: ReassemblyLimits, private readonly emit: (line: AssembledLine) => void) {}

  /** Lines currently held back waiting for more chunks. */
  get openGroups(): number {
    return this.openById.size + this.openBySource.size;
  }

  push(e: DecodedEntry): void {
    if (!e.partial) {
      // Checked for every line: a size test first spares the common case a Map lookup.
      const legacy = this.openBySource.size === 0 ? undefined : this.openBySource.get(e.source);
      if (legacy === undefined) {
        this.emit({ source: e.source, timeNano: e.timeNano, line: asBuffer(e.line), truncated: false });
        return;
      }
      // Pre-metadata daemons end a partial run with a plain entry.
      this.append(legacy, e.line);
      this.finish(legacy, false);
      return;
    }
    const openIn = e.partialId !== '' ? this.openById : this.openBySource;
    const key = e.partialId !== '' ? e.partialId : e.source;
    let group = openIn.get(key);
    if (group === undefined) {
      group = { openIn, key, source: e.source, timeNano: e.timeNano, chunks: [], bytes: 0, continued: false, timer: undefined };
      openIn.set(key, group);
    }
    this.append(group, e.line);
    if (e.partialLast) {
      this.finish(group, false);
      return;
    }
    this.arm(group);
  }

  /** End of stream: every incomplete line goes out, marked truncated. */
  flushAll(): void {
    for (const group of [...this.openById.values(), ...this.openBySource.values()]) this.finish(group, true);
  }

  private append(group: OpenGroup, chunk: Uint8Array): void {
    let rest = chunk;
    while (group.bytes + rest.length > this.limits.maxBytes) {
      const room = this.limits.maxBytes - group.bytes;
      group.chunks.push(rest.subarray(0, room));
      group.bytes += room;
      rest = rest.subarray(room);
      this.emitGathered(group, true);
    }
    if (rest.length > 0) {
      group.chunks.push(rest);
      group.bytes += rest.length;
    }
  }

  private emitGathered(group: OpenGroup, truncated: boolean): void {
    const line = group.chunks.length === 1 ? asBuffer(group.chunks[0] as Uint8Array) : Buffer.concat(group.chunks, group.bytes);
    group.chunks = [];
    group.bytes = 0;
    this.emit({ source: group.source, timeNano: group.timeNano, line, truncated: truncated || group.continued });
    group.continued = true;
  }

  private finish(group: OpenGroup, truncated: boolean): void {
    if (group.timer !== undefined) clearTimeout(group.timer);
    group.openIn.delete(group.key);
    // A line cut at the cap with nothing after the cut has been emitted in full already.
    if (group.bytes > 0 || !group.continued) this.emitGathered(group, truncated);
  }

  private arm(group: OpenGroup): void {
    if (group.timer !== undefined) {
      group.timer.refresh();
      return;
    }
    group.timer = setTimeout(() => {
      group.timer = undefined;
      this.finish(group, true);
    }, this.limits.holdMs);
    group.timer.unref();
  }
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}
