/**
 * Metrics and health, driven through a real Driver: FIFOs written the way dockerd does, the plugin API
 * over fastify.inject, the file sink and the Elasticsearch sink against fake-es. Every assertion reads
 * the Prometheus text a scrape returns (or the /health JSON), by metric name and labels.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Driver } from '../src/driver.js';
import { frame } from '../src/entry.js';
import { StreamJournal } from '../src/journal.js';
import { ShiplogMetrics } from '../src/metrics.js';
import { type ListenAddress, type MetricsServer, parseListenAddress, startMetricsServer } from '../src/metrics-server.js';
import { buildServer } from '../src/server.js';
import { readSettings } from '../src/settings.js';
import { hideUrlCredentials, TrackedSinkPool } from '../src/sink-health.js';
import { LogStore } from '../src/store/store.js';
import { elasticsearchSink } from '../sinks/elasticsearch.js';
import { fileSink } from '../sinks/file.js';
import type { SinkDefinition } from '../sinks/sink.js';
import { optionTexts, parseTable } from '../src/option-table.js';
import { container } from './support/records.js';
import { CID, entryFrame, fifoMaker, info } from './support/driver-fixture.js';
import { type FakeEs, startFakeEs } from './support/fake-es.js';

const silent = pino({ level: 'silent' });

/** A Driver with the pieces main.ts wires for metrics: TrackedSinkPool, ShiplogMetrics on the plugin server. */
async function meteredDriver(env: Record<string, string> = {}, defaultMetrics = false) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shiplog-metrics-'));
  const fifoDir = path.join(dir, 'logging');
  fs.mkdirSync(fifoDir);
  const fullEnv = { STATE_DIR: path.join(dir, 'state'), LOG_OPT_FILE_PATH: path.join(dir, 'files', '{{.Name}}.log'), ...env };
  const settings = readSettings(fullEnv);
  const store = new LogStore({ root: path.join(settings['state-dir'], 'containers'), budgetBytes: settings['store-budget'], logger: silent });
  await store.init();
  const sinks = new TrackedSinkPool(settings['state-dir'], silent, settings['sink-queue-size'], 1000, { spoolMaxBytes: settings['spool-max-size'] });
  const journal = new StreamJournal(path.join(settings['state-dir'], 'streams'));
  await journal.init();
  const driver = new Driver({ settings, env: fullEnv, store, sinks, logger: silent, fifoDir, journal });
  const app = buildServer(driver, silent);
  const metrics = new ShiplogMetrics({ driver, sinks, store, storeBudgetBytes: settings['store-budget'] }, { defaultMetrics });
  metrics.instrument(app);
  await app.ready();

  const makeFifo = fifoMaker(fifoDir);
  const post = (url: string, body?: unknown) => app.inject({ method: 'POST', url, payload: body === undefined ? '' : JSON.stringify(body) });

  /** StartLogging → frames → StopLogging → EOF, resolved once the stream has ended and settled. */
  async function runStream(frames: Buffer[], config: Record<string, string> = {}, tail?: Buffer): Promise<void> {
    const fifo = makeFifo();
    expect((await post('/LogDriver.StartLogging', { File: fifo.file, Info: info(config) })).json()).toEqual({ Err: '' });
    await fifo.writeAsync(Buffer.concat(tail === undefined ? frames : [...frames, tail]));
    expect((await post('/LogDriver.StopLogging', { File: fifo.file })).json()).toEqual({ Err: '' });
    fifo.close();
    await driver.whenEnded(fifo.file);
  }

  return {
    dir, driver, sinks, store, metrics, app, makeFifo, post, runStream,
    scrape: async () => parseProm(await metrics.registry.metrics()),
    close: async () => { await app.close(); await driver.shutdown(); await sinks.closeAll(200); await store.close(); },
  };
}

interface Sample { name: string; labels: Record<string, string>; value: number }

function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = l[2] as string;
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample of `name` whose labels include `labels`; undefined when there is none. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${hits.length} series`);
  return hits[0]?.value;
}

type Fixture = Awaited<ReturnType<typeof meteredDriver>>;
const open: Fixture[] = [];
afterEach(async () => { for (const f of open.splice(0)) await f.close(); });
async function fixture(env: Record<string, string> = {}, defaultMetrics = false): Promise<Fixture> {
  const f = await meteredDriver(env, defaultMetrics);
  open.push(f);
  return f;
}

let es: FakeEs;
beforeAll(async () => { es = await startFakeEs(); });
afterAll(async () => { await es.close(); });

describe('the metrics table in README', () => {
  it("lists every shiplog_ metric the registry serves, with its type (an SRE wires alerts from it)", async () => {
    const f = await fixture();
    const readme = fs.readFileSync(path.join(import.meta.dirname, '../README.md'), 'utf8');
    // Rows: | `name`[, `name`…] | type | labels | meaning |
    const documented = new Map<string, string>();
    for (const row of readme.split('\n').filter((l) => l.startsWith('| `shiplog_'))) {
      const [names = '', type = ''] = row.slice(2).split(' | ');
      for (const [, name] of names.matchAll(/`(shiplog_[a-z_]+)`/g)) documented.set(name as string, type);
    }
    const served = (await f.metrics.registry.getMetricsAsJSON()).filter((m) => m.name.startsWith('shiplog_'));
    expect(served.length).toBeGreaterThan(10);
    for (const m of served) expect(documented.get(m.name), m.name).toBe(String(m.type));
  });
});

describe('FIFO and stream metrics', () => {
  it('counts bytes, entries and lines read, per live container too, and keeps the totals after the stream ends', async () => {
    const f = await fixture();
    const fifo = f.makeFifo();
    expect((await f.post('/LogDriver.StartLogging', { File: fifo.file, Info: info() })).json()).toEqual({ Err: '' });
    const frames = Array.from({ length: 25 }, (_, i) => entryFrame(`line ${i}`, i, i % 5 === 0 ? 'stderr' : 'stdout'));
    const bytes = frames.reduce((n, b) => n + b.length, 0);
    await fifo.writeAsync(Buffer.concat(frames));
    await vi.waitFor(async () => expect(value(await f.scrape(), 'shiplog_fifo_entries_total')).toBe(25));

    const live = await f.scrape();
    expect(value(live, 'shiplog_fifo_read_bytes_total')).toBe(bytes);
    expect(value(live, 'shiplog_lines_total')).toBe(25);
    expect(value(live, 'shiplog_streams')).toBe(1);
    const who = { container_id: CID.slice(0, 12), container_name: 'demo' };
    expect(value(live, 'shiplog_container_read_bytes_total', who)).toBe(bytes);
    expect(value(live, 'shiplog_container_lines_total', who)).toBe(25);

    await f.post('/LogDriver.StopLogging', { File: fifo.file });
    fifo.close();
    await f.driver.whenEnded(fifo.file);
    const after = await f.scrape();
    expect(value(after, 'shiplog_fifo_read_bytes_total')).toBe(bytes);
    expect(value(after, 'shiplog_fifo_entries_total')).toBe(25);
    expect(value(after, 'shiplog_lines_total')).toBe(25);
    expect(value(after, 'shiplog_streams')).toBe(0);
    // Per-container series exist only while the container logs: cardinality stays bounded by what runs.
    expect(after.filter((s) => s.name.startsWith('shiplog_container_'))).toEqual([]);

    // A second stream adds to the totals.
    await f.runStream([entryFrame('again', 100)]);
    const again = await f.scrape();
    expect(value(again, 'shiplog_fifo_entries_total')).toBe(26);
    expect(value(again, 'shiplog_fifo_read_bytes_total')).toBe(bytes + entryFrame('again', 100).length);
  });

  it('counts skipped frames by reason: corrupt, oversize, bad source, truncated at EOF', async () => {
    const f = await fixture();
    // One stream per reason: after a corrupt or oversize frame the reader scans for the next frame start.
    await f.runStream([entryFrame('ok', 1), frame(Buffer.from([0xff, 0xff, 0xff, 0xff])), entryFrame('ok2', 2)]);
    const oversize = Buffer.alloc(4);
    oversize.writeUInt32BE(1_000_001, 0);
    await f.runStream([oversize, entryFrame('after oversize', 3)]);
    await f.runStream([entryFrame('from nowhere', 4, 'stdin')]);
    await f.runStream([entryFrame('whole', 5)], {}, entryFrame('cut short', 6).subarray(0, 8));
    const s = await f.scrape();
    expect(value(s, 'shiplog_fifo_frames_skipped_total', { reason: 'corrupt' })).toBe(1);
    expect(value(s, 'shiplog_fifo_frames_skipped_total', { reason: 'oversize' })).toBe(1);
    expect(value(s, 'shiplog_fifo_frames_skipped_total', { reason: 'bad_source' })).toBe(1);
    expect(value(s, 'shiplog_fifo_frames_skipped_total', { reason: 'truncated_at_eof' })).toBe(1);
    expect(value(s, 'shiplog_fifo_resync_skipped_bytes_total')).toBe(f.driver.endedStreamStats.skipped.resyncBytes);
    // The bad-source entry is decoded (and stored as dockerd sent it) but never becomes a line.
    expect(value(s, 'shiplog_fifo_entries_total')).toBe(5);
    expect(value(s, 'shiplog_lines_total')).toBe(4);
  });

  it('shows the store size on disk and its budget', async () => {
    const f = await fixture({ STORE_BUDGET: '50m' });
    await f.runStream(Array.from({ length: 10 }, (_, i) => entryFrame(`stored ${i}`, i)));
    const s = await f.scrape();
    const dir = path.join(f.dir, 'state/containers', CID);
    const onDisk = fs.readdirSync(dir).filter((n) => n.startsWith('container.log')).reduce((n, name) => n + fs.statSync(path.join(dir, name)).size, 0);
    expect(onDisk).toBeGreaterThan(0);
    expect(value(s, 'shiplog_store_bytes')).toBe(onDisk);
    expect(value(s, 'shiplog_store_budget_bytes')).toBe(50_000_000);
  });
});

describe('plugin API metrics', () => {
  it('counts calls by name, ReadLogs included, and ReadLogs streams in progress', async () => {
    const f = await fixture();
    const before = await f.scrape();
    expect(value(before, 'shiplog_plugin_requests_total', { call: 'LogDriver.ReadLogs' })).toBe(0);
    await f.runStream([entryFrame('x', 1)]);
    for (let i = 0; i < 3; i++) {
      expect((await f.post('/LogDriver.ReadLogs', { Info: info(), Config: { Tail: -1, Follow: false } })).statusCode).toBe(200);
    }
    await f.post('/LogDriver.Capabilities');
    await f.post('/Nope');
    const s = await f.scrape();
    expect(value(s, 'shiplog_plugin_requests_total', { call: 'LogDriver.ReadLogs' })).toBe(3);
    expect(value(s, 'shiplog_plugin_requests_total', { call: 'LogDriver.StartLogging' })).toBe(1);
    expect(value(s, 'shiplog_plugin_requests_total', { call: 'LogDriver.StopLogging' })).toBe(1);
    expect(value(s, 'shiplog_plugin_requests_total', { call: 'LogDriver.Capabilities' })).toBe(1);
    expect(value(s, 'shiplog_plugin_requests_total', { call: 'other' })).toBe(1);
    expect(value(s, 'shiplog_readlogs_streams')).toBe(0);
  });
});

describe('sink metrics and health', () => {
  it('file sink: records received and delivered, kept after the instance closes', async () => {
    const f = await fixture();
    await f.runStream(Array.from({ length: 12 }, (_, i) => entryFrame(`to file ${i}`, i)));
    // The stream's end releases the sink instance; it closes once it has delivered everything, and
    // its totals move to the closed-instance counts when close() finishes (after the pool forgot it).
    await vi.waitFor(() => expect(f.sinks.size).toBe(0), { timeout: 10_000 });
    // The pool forgets the instance before its close() (spool closed and synced) finishes; until then
    // it is still an open instance, with its gauges.
    await vi.waitFor(async () => expect(value(await f.scrape(), 'shiplog_sink_queued_bytes', { sink: 'file' })).toBeUndefined(), { timeout: 10_000 });
    const s = await f.scrape();
    expect(value(s, 'shiplog_sink_records_received_total', { sink: 'file' })).toBe(12);
    expect(value(s, 'shiplog_sink_records_delivered_total', { sink: 'file' })).toBe(12);
    expect(value(s, 'shiplog_sink_records_retried_total', { sink: 'file' })).toBe(0);
    expect(value(s, 'shiplog_sink_records_dead_lettered_total', { sink: 'file' })).toBe(0);
    expect(value(s, 'shiplog_sink_instances', { sink: 'file', state: 'ok' })).toBeUndefined(); // no open instance
    expect(fs.readFileSync(path.join(f.dir, 'files/demo.log'), 'utf8').trim().split('\n')).toHaveLength(12);
  });

  it('elasticsearch: retried and dead-lettered records counted; health says retrying with the last error during an outage, ok after', async () => {
    es.reset();
    const f = await fixture();
    const config = { 'sinks': 'elasticsearch', 'es-url': es.url, 'es-flush-interval': '10ms', 'es-backoff-max': '50ms' };
    es.faults.item({ status: 429, times: 1, match: (d) => !String(d.source?.message).startsWith('bad') });
    es.faults.item({ status: 400, errorType: 'document_parsing_exception', reason: 'failed to parse field [message]', match: (d) => String(d.source?.message).startsWith('bad') });
    const lines = [...Array.from({ length: 8 }, (_, i) => `good ${i}`), 'bad 0', 'bad 1'];
    await f.runStream(lines.map((l, i) => entryFrame(l, i)), config);
    await vi.waitFor(() => expect(f.sinks.size).toBe(0), { timeout: 10_000 });
    const es1 = { sink: 'elasticsearch' };
    await vi.waitFor(async () => expect(value(await f.scrape(), 'shiplog_sink_records_received_total', es1)).toBe(10), { timeout: 10_000 });
    const s = await f.scrape();
    expect(value(s, 'shiplog_sink_records_received_total', es1)).toBe(10);
    expect(value(s, 'shiplog_sink_records_delivered_total', es1)).toBe(8);
    expect(value(s, 'shiplog_sink_records_retried_total', es1)).toBe(8);
    expect(value(s, 'shiplog_sink_records_dead_lettered_total', es1)).toBe(2);
    expect(es.docs()).toHaveLength(8);

    // Outage: every bulk request fails with 503 while a container logs.
    es.faults.clear();
    const outage = es.faults.request({ fault: { kind: 'status', status: 503, reason: 'cluster is down for the test' } });
    const fifo = f.makeFifo();
    await f.post('/LogDriver.StartLogging', { File: fifo.file, Info: info(config) });
    await fifo.writeAsync(Buffer.concat([entryFrame('during outage', 50), entryFrame('during outage 2', 51)]));
    await vi.waitFor(() => expect(f.metrics.health().sinks[0]?.state).toBe('retrying'), { timeout: 10_000 });
    const down = f.metrics.health();
    expect(down.status).toBe('degraded');
    expect(down.streams).toBe(1);
    expect(down.sinks).toHaveLength(1);
    expect(down.sinks[0]).toMatchObject({ sink: 'elasticsearch', state: 'retrying', inFlightBatches: 1 });
    expect(down.sinks[0]?.lastError).toMatch(/503|cluster is down/);
    expect(down.sinks[0]?.backlogBytes).toBeGreaterThan(0);
    expect(down.sinks[0]?.instance).toContain(es.url);
    const during = await f.scrape();
    expect(value(during, 'shiplog_sink_instances', { sink: 'elasticsearch', state: 'retrying' })).toBe(1);
    expect(value(during, 'shiplog_sink_queued_bytes', es1)).toBe(down.sinks[0]?.backlogBytes);
    expect(value(during, 'shiplog_sink_in_flight_batches', es1)).toBe(1);

    outage.remove();
    await vi.waitFor(() => expect(es.docs()).toHaveLength(10), { timeout: 10_000 });
    await vi.waitFor(() => expect(f.metrics.health()).toMatchObject({ status: 'ok', sinks: [{ state: 'ok', backlogBytes: 0, inFlightBatches: 0 }] }));
    const up = await f.scrape();
    expect(value(up, 'shiplog_sink_records_delivered_total', es1)).toBe(10);
    expect(value(up, 'shiplog_sink_instances', { sink: 'elasticsearch', state: 'ok' })).toBe(1);
    expect(value(up, 'shiplog_sink_instances', { sink: 'elasticsearch', state: 'retrying' })).toBeUndefined();
    await f.post('/LogDriver.StopLogging', { File: fifo.file });
    fifo.close();
    await f.driver.whenEnded(fifo.file);
  });

  it('drops past the memory bound are counted by sink and reason', async () => {
    // 1600 bytes hold 3 of these entries (an ECS bulk entry of 506 bytes with host.name "testhost",
    // plus 16 bytes of accounting each); no disk spool behind it.
    const f = await fixture({ SINK_QUEUE_SIZE: '1600', SPOOL_MAX_SIZE: '0', HOST_NAME: 'testhost' });
    // A server of its own that never answers a bulk request, closed at the end so the request fails
    // and the runner can close (a write in flight is not abortable).
    const hung = await startFakeEs();
    hung.faults.request({ fault: { kind: 'delay', ms: Number.POSITIVE_INFINITY, when: 'before' } });
    try {
      const config = { 'sinks': 'elasticsearch', 'es-url': hung.url, 'es-flush-interval': '10ms' };
      await f.runStream(Array.from({ length: 20 }, (_, i) => entryFrame(`line${String(i).padStart(2, '0')}`, i)), config);
      const s = await f.scrape();
      expect(value(s, 'shiplog_sink_records_received_total', { sink: 'elasticsearch' })).toBe(20);
      expect(value(s, 'shiplog_sink_records_dropped_total', { sink: 'elasticsearch', reason: 'queue-full' })).toBe(17);
      expect(value(s, 'shiplog_sink_queued_bytes', { sink: 'elasticsearch' })).toBe(3 * (506 + 16));
    } finally {
      await hung.close();
    }
  });

  it('past the memory bound records go to the disk spool: counted, its bytes shown, all delivered once the backend is back', async () => {
    es.reset();
    const f = await fixture({ SINK_QUEUE_SIZE: '1600', HOST_NAME: 'testhost' });
    const outage = es.faults.request({ fault: { kind: 'status', status: 503 } });
    const config = { 'sinks': 'elasticsearch', 'es-url': es.url, 'es-flush-interval': '10ms', 'es-backoff-max': '50ms' };
    const es1 = { sink: 'elasticsearch' };
    const fifo = f.makeFifo();
    await f.post('/LogDriver.StartLogging', { File: fifo.file, Info: info(config) });
    await fifo.writeAsync(Buffer.concat(Array.from({ length: 20 }, (_, i) => entryFrame(`line${String(i).padStart(2, '0')}`, i))));
    await vi.waitFor(async () => expect(value(await f.scrape(), 'shiplog_sink_records_received_total', es1)).toBe(20));
    const s = await f.scrape();
    // 3 records fit in memory; from the first that does not, every record goes to the spool, in order.
    expect(value(s, 'shiplog_sink_records_spooled_total', es1)).toBe(17);
    expect(value(s, 'shiplog_sink_records_dropped_total', es1)).toBeUndefined();
    const h = f.metrics.health().sinks[0];
    expect(h?.spoolBytes).toBeGreaterThan(0);
    expect(value(s, 'shiplog_sink_spool_bytes', es1)).toBe(h?.spoolBytes);
    await vi.waitFor(() => expect(f.metrics.health().sinks[0]?.state).toBe('retrying'), { timeout: 10_000 });

    outage.remove();
    await vi.waitFor(() => expect(es.docs()).toHaveLength(20), { timeout: 10_000 });
    await vi.waitFor(async () => expect(value(await f.scrape(), 'shiplog_sink_records_delivered_total', es1)).toBe(20));
    await f.post('/LogDriver.StopLogging', { File: fifo.file });
    fifo.close();
    await f.driver.whenEnded(fifo.file);
  });

  it('the health probe around each sink passes on whether the core may reuse its batch buffers', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shiplog-probe-'));
    const pool = new TrackedSinkPool(dir, silent, 1 << 20, 1000, { spoolMaxBytes: 0 });
    const active = (definition: SinkDefinition, config: Record<string, string>) =>
      ({ definition, options: parseTable(definition.options, config, {}), raw: optionTexts(definition.options, config, {}) });
    const file = pool.acquire(active(fileSink as unknown as SinkDefinition, { 'file-path': path.join(dir, 'x.log') }), container);
    const es = pool.acquire(active(elasticsearchSink as unknown as SinkDefinition, { 'es-url': 'http://127.0.0.1:9' }), container);
    const plainEs = pool.acquire(active(elasticsearchSink as unknown as SinkDefinition, { 'es-url': 'http://127.0.0.1:9', 'es-compress': 'false' }), container);
    expect(file.sink.releasesBatchOnSettle).toBe(true);
    // Gzipped bodies are zlib's buffers; an uncompressed body is a view of the batch.
    expect(es.sink.releasesBatchOnSettle).toBe(true);
    expect(plainEs.sink.releasesBatchOnSettle).toBe(false);
    await pool.closeAll(100);
  });

  it('hides credentials of URLs in instance keys', () => {
    expect(hideUrlCredentials('elasticsearch es-url="https://elastic:s3cret@es1:9200,http://u:p@es2:9200" es-index="x"'))
      .toBe('elasticsearch es-url="https://***@es1:9200,http://***@es2:9200" es-index="x"');
  });
});

describe('default process metrics', () => {
  it('include event-loop lag, resident memory and CPU', async () => {
    const f = await fixture({}, true);
    const names = new Set((await f.scrape()).map((s) => s.name));
    for (const n of ['nodejs_eventloop_lag_seconds', 'nodejs_eventloop_lag_p99_seconds', 'process_resident_memory_bytes', 'process_cpu_seconds_total']) expect(names).toContain(n);
  });
});

describe('METRICS_ADDRESS', () => {
  it('is off by default and parses host:port, [v6]:port, :port and unix socket paths', () => {
    expect(readSettings({})['metrics-address']).toBeUndefined();
    expect(parseListenAddress('127.0.0.1:9464')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseListenAddress('localhost:0')).toEqual({ host: 'localhost', port: 0 });
    expect(parseListenAddress('[::1]:9464')).toEqual({ host: '::1', port: 9464 });
    expect(parseListenAddress(':9464')).toEqual({ host: '', port: 9464 });
    expect(parseListenAddress('/run/shiplog/metrics.sock')).toEqual({ path: '/run/shiplog/metrics.sock' });
    expect(readSettings({ METRICS_ADDRESS: '127.0.0.1:9464' })['metrics-address']).toEqual({ host: '127.0.0.1', port: 9464 });
  });

  it('refuses a malformed address with a message naming the setting', () => {
    for (const bad of ['9464', 'host:', 'host:99999', 'metrics.sock', '[::1]9464']) {
      expect(() => readSettings({ METRICS_ADDRESS: bad }), bad).toThrow(/invalid setting METRICS_ADDRESS for "metrics-address": .* is not host:port/);
    }
  });
});

describe('metrics server', () => {
  const servers: MetricsServer[] = [];
  afterEach(async () => { for (const s of servers.splice(0)) await s.close(); });

  function get(address: ListenAddress, urlPath: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
    return new Promise((resolve, reject) => {
      const target = 'path' in address ? { socketPath: address.path } : { host: address.host, port: address.port };
      const req = http.request({ ...target, path: urlPath, method }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => { body += c; }).on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'] ?? '', body }));
      });
      req.on('error', reject).end();
    });
  }

  it('serves /metrics as Prometheus text and /health as JSON on TCP and on a unix socket', async () => {
    const f = await fixture();
    await f.runStream([entryFrame('served', 1)]);
    const tcp = await startMetricsServer({ host: '127.0.0.1', port: 0 }, f.metrics, silent);
    servers.push(tcp);
    expect('port' in tcp.address && tcp.address.port).toBeGreaterThan(0);
    const sock = path.join(f.dir, 'run', 'metrics.sock');
    const unix = await startMetricsServer({ path: sock }, f.metrics, silent);
    servers.push(unix);

    for (const address of [tcp.address, unix.address]) {
      const m = await get(address, '/metrics');
      expect(m.status).toBe(200);
      expect(m.type).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(m.body).toContain('# TYPE shiplog_fifo_entries_total counter');
      expect(value(parseProm(m.body), 'shiplog_fifo_entries_total')).toBe(1);
      const h = await get(address, '/health');
      expect(h.status).toBe(200);
      expect(h.type).toBe('application/json');
      expect(JSON.parse(h.body)).toMatchObject({ status: 'ok', streams: 0 });
      expect((await get(address, '/other')).status).toBe(404);
      expect((await get(address, '/metrics', 'POST')).status).toBe(405);
    }
  });

  it('replaces a stale unix socket file and fails loudly on a port in use', async () => {
    const f = await fixture();
    const sock = path.join(f.dir, 'stale.sock');
    fs.writeFileSync(sock, '');
    const s = await startMetricsServer({ path: sock }, f.metrics, silent);
    servers.push(s);
    expect((await get(s.address, '/health')).status).toBe(200);
    const tcp = await startMetricsServer({ host: '127.0.0.1', port: 0 }, f.metrics, silent);
    servers.push(tcp);
    await expect(startMetricsServer(tcp.address, f.metrics, silent)).rejects.toThrow(/EADDRINUSE/);
  });
});
