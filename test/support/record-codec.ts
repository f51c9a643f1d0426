/**
 * Lets test sinks work with records under the encoded-batch contract: encode() writes each record as
 * a small JSON object padded to ENTRY_BYTES (so every entry costs the runner the same memory,
 * ENTRY_COST), and records() decodes a batch's entries back into records — any codec's entries, so a
 * second runner can deliver what a first one spooled as bytes. Containers are named by an index into
 * a registry shared by the process (tests use a handful).
 */
import type { ContainerMeta, EncodedBatch, EntryWriter, LogRecord } from '../../sinks/sink.js';
import { ENTRY_OVERHEAD_BYTES } from '../../sinks/encoded-batch.js';

const containers: ContainerMeta[] = [];

function containerIndex(c: ContainerMeta): number {
  const i = containers.indexOf(c);
  if (i >= 0) return i;
  containers.push(c);
  return containers.length - 1;
}

interface Wire {
  c: number;
  s: LogRecord['source'];
  h: number;
  l: number;
  q: number;
  t: boolean;
  line: string;
}

export const ENTRY_BYTES = 240;
/** What one short record costs the runner's memory bound. */
export const ENTRY_COST = ENTRY_BYTES + ENTRY_OVERHEAD_BYTES;

export class RecordCodec {
  encode(r: LogRecord, out: EntryWriter): void {
    const wire: Wire = { c: containerIndex(r.container), s: r.source, h: r.timeNano.high, l: r.timeNano.low, q: r.seq, t: r.truncated, line: r.line.toString('base64') };
    out.text(JSON.stringify(wire).padEnd(ENTRY_BYTES));
  }

  records(batch: EncodedBatch): LogRecord[] {
    return batch.texts().map((text) => {
      const w = JSON.parse(text) as Wire;
      const container = containers[w.c];
      if (container === undefined) throw new Error(`entry ${JSON.stringify(text.slice(0, 40))} names no known container`);
      return { container, source: w.s, timeNano: { high: w.h, low: w.l }, seq: w.q, truncated: w.t, line: Buffer.from(w.line, 'base64') };
    });
  }
}

/** The line of an entry RecordCodec made (e.g. one read back from a dead-letter file). */
export function lineOfEntry(entry: string): string {
  return Buffer.from((JSON.parse(entry) as Wire).line, 'base64').toString();
}
