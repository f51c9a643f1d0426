/**
 * The sink inside the core's SinkRunner (batching, backoff, dead letters), against fake-es with every
 * kind of fault at once: the final stored set must be exact — every line once, except the ones
 * Elasticsearch refused for good, which are in the dead-letter file with their reason.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { elasticsearchSink } from '../sinks/elasticsearch.js';
import { elasticsearchOptions } from '../sinks/elasticsearch/options.js';
import { recordId } from '../sinks/sink.js';
import type { ContainerMeta, LogRecord } from '../sinks/sink.js';
import { DeadLetterFile } from '../src/dead-letters.js';
import { parseTable } from '../src/option-table.js';
import { SinkRunner } from '../src/sink-runner.js';
import { bigIntToParts } from '../src/time.js';
import { startFakeEs } from './support/fake-es.js';
import type { FakeEs } from './support/fake-es.js';

const DS = 'logs-docker-default';
let es: FakeEs;

beforeAll(async () => {
  es = await startFakeEs();
});
afterAll(async () => {
  await es.close();
});

function container(n: number): ContainerMeta {
  return { id: `${n}`.padStart(64, 'c'), name: `c${n}`, imageName: 'img', imageId: '', tag: '', attrs: {}, labels: {}, hostname: 'h' };
}

describe('elasticsearch sink in the core SinkRunner', () => {
  it('ends with exactly the accepted lines under mixed faults, refused ones in dead letters with reasons', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'shiplog-es-runner-'));
    const logger = pino({ level: 'silent' });
    const opts = parseTable(elasticsearchOptions, { 'es-url': es.url, 'es-batch-docs': '25', 'es-flush-interval': '20ms', 'es-backoff-max': '50ms', 'es-timeout': '5s' }, {});
    const sink = elasticsearchSink.create(opts, { container: container(1), logger, stateDir });
    const deadLetters = DeadLetterFile.forSink(stateDir, 'elasticsearch', logger);
    const runner = new SinkRunner(sink, elasticsearchSink.batchLimits(opts), deadLetters, logger, 64 * 1024 * 1024);

    const all: LogRecord[] = [];
    let t = 1_700_000_000_000_000_000n;
    for (let i = 0; i < 300; i++) {
      const c = container(i % 3);
      all.push({ container: c, source: i % 5 === 0 ? 'stderr' : 'stdout', timeNano: bigIntToParts((t += 1000n)), line: Buffer.from(`line ${i} of ${c.name} ${'p'.repeat(i % 7 === 0 ? 600 : 20)}`), truncated: false, seq: 0 });
    }
    const id = (i: number): string => recordId(all[i] as LogRecord);
    const refused = new Set([id(17), id(250)]);
    es.faults.item({ status: 429, times: 2, match: (d) => d.id !== undefined && d.id.endsWith('0') });
    es.faults.item({ status: 503, times: 1, match: (d) => d.id === id(42) || d.id === id(43) });
    es.faults.item({ status: 400, errorType: 'document_parsing_exception', reason: 'failed to parse field [message]', match: (d) => d.id !== undefined && refused.has(d.id) });
    es.faults.request({ fault: { kind: 'status', status: 503 }, times: 2 });
    es.faults.request({ fault: { kind: 'reset', when: 'after-processing' }, times: 1 });
    es.faults.request({ fault: { kind: 'status', status: 429 }, times: 1 });
    es.faults.maxBodyBytes = 12_000;

    for (const r of all) runner.push(r);
    await runner.idle();
    await runner.close(1000);

    const stored = es.docs(DS).map((d) => d._id);
    expect(new Set(stored).size).toBe(stored.length);
    expect(new Set(stored)).toEqual(new Set(all.map(recordId).filter((i) => !refused.has(i))));
    // Per container, @timestamp order is the line order (the store order may differ after retries).
    for (const n of [0, 1, 2]) {
      const byTime = es.sources(DS)
        .filter((s) => (s['container'] as { name: string }).name === `c${n}`)
        .sort((a, b) => String(a['@timestamp']).localeCompare(String(b['@timestamp'])))
        .map((s) => s['message']);
      expect(byTime).toEqual(all.filter((r) => r.container.name === `c${n}` && !refused.has(recordId(r))).map((r) => r.line.toString()));
    }
    // A dead letter's entry is the bulk action line and the document line; the message is in the document.
    const letters = readFileSync(deadLetters.path, 'utf8').trim().split('\n').map((l) => {
      const { reason, entry } = JSON.parse(l) as { reason: string; entry: string };
      const document = JSON.parse(entry.split('\n')[1] ?? '') as { message: string };
      return { reason, message: document.message };
    });
    expect(letters.map((l) => l.message).sort()).toEqual([all[17], all[250]].map((r) => r?.line.toString()).sort());
    expect(letters.every((l) => l.reason === 'elasticsearch refused the document: 400 document_parsing_exception: failed to parse field [message]')).toBe(true);
    expect(runner.stats).toMatchObject({ delivered: 298, deadLettered: 2, dropped: {} });
    // Every injected request fault acted (a reset, whatever request it met, forced a whole-batch retry).
    expect(es.requests().filter((r) => r.fault !== undefined).map((r) => r.fault).sort()).toEqual(['reset', 'status', 'status', 'status']);
    expect(es.requests().some((r) => r.status === 413)).toBe(true);
  });
});
