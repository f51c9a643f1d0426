import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { elasticsearchSink } from '../sinks/elasticsearch.js';
import { elasticsearchOptions } from '../sinks/elasticsearch/options.js';
import { BatchBuilder, EncodedBatch, FatalSinkError, RetryableSinkError, recordId } from '../sinks/sink.js';
import type { ContainerMeta, LogRecord, Sink, WriteOutcome } from '../sinks/sink.js';
import { parseTable } from '../src/option-table.js';
import { bigIntToParts } from '../src/time.js';
import { startFakeEs } from './support/fake-es.js';
import type { FakeEs, JsonObject } from './support/fake-es.js';

const DS = 'logs-docker-default';

function meta(n: number, overrides: Partial<ContainerMeta> = {}): ContainerMeta {
  const id = String(n).repeat(64).slice(0, 64);
  return { id, name: `app-${n}`, imageName: 'busybox:1.36', imageId: `sha256:${'b'.repeat(64)}`, tag: id.slice(0, 12), attrs: {}, labels: { 'com.example.team': 't' }, hostname: 'host-1', ...overrides };
}

const CLOCK_START = 1_700_000_000_000_000_000n;
let clock = CLOCK_START;
function records(container: ContainerMeta, lines: readonly string[], source: 'stdout' | 'stderr' = 'stdout'): LogRecord[] {
  return lines.map((line) => ({ container, source, timeNano: bigIntToParts((clock += 1_000n)), line: Buffer.from(line), truncated: false, seq: 0 }));
}

interface Captured {
  readonly lines: JsonObject[];
  readonly logger: pino.Logger;
  readonly text: () => string;
}

function captureLogs(): Captured {
  const lines: JsonObject[] = [];
  let raw = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      raw += chunk.toString();
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as JsonObject);
      done();
    },
  });
  return { lines, logger: pino({ level: 'debug' }, stream), text: () => raw };
}

let es: FakeEs;
const open: Sink[] = [];

function sinkFor(config: Record<string, string>, logs: Captured = captureLogs(), url = es.url): Sink {
  const opts = parseTable(elasticsearchOptions, { 'es-url': url, 'es-timeout': '5s', ...config }, {});
  elasticsearchSink.validate?.(opts);
  const sink = elasticsearchSink.create(opts, { container: meta(1), logger: logs.logger, stateDir: '/nonexistent' });
  open.push(sink);
  return sink;
}

/** The _id of every stored doc of `target`, in acceptance order. */
const storedIds = (target = DS): string[] => es.docs(target).map((d) => d._id);
const messages = (target = DS): unknown[] => es.sources(target).map((s) => s['message']);
const retryOf = (o: WriteOutcome | void): readonly number[] => o?.retry ?? [];
const deadOf = (o: WriteOutcome | void) => o?.deadLetters ?? [];

/** The batch the core would hand the sink: each record encoded once by the sink, back to back. */
function batchOf(sink: Sink, rs: readonly LogRecord[]): EncodedBatch {
  return EncodedBatch.encode(sink, rs);
}

/** Encodes the records and writes them as one batch. */
const send = (sink: Sink, rs: readonly LogRecord[]): Promise<WriteOutcome | void> => sink.write(batchOf(sink, rs));

beforeAll(async () => {
  es = await startFakeEs();
});
beforeEach(() => {
  clock = CLOCK_START;
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
  es.reset();
});
afterAll(async () => {
  await es.close();
});

describe('elasticsearch sink against fake-es', () => {
  it('does no network I/O in create(): the first request the server sees is the first bulk', async () => {
    const sink = sinkFor({});
    expect(es.requests()).toHaveLength(0);
    await send(sink, records(meta(1), ['hello']));
    expect(es.requests().map((r) => `${r.method} ${r.path}`)).toEqual([`POST /${DS}/_bulk`]);
  });

  it('lands a clean batch exactly: every line once, in order, as ECS documents with stable ids', async () => {
    const sink = sinkFor({});
    const batch = [...records(meta(1), ['one', 'two']), ...records(meta(2), ['three'], 'stderr'), ...records(meta(1), ['four'])];
    const outcome = await send(sink, batch);
    expect(outcome).toEqual({ retry: [], deadLetters: [] });
    expect(storedIds()).toEqual(batch.map(recordId));
    expect(messages()).toEqual(['one', 'two', 'three', 'four']);
    expect(es.docs(DS)[2]?._source).toEqual({
      '@timestamp': '2023-11-14T22:13:20.000003000Z', message: 'three', stream: 'stderr',
      container: { id: meta(2).id, name: 'app-2', image: { name: 'busybox:1.36', id: `sha256:${'b'.repeat(64)}` }, labels: { com_example_team: 't' } },
      host: { name: 'host-1' }, tag: meta(2).id.slice(0, 12), data_stream: { type: 'logs', dataset: 'docker', namespace: 'default' },
    });
    expect(es.docs(DS).every((d) => d.opType === 'create')).toBe(true);
    const [bulk] = es.requests({ path: `/${DS}/_bulk` });
    expect(bulk?.query).toEqual({ filter_path: 'errors,items.*.error,items.*.status' });
    expect(bulk?.documents).toBe(4);
  });

  it('encodes a record as its action and document lines, and sends a batch as exactly its encoded bytes', async () => {
    const sink = sinkFor({ 'es-compress': 'false' });
    const [record] = records(meta(1), ['wire form']);
    const entry = batchOf(sink, [record as LogRecord]).texts()[0] as string;
    const lines = entry.split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe('');
    expect(JSON.parse(lines[0] ?? '')).toEqual({ create: { _id: recordId(record as LogRecord) } });
    expect(JSON.parse(lines[1] ?? '')).toMatchObject({ message: 'wire form', stream: 'stdout', container: { id: meta(1).id } });
    const batch = batchOf(sink, [record as LogRecord, ...records(meta(2), ['second'])]);
    await sink.write(batch);
    const [bulk] = es.requests({ path: `/${DS}/_bulk` });
    expect(bulk?.bodyBytes).toBe(batch.bytes.length);
    expect(es.docs(DS).map((d) => d.raw)).toEqual(batch.texts().map((t) => t.split('\n')[1]));
  });

  it('keys labels by the template verdict at encode time: normalised before the installer settled, dotted after', async () => {
    const sink = sinkFor({ 'es-templates': 'true' });
    // Encoded before the installer ran at all: normalised keys, which either mapping accepts.
    const early = batchOf(sink, records(meta(1), ['early']));
    expect(await sink.write(early)).toEqual({ retry: [], deadLetters: [] });
    // The write waited for the installer, which mapped container.labels as flattened.
    const late = batchOf(sink, records(meta(1), ['late']));
    expect(await sink.write(late)).toEqual({ retry: [], deadLetters: [] });
    expect(messages()).toEqual(['early', 'late']);
    expect(es.sources(DS).map((s) => (s['container'] as JsonObject)['labels'])).toEqual([{ com_example_team: 't' }, { 'com.example.team': 't' }]);
  });

  it('gzips bodies by default (fake-es decodes them) and sends plain NDJSON with es-compress=false', async () => {
    const gzipped = sinkFor({});
    await send(gzipped, records(meta(1), Array.from({ length: 50 }, (_, i) => `compressible line ${i} ${'x'.repeat(100)}`)));
    const [gz] = es.requests({ path: `/${DS}/_bulk` });
    expect(gz?.contentEncoding).toBe('gzip');
    expect(gz?.wireBytes).toBeLessThan((gz?.bodyBytes ?? 0) / 5);
    expect(es.docs(DS)).toHaveLength(50);
    es.reset();
    await send(sinkFor({ 'es-compress': 'false' }), records(meta(1), ['plain']));
    const [plain] = es.requests({ path: `/${DS}/_bulk` });
    expect(plain?.contentEncoding).toBeUndefined();
    expect(plain?.wireBytes).toBe(plain?.bodyBytes);
    expect(plain?.headers['content-type']).toBe('application/vnd.elasticsearch+x-ndjson; compatible-with=8');
    expect(messages()).toEqual(['plain']);
  });

  it('reports per-item 429 and 503 for retry, and a retry of exactly those lands the rest', async () => {
    const sink = sinkFor({});
    const batch = records(meta(1), ['a', 'b', 'c', 'd']);
    const [, b, c] = batch;
    es.faults.item({ status: 429, times: 1, match: (d) => d.id === recordId(b as LogRecord) });
    es.faults.item({ status: 503, times: 1, match: (d) => d.id === recordId(c as LogRecord) });
    const encoded = batchOf(sink, batch);
    const first = await sink.write(encoded);
    expect(retryOf(first)).toEqual([1, 2]);
    expect(deadOf(first)).toEqual([]);
    expect(messages()).toEqual(['a', 'd']);
    expect(await sink.write(encoded.select(retryOf(first)))).toEqual({ retry: [], deadLetters: [] });
    expect(new Set(storedIds())).toEqual(new Set(batch.map(recordId)));
    expect(es.docs(DS)).toHaveLength(4);
  });

  it('reports a per-item 400 as a dead letter with the Elasticsearch reason, delivering the others', async () => {
    const sink = sinkFor({});
    const batch = records(meta(1), ['ok', 'bad', 'ok too']);
    const bad = batch[1] as LogRecord;
    es.faults.item({ status: 400, errorType: 'document_parsing_exception', reason: '[1:77] failed to parse field [container.labels.x] of type [keyword]', match: (d) => d.id === recordId(bad) });
    const outcome = await send(sink, batch);
    expect(retryOf(outcome)).toEqual([]);
    expect(deadOf(outcome)).toEqual([{ index: 1, reason: 'elasticsearch refused the document: 400 document_parsing_exception: [1:77] failed to parse field [container.labels.x] of type [keyword]' }]);
    expect(messages()).toEqual(['ok', 'ok too']);
  });

  it('counts 409 on create as delivered: a re-sent batch stores nothing twice', async () => {
    const sink = sinkFor({});
    const batch = records(meta(1), ['x', 'y']);
    const encoded = batchOf(sink, batch);
    await sink.write(encoded);
    expect(await sink.write(encoded)).toEqual({ retry: [], deadLetters: [] });
    expect(storedIds()).toEqual(batch.map(recordId));
    expect(es.stats().conflicts).toBe(2);
  });

  it('rejects with RetryableSinkError on request-level 503 and 429, after exactly one attempt', async () => {
    const sink = sinkFor({});
    for (const status of [503, 429]) {
      es.reset();
      es.faults.request({ fault: { kind: 'status', status }, times: 1 });
      const batch = batchOf(sink, records(meta(1), ['r']));
      const failure = await sink.write(batch).then(() => undefined, (err: unknown) => err);
      expect(failure).toBeInstanceOf(RetryableSinkError);
      expect((failure as Error).message).toMatch(new RegExp(`^elasticsearch answered ${status}: `));
      // The client made no retry of its own (maxRetries 0): the core's backoff decides when to retry.
      expect(es.requests({ path: `/${DS}/_bulk` })).toHaveLength(1);
      expect(await sink.write(batch)).toEqual({ retry: [], deadLetters: [] });
      expect(es.requests({ path: `/${DS}/_bulk` }).map((r) => r.status)).toEqual([status, 200]);
      expect(messages()).toEqual(['r']);
    }
  });

  it('rejects with FatalSinkError on a request-level 4xx that retrying cannot fix', async () => {
    es.faults.request({ fault: { kind: 'status', status: 400, errorType: 'illegal_argument_exception', reason: 'pipeline with id [nope] does not exist' } });
    await expect(send(sinkFor({ 'es-pipeline': 'nope' }), records(meta(1), ['p']))).rejects.toThrow(new FatalSinkError('elasticsearch answered 400: illegal_argument_exception: pipeline with id [nope] does not exist'));
  });

  it('rejects with RetryableSinkError when the answer is slower than es-timeout, and the retry does not duplicate', async () => {
    // undici checks timeouts on a coarse (about 1 s) tick, so this takes about a second.
    const sink = sinkFor({ 'es-timeout': '200ms' });
    const batch = records(meta(1), ['slow 1', 'slow 2']);
    const encoded = batchOf(sink, batch);
    es.faults.request({ fault: { kind: 'delay', ms: Number.POSITIVE_INFINITY }, times: 1 });
    await expect(sink.write(encoded)).rejects.toThrow(/did not answer within es-timeout/);
    // The slow request was processed server-side: the retry meets 409s and counts them as delivered.
    expect(await sink.write(encoded)).toEqual({ retry: [], deadLetters: [] });
    expect(storedIds()).toEqual(batch.map(recordId));
  });

  it('rejects with RetryableSinkError when the connection is reset mid-request', async () => {
    const sink = sinkFor({});
    es.faults.request({ fault: { kind: 'reset' }, times: 1 });
    await expect(send(sink, records(meta(1), ['reset']))).rejects.toThrow(/cannot reach elasticsearch/);
    expect(es.docs(DS)).toHaveLength(0);
  });

  it('rejects with RetryableSinkError while the connection is refused, and lands once the server is back', async () => {
    const sink = sinkFor({});
    const batch = batchOf(sink, records(meta(1), ['refused']));
    await es.stop();
    try {
      await expect(sink.write(batch)).rejects.toThrow(RetryableSinkError);
    } finally {
      await es.start();
    }
    expect(await sink.write(batch)).toEqual({ retry: [], deadLetters: [] });
    expect(messages()).toEqual(['refused']);
  });

  it('splits on 413 until the parts fit, and every line lands once, in order', async () => {
    const sink = sinkFor({});
    const lines = Array.from({ length: 8 }, (_, i) => `line ${i} ${'z'.repeat(300)}`);
    await send(sink, records(meta(2), [lines[0] ?? '']));
    const oneDoc = es.requests()[0]?.bodyBytes ?? 0;
    es.reset();
    // Two documents fit, four do not: 8 → 413, 4 → 413 (twice), then four requests of 2.
    es.faults.maxBodyBytes = Math.floor(oneDoc * 2.5);
    const batch = records(meta(1), lines);
    expect(await send(sink, batch)).toEqual({ retry: [], deadLetters: [] });
    expect(storedIds()).toEqual(batch.map(recordId));
    const answered = es.requests({ path: `/${DS}/_bulk` }).map((r) => [r.status, r.documents]);
    expect(answered).toEqual([[413, 0], [413, 0], [200, 2], [200, 2], [413, 0], [200, 2], [200, 2]]);
  });

  it('reports item outcomes of a split part by their index in the whole batch', async () => {
    const sink = sinkFor({});
    const batch = records(meta(1), Array.from({ length: 4 }, (_, i) => `part ${i} ${'q'.repeat(300)}`));
    const encoded = batchOf(sink, batch);
    // Either half fits, the whole does not: one 413, then two requests of 2.
    es.faults.maxBodyBytes = Math.max(encoded.range(0, 2).length, encoded.range(2, 4).length);
    es.faults.item({ status: 400, errorType: 'mapper_parsing_exception', reason: 'bad', match: (d) => d.id === recordId(batch[2] as LogRecord) });
    es.faults.item({ status: 429, times: 1, match: (d) => d.id === recordId(batch[3] as LogRecord) });
    const outcome = await sink.write(encoded);
    expect(es.requests({ path: `/${DS}/_bulk` }).map((r) => [r.status, r.documents])).toEqual([[413, 0], [200, 2], [200, 2]]);
    expect(retryOf(outcome)).toEqual([3]);
    expect(deadOf(outcome)).toEqual([{ index: 2, reason: 'elasticsearch refused the document: 400 mapper_parsing_exception: bad' }]);
    expect(messages()).toEqual([`part 0 ${'q'.repeat(300)}`, `part 1 ${'q'.repeat(300)}`]);
  });

  it('dead-letters a single document that alone is over the size limit', async () => {
    const sink = sinkFor({});
    const batch = batchOf(sink, records(meta(1), ['small', 'y'.repeat(5000)]));
    es.faults.maxBodyBytes = 2000;
    const outcome = await sink.write(batch);
    expect(deadOf(outcome).map((d) => d.index)).toEqual([1]);
    expect(deadOf(outcome)[0]?.reason).toContain(`too large (413, ${batch.entry(1).length} bytes of NDJSON)`);
    expect(messages()).toEqual(['small']);
  });

  it('reports precisely when one half of a split fails at request level', async () => {
    const sink = sinkFor({});
    const batch = records(meta(1), Array.from({ length: 4 }, (_, i) => `half ${i} ${'h'.repeat(300)}`));
    es.faults.maxBodyBytes = 1600;
    // First request (whole batch) gets 413; the second (first half) is then answered 503.
    let seen = 0;
    es.faults.request({ fault: { kind: 'status', status: 503 }, times: 1, match: (r) => r.path.endsWith('/_bulk') && ++seen === 2 });
    const outcome = await send(sink, batch);
    expect(retryOf(outcome)).toEqual([0, 1]);
    expect(deadOf(outcome)).toEqual([]);
    expect(messages()).toEqual([`half 2 ${'h'.repeat(300)}`, `half 3 ${'h'.repeat(300)}`]);
  });

  it('sends basic auth and API keys as Elasticsearch expects them', async () => {
    const secured = await startFakeEs({ auth: { basic: { username: 'shiplog', password: 's3cret' }, apiKey: Buffer.from('kid:kval').toString('base64') } });
    try {
      await send(sinkFor({ 'es-username': 'shiplog', 'es-password': 's3cret' }, captureLogs(), secured.url), records(meta(1), ['basic']));
      await send(sinkFor({ 'es-api-key': 'kid:kval' }, captureLogs(), secured.url), records(meta(1), ['api key']));
      await expect(send(sinkFor({}, captureLogs(), secured.url), records(meta(1), ['anonymous']))).rejects.toThrow(/401: security_exception.*es-api-key/);
      expect(secured.requests().map((r) => r.headers.authorization)).toEqual([
        `Basic ${Buffer.from('shiplog:s3cret').toString('base64')}`,
        `ApiKey ${Buffer.from('kid:kval').toString('base64')}`,
        undefined,
      ]);
      expect(secured.sources(DS).map((s) => s['message'])).toEqual(['basic', 'api key']);
    } finally {
      await secured.close();
    }
  });

  it('never logs secrets', async () => {
    const logs = captureLogs();
    const sink = sinkFor({ 'es-username': 'u', 'es-password': 'pa55-secret-word', 'es-templates': 'true' }, logs);
    await send(sink, records(meta(1), ['x']));
    expect(logs.lines.some((l) => l['msg'] === 'elasticsearch sink created')).toBe(true);
    expect(logs.text()).not.toContain('pa55-secret-word');
  });

  it('names the ingest pipeline on the request', async () => {
    await send(sinkFor({ 'es-pipeline': 'parse-nginx' }), records(meta(1), ['p']));
    expect(es.requests({ path: `/${DS}/_bulk` })[0]?.query['pipeline']).toBe('parse-nginx');
    expect(es.docs(DS)[0]?.pipeline).toBe('parse-nginx');
  });

  it('writes a dated index per record time with create and ids, and no data_stream fields', async () => {
    const sink = sinkFor({ 'es-index': 'docker-%Y.%m.%d' });
    const container = meta(1);
    const batch: LogRecord[] = [1_700_006_399_000_000_000n, 1_700_006_400_000_000_000n].map((t) => ({ container, source: 'stdout', timeNano: bigIntToParts(t), line: Buffer.from(String(t)), truncated: false, seq: 0 }));
    const encoded = batchOf(sink, batch);
    expect(await sink.write(encoded)).toEqual({ retry: [], deadLetters: [] });
    expect(await sink.write(encoded)).toEqual({ retry: [], deadLetters: [] });
    expect(es.targets().sort()).toEqual(['docker-2023.11.14', 'docker-2023.11.15']);
    expect(storedIds('docker-2023.11.14')).toEqual([recordId(batch[0] as LogRecord)]);
    expect(es.docs('docker-2023.11.15')[0]?._source['data_stream']).toBeUndefined();
    expect(es.requests({ path: '/_bulk' })).toHaveLength(2);
  });

  it('refuses a server that is not Elasticsearch as a fatal error', async () => {
    const impostor = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"errors":false}'));
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(impostor.address() as AddressInfo).port}`;
      await expect(send(sinkFor({}, captureLogs(), url), records(meta(1), ['x']))).rejects.toThrow(new FatalSinkError('the server at es-url is not Elasticsearch (no "X-Elastic-Product: Elasticsearch" header; OpenSearch is not supported by this client)'));
    } finally {
      impostor.closeAllConnections();
      await new Promise<void>((resolve) => impostor.close(() => resolve()));
    }
  });

  it('warns when certificate checks are off', () => {
    const logs = captureLogs();
    sinkFor({ 'es-tls-skip-verify': 'true' }, logs, 'https://127.0.0.1:1');
    expect(logs.lines.find((l) => l['level'] === 40)?.['msg']).toMatch(/es-tls-skip-verify=true/);
  });

  it('resolves an empty batch without a request, and refuses writes after close', async () => {
    const sink = sinkFor({});
    expect(await sink.write(EncodedBatch.of([]))).toEqual({});
    await sink.close();
    await expect(send(sink, records(meta(1), ['late']))).rejects.toThrow(RetryableSinkError);
    expect(es.requests()).toHaveLength(0);
  });
});
