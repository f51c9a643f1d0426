import { describe, expect, it } from 'vitest';
import { collectText, type ContainerMeta, type LogRecord, RecordIdWriter, recordId } from '../sinks/sink.js';

const container = (id: string): ContainerMeta => ({ id, name: 'c', imageName: 'i', imageId: 'sha256:0', tag: id.slice(0, 12), attrs: {}, labels: {}, hostname: 'h' });

function record(c: ContainerMeta, source: 'stdout' | 'stderr', high: number, low: number, seq: number): LogRecord {
  return { container: c, source, timeNano: { high, low }, line: Buffer.from('x'), truncated: false, seq };
}

describe('RecordIdWriter', () => {
  it('writes exactly recordId()\'s bytes, for every byte value of the time, both sources, seq and short ids', () => {
    const writer = new RecordIdWriter();
    const containers = [container('a'.repeat(64)), container('0123456789abcdef'.repeat(4)), container('short-id')];
    let seed = 7;
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) | 0);
    const records: LogRecord[] = [];
    for (let b = 0; b < 256; b++) records.push(record(containers[b % 3] as ContainerMeta, b % 2 === 0 ? 'stdout' : 'stderr', (b << 24) | b, (b << 16) | (b << 8) | b, 0));
    for (let i = 0; i < 2000; i++) records.push(record(containers[i % 3] as ContainerMeta, i % 5 === 0 ? 'stderr' : 'stdout', next(), next(), i % 7 === 0 ? i : 0));
    records.push(record(containers[0] as ContainerMeta, 'stdout', -1, -1, 0), record(containers[0] as ContainerMeta, 'stdout', 0, 0, 1));
    for (const r of records) expect(collectText((out) => writer.write(r, out))).toBe(recordId(r));
  });

  it('hands its writer one buffer per container, rewritten per id (EntryWriter copies what it is given)', () => {
    const writer = new RecordIdWriter();
    const c = container('b'.repeat(64));
    const copies: string[] = [];
    const kept: Uint8Array[] = [];
    for (let i = 0; i < 3; i++) {
      writer.write(record(c, 'stdout', 1, i, 0), { text: () => undefined, ascii: () => undefined, bytes: (b) => { copies.push(Buffer.from(b).toString('latin1')); kept.push(b); } });
    }
    expect(new Set(copies).size).toBe(3);
    expect(kept[0]).toBe(kept[2]); // the same scratch buffer: EntryWriter must copy (BatchBuilder does)
  });
});
