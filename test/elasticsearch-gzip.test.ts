/** The bulk body's gzip settings: one zlib output piece (one thread-pool trip) for a real batch. */
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { gzipChunkBytes } from '../sinks/elasticsearch.js';
import { DocumentBuilder } from '../sinks/elasticsearch/document.js';
import { resolveTarget } from '../sinks/elasticsearch/target.js';
import { BatchBuilder } from '../sinks/sink.js';
import { record } from './support/records.js';

/** A default-sized batch (es-batch-docs 2000) of documents, as the sink encodes them. */
function bulkBody(line: (i: number) => string): Buffer {
  const documents = new DocumentBuilder({ target: resolveTarget('logs-docker-default', 'auto'), eventOriginal: false });
  const builder = new BatchBuilder();
  for (let i = 0; i < 2000; i++) {
    documents.writeEntry(record(line(i), i * 1013), 'normalised', builder);
    builder.endEntry();
  }
  return Buffer.from(builder.seal(false).bytes);
}

describe('gzipChunkBytes', () => {
  it('holds the gzipped body of 2,000 short lines in one piece (zlib default: 16 KiB pieces)', () => {
    const body = bulkBody((i) => String(i + 1));
    const gzipped = gzipSync(body, { level: 1 }).length;
    expect(gzipped).toBeGreaterThan(16 * 1024); // the default would take several trips
    expect(gzipped).toBeLessThanOrEqual(gzipChunkBytes(body.length));
  });

  it('holds the gzipped body of 2,000 varied 200-byte lines in one piece', () => {
    let seed = 7;
    const noise = (): string => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed.toString(36);
    };
    const body = bulkBody((i) => `GET /api/v1/items/${noise()} user=${noise()} took=${i % 97}ms ${noise()}${noise()}`.padEnd(200, noise()));
    expect(gzipSync(body, { level: 1 }).length).toBeLessThanOrEqual(gzipChunkBytes(body.length));
  });

  it('stays between 64 KiB and 1 MiB', () => {
    expect(gzipChunkBytes(0)).toBe(64 * 1024);
    expect(gzipChunkBytes(100)).toBe(64 * 1024);
    expect(gzipChunkBytes(1_000_000)).toBe(250_000);
    expect(gzipChunkBytes(50_000_000)).toBe(1 << 20);
  });
});
