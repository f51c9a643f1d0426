/**
 * Lets test sinks work with records under the encoded-batch contract: encode() gives each record a
 * number and an entry `<n>\t<line>` padded to ENTRY_BYTES (so every entry costs the runner the same
 * memory, ENTRY_COST), and records() maps a batch's entries back to the records encoded.
 */
import type { EncodedBatch, EntryWriter, LogRecord } from '../../sinks/sink.js';
import { ENTRY_OVERHEAD_BYTES } from '../../src/sink-runner.js';

export const ENTRY_BYTES = 240;
/** What one short record costs the runner's memory bound. */
export const ENTRY_COST = ENTRY_BYTES + ENTRY_OVERHEAD_BYTES;

export class RecordCodec {
  private readonly byNumber = new Map<number, LogRecord>();
  private next = 0;

  encode(r: LogRecord, out: EntryWriter): void {
    const n = this.next++;
    this.byNumber.set(n, r);
    out.text(`${n}\t${r.line.toString()}`.padEnd(ENTRY_BYTES));
  }

  records(batch: EncodedBatch): LogRecord[] {
    return batch.texts().map((text) => {
      const r = this.byNumber.get(Number(text.slice(0, text.indexOf('\t'))));
      if (r === undefined) throw new Error(`entry ${JSON.stringify(text.slice(0, 40))} was not encoded by this codec`);
      return r;
    });
  }
}

/** The line of an entry RecordCodec made (e.g. one read back from a dead-letter file). */
export function lineOfEntry(entry: string): string {
  return entry.slice(entry.indexOf('\t') + 1).trimEnd();
}
