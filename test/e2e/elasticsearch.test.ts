/**
 * The Elasticsearch sink end to end on a real dockerd: containers log through shiplog (a plain-process
 * plugin) to an ES-compatible server, and every test reads back what the server holds and compares it
 * with `docker logs --timestamps`, line for line, timestamp for timestamp.
 *
 * By default the server is test/support/fake-es.ts, started in this process on 127.0.0.1 (the driver
 * child process reaches it over TCP); it also injects the faults. With SHIPLOG_E2E_ES_URL set (and
 * optionally SHIPLOG_E2E_ES_API_KEY, SHIPLOG_E2E_ES_CA) the fault-free tests run against that real
 * cluster instead, reading back through `_refresh` + `_search`, and the fault tests are skipped.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type FakeEs, startFakeEs } from '../support/fake-es.js';
import { DRIVER_NAME, type DriverProcess, IMAGE, docker, dockerOk, startDriver, uniqueName, waitFor } from './harness.js';

const REAL_URL = process.env.SHIPLOG_E2E_ES_URL ?? '';
const REAL = REAL_URL !== '';
const REAL_API_KEY = process.env.SHIPLOG_E2E_ES_API_KEY ?? '';
const REAL_CA = process.env.SHIPLOG_E2E_ES_CA ?? '';
/** fake-es (shared server) requires this key, given to shiplog as id:key, so auth is exercised too. */
const FAKE_API_KEY = 'shiplog-e2e:not-a-secret';

const DS = 'logs-docker-default';
const LD = ['--log-driver', DRIVER_NAME];
/** Quick batches and retries, so faults resolve in a fraction of a second. */
const QUICK = ['--log-opt', 'es-flush-interval=100ms', '--log-opt', 'es-backoff-max=200ms'];

type Stream = 'stdout' | 'stderr';
type Json = Record<string, unknown>;

interface EsHit {
  _index: string;
  _id: string;
  _source: Json;
}

/** One line as `docker logs --timestamps` shows it. */
interface Line {
  ts: string;
  stream: Stream;
  message: string;
}

/** Elasticsearch's `ApiKey` credential: base64(id:key); an `id:key` is encoded as shiplog does. */
function apiKeyHeader(key: string): string {
  return key.includes(':') ? Buffer.from(key).toString('base64') : key;
}

/** Resolves with `p`, or fails after `ms` saying what did not happen (a deadline, not a sleep). */
async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms); });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

function globRe(target: string): RegExp {
  return new RegExp(`^${target.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
}

/**
 * The server the fault-free tests ship to and read back from, over its REST API (`_refresh`,
 * `_count`, `_search` with a term on container.id), the same way for fake-es and a real cluster.
 */
class Backend {
  constructor(
    readonly url: string,
    private readonly apiKey: string,
    readonly fake: FakeEs | undefined,
    private readonly ca = '',
  ) {}

  /** The log-opts that point a container at this server. */
  get logOpts(): string[] {
    const out = ['--log-opt', `es-url=${this.url}`];
    if (this.apiKey !== '') out.push('--log-opt', `es-api-key=${this.apiKey}`);
    if (this.ca !== '') out.push('--log-opt', `es-ca=${this.ca}`);
    return out;
  }

  async request(method: string, urlPath: string, body?: Json): Promise<Json> {
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (this.apiKey !== '') headers['authorization'] = `ApiKey ${apiKeyHeader(this.apiKey)}`;
    const res = await fetch(`${this.url}${urlPath}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${urlPath} answered ${res.status}: ${text}`);
    return JSON.parse(text) as Json;
  }

  private query(containerId: string): Json {
    return { term: { 'container.id': containerId } };
  }

  async count(target: string, containerId: string): Promise<number> {
    await this.request('POST', `/${target}/_refresh?ignore_unavailable=true`);
    const r = await this.request('POST', `/${target}/_count?ignore_unavailable=true`, { query: this.query(containerId) });
    return r['count'] as number;
  }

  /** Every document of the container in `target`, read back through the search API. */
  async read(target: string, containerId: string): Promise<EsHit[]> {
    await this.request('POST', `/${target}/_refresh?ignore_unavailable=true`);
    const r = await this.request('POST', `/${target}/_search?ignore_unavailable=true`, { size: 10_000, query: this.query(containerId) });
    const hits = (r['hits'] as { hits: EsHit[]; total: { value: number } });
    expect(hits.hits).toHaveLength(hits.total.value);
    return hits.hits;
  }

  /** Resolves once `target` holds at least `n` documents of the container: on fake-es's own events, else polling `_count`. */
  async waitForDocs(target: string, containerId: string, n: number, timeoutMs = 30_000): Promise<void> {
    const what = `${n} documents of ${containerId.slice(0, 12)} in ${target}`;
    if (this.fake !== undefined) {
      const es = this.fake;
      const re = globRe(target);
      await within(timeoutMs, what, es.waitFor(() => es.docs().filter((d) => re.test(d.target) && containerOf(d._source) === containerId).length >= n));
      return;
    }
    await waitFor(what, async () => ((await this.count(target, containerId)) >= n ? true : undefined), timeoutMs);
  }
}

function containerOf(source: Json): unknown {
  return (source['container'] as Json | undefined)?.['id'];
}

let driver: DriverProcess;
let backend: Backend;
let shared: FakeEs | undefined;
/** fake-es servers started by a test, closed after it. */
const perTest: FakeEs[] = [];

beforeAll(async () => {
  // A short shutdown timeout: a failed test that leaves lines undeliverable does not hold up the driver's exit.
  driver = await startDriver({ env: { SHUTDOWN_TIMEOUT: '5s' } });
  if (REAL) {
    backend = new Backend(REAL_URL.replace(/\/+$/, ''), REAL_API_KEY, undefined, REAL_CA);
  } else {
    shared = await startFakeEs({ auth: { apiKey: apiKeyHeader(FAKE_API_KEY) } });
    backend = new Backend(shared.url, FAKE_API_KEY, shared);
  }
});

afterEach(async () => {
  await Promise.all(perTest.splice(0).map((es) => es.close()));
});

afterAll(async () => {
  // A test that failed half-way may leave its container waiting on a gate file: do not leave it running.
  const left = (await docker(['ps', '-q', '--filter', `name=-${process.pid}-`])).stdout.split('\n').filter((l) => l !== '');
  if (left.length > 0) await docker(['rm', '-f', ...left]);
  const code = await driver.stop();
  await shared?.close();
  expect(code).toBe(0);
});

async function fakeEs(): Promise<FakeEs> {
  const es = await startFakeEs();
  perTest.push(es);
  return es;
}

async function inspect(name: string): Promise<{ Id: string; Image: string }> {
  return (JSON.parse((await dockerOk(['inspect', name])).stdout) as { Id: string; Image: string }[])[0] as { Id: string; Image: string };
}

/**
 * The container's lines with their times, both streams, in time order (stderr first on a tie, as its
 * `_id` sorts first). Messages come from `docker logs`, times from `docker logs --timestamps`: for a
 * line dockerd cut into 16 KiB chunks, the latter prints a time before every chunk, and a joined line's
 * @timestamp is its first chunk's.
 */
async function loggedLines(name: string): Promise<Line[]> {
  const plain = await dockerOk(['logs', name]);
  const stamped = await dockerOk(['logs', '--timestamps', name]);
  const split = (text: string): string[] => {
    const lines = text.split('\n');
    expect(lines.pop()).toBe('');
    return lines;
  };
  const parse = (messages: string, stamps: string, stream: Stream): Line[] => {
    const m = split(messages);
    const s = split(stamps);
    expect(s).toHaveLength(m.length);
    return m.map((message, i) => {
      const ts = s[i]?.slice(0, s[i]?.indexOf(' ')) ?? '';
      expect(ts).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
      return { ts, stream, message };
    });
  };
  const all = [...parse(plain.stdout, stamped.stdout, 'stdout'), ...parse(plain.stderr, stamped.stderr, 'stderr')];
  return all.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : a.stream === b.stream ? 0 : a.stream === 'stderr' ? -1 : 1));
}

/** Long messages compared by length and digest, so a failure prints a readable diff. */
function shown(message: unknown): unknown {
  if (typeof message !== 'string' || message.length <= 4096) return message;
  return `<${message.length} chars, sha256 ${createHash('sha256').update(message).digest('hex')}>`;
}

/**
 * The stored documents are exactly the logged lines: no duplicate `_id`, nothing missing or extra, and
 * ordered by @timestamp then `_id` they are the container's lines in order, each @timestamp equal to
 * the time `docker logs --timestamps` shows for that line.
 */
function expectExactly(hits: readonly EsHit[], lines: readonly Line[]): void {
  const ids = hits.map((h) => h._id);
  expect(new Set(ids).size).toBe(ids.length);
  const ts = (h: EsHit): string => String(h._source['@timestamp']);
  const sorted = [...hits].sort((a, b) => (ts(a) < ts(b) ? -1 : ts(a) > ts(b) ? 1 : a._id < b._id ? -1 : a._id > b._id ? 1 : 0));
  const got = sorted.map((h) => ({ ts: ts(h), stream: h._source['stream'], message: shown(h._source['message']) }));
  expect(got).toEqual(lines.map((l) => ({ ...l, message: shown(l.message) })));
}

/** A workload bigger than a pipe buffer, on both streams: `out-N <pad>` and `err-N`. */
function workload(outN: number, errN: number, prefix = ''): { script: string; stdout: string; stderr: string } {
  const pad = 'p'.repeat(60);
  const half = Math.ceil(outN / 2);
  const awk = (from: number, to: number, fmt: string): string => `awk 'BEGIN { for (i = ${from}; i <= ${to}; i++) printf "${fmt}\\n", i }'`;
  const script = [
    awk(1, half, `${prefix}out-%d ${pad}`),
    `${awk(1, errN, `${prefix}err-%d`)} >&2`,
    awk(half + 1, outN, `${prefix}out-%d ${pad}`),
  ].join('; ');
  const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);
  return {
    script,
    stdout: range(outN).map((i) => `${prefix}out-${i} ${pad}\n`).join(''),
    stderr: range(errN).map((i) => `${prefix}err-${i}\n`).join(''),
  };
}

interface Run {
  name: string;
  id: string;
  ms: number;
}

/**
 * `docker run` in the foreground, to completion: it must exit 0, and `docker logs` (shiplog's own
 * store) must hold the whole output, whatever the Elasticsearch side is going through.
 */
async function runComplete(opts: string[], work: { script: string; stdout: string; stderr: string }): Promise<Run> {
  const name = uniqueName('es');
  const started = performance.now();
  const r = await within(60_000, `docker run ${name} to finish`, docker(['run', '--name', name, ...LD, ...opts, IMAGE, 'sh', '-c', work.script]));
  const ms = performance.now() - started;
  expect(r.stderr).toBe(work.stderr);
  expect(r.code).toBe(0);
  const logs = await dockerOk(['logs', name]);
  expect(logs.stdout).toBe(work.stdout);
  expect(logs.stderr).toBe(work.stderr);
  return { name, id: (await inspect(name)).Id, ms };
}

/**
 * "As fast as usual", with room for a loaded host: a driver that waited on Elasticsearch (an es-timeout
 * of 30 s, a server that is down) would be far outside it.
 */
function expectUsualSpeed(ms: number, usualMs: number): void {
  expect(ms).toBeLessThan(usualMs * 3 + 3000);
}

/** Reads back the container's documents from a per-test fake-es once `n` are there, and checks them against docker logs. */
async function expectStoredExactly(es: FakeEs, target: string, run: Run, n: number): Promise<EsHit[]> {
  const b = new Backend(es.url, '', es);
  await b.waitForDocs(target, run.id, n);
  const hits = await b.read(target, run.id);
  expectExactly(hits, await loggedLines(run.name));
  return hits;
}

/** A dead letter of the elasticsearch sink, with what the tests check read from its ECS document. */
interface DeadLetter {
  reason: string;
  /** The document's @timestamp. */
  time: string;
  stream: Stream;
  containerId: string;
  containerName: string;
  message: string;
}

/** A line of the dead-letter file: `entry` is what the sink would have sent, the bulk action line then the document line. */
interface DeadLetterLine {
  reason: string;
  entry: string;
}

interface EcsDocument {
  '@timestamp': string;
  stream: Stream;
  message: string;
  container: { id: string; name: string };
}

function deadLetters(containerId: string): DeadLetter[] {
  const file = path.join(driver.stateDir, 'dead-letters', 'elasticsearch.ndjson');
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l): DeadLetter => {
    const { reason, entry } = JSON.parse(l) as DeadLetterLine;
    const doc = JSON.parse(entry.split('\n')[1] ?? '') as EcsDocument;
    return { reason, time: doc['@timestamp'], stream: doc.stream, containerId: doc.container.id, containerName: doc.container.name, message: doc.message };
  }).filter((d) => d.containerId === containerId);
}

/** A TCP port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe(`containers ship to ${REAL ? 'the Elasticsearch at SHIPLOG_E2E_ES_URL' : 'fake-es'}`, () => {
  it('holds exactly the lines of concurrent containers, in order, with the ECS fields, in logs-docker-default', async () => {
    const names = [uniqueName('es-ds'), uniqueName('es-ds')];
    const work = names.map((_, k) => workload(400, 30, `c${k}-`));
    const opts = [...backend.logOpts, ...QUICK, '--label', 'app=web', '--log-opt', 'labels=app', '--log-opt', 'tag={{.ImageName}}/{{.Name}}'];
    await Promise.all(names.map((name, k) => dockerOk(['run', '--name', name, ...LD, ...opts, IMAGE, 'sh', '-c', (work[k] as { script: string }).script])));
    for (const [k, name] of names.entries()) {
      const info = await inspect(name);
      const lines = await loggedLines(name);
      expect(lines.filter((l) => l.stream === 'stdout').map((l) => `${l.message}\n`).join('')).toBe(work[k]?.stdout);
      expect(lines.filter((l) => l.stream === 'stderr').map((l) => `${l.message}\n`).join('')).toBe(work[k]?.stderr);
      await backend.waitForDocs(DS, info.Id, lines.length);
      const hits = await backend.read(DS, info.Id);
      expectExactly(hits, lines);
      for (const h of hits) {
        expect(h._index).toMatch(/^\.ds-logs-docker-default-/);
        expect(h._source['@timestamp']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
        expect(h._source).toMatchObject({
          stream: expect.stringMatching(/^std(out|err)$/),
          container: { id: info.Id, name, image: { name: IMAGE, id: info.Image }, labels: { app: 'web' } },
          host: { name: os.hostname() },
          tag: `${IMAGE}/${name}`,
          labels: { app: 'web' },
          data_stream: { type: 'logs', dataset: 'docker', namespace: 'default' },
        });
        // Plain text lines: no level guessed, nothing truncated.
        expect(h._source['log']).toBeUndefined();
      }
    }
    if (shared !== undefined) {
      expect(shared.dataStreams()).toContain(DS);
      expect(shared.docs(DS).every((d) => d.opType === 'create')).toBe(true);
    }
  });

  it('writes to a dated index (es-index=docker-%Y.%m.%d) named from each line\'s own UTC date', async () => {
    const name = uniqueName('es-dated');
    const work = workload(150, 10);
    await dockerOk(['run', '--name', name, ...LD, ...backend.logOpts, ...QUICK, '--log-opt', 'es-index=docker-%Y.%m.%d', IMAGE, 'sh', '-c', work.script]);
    const info = await inspect(name);
    const lines = await loggedLines(name);
    await backend.waitForDocs('docker-*', info.Id, lines.length);
    const hits = await backend.read('docker-*', info.Id);
    expectExactly(hits, lines);
    for (const h of hits) {
      const ts = String(h._source['@timestamp']);
      expect(h._index).toBe(`docker-${ts.slice(0, 4)}.${ts.slice(5, 7)}.${ts.slice(8, 10)}`);
      expect(h._source['data_stream']).toBeUndefined();
      expect(h._source).toMatchObject({ container: { id: info.Id, name }, host: { name: os.hostname() }, tag: info.Id.slice(0, 12) });
    }
    if (shared !== undefined) {
      const indices = new Set(hits.map((h) => h._index));
      for (const index of indices) expect(shared.targets()).toContain(index);
      expect(shared.dataStreams().some((d) => d.startsWith('docker-'))).toBe(false);
    }
  });

  it('ships a 100 KiB line as ONE document with the exact content', async () => {
    const name = uniqueName('es-big');
    await dockerOk(['run', '--name', name, ...LD, ...backend.logOpts, ...QUICK, IMAGE, 'sh', '-c', "head -c 102400 /dev/zero | tr '\\0' x; echo; echo after"]);
    const info = await inspect(name);
    const lines = await loggedLines(name);
    expect(lines.map((l) => shown(l.message))).toEqual([shown('x'.repeat(102400)), 'after']);
    await backend.waitForDocs(DS, info.Id, 2);
    const hits = await backend.read(DS, info.Id);
    expectExactly(hits, lines);
    const big = hits.find((h) => String(h._source['message']).length > 1000);
    expect(hits).toHaveLength(2);
    expect(big?._source['message'] === 'x'.repeat(102400)).toBe(true);
    expect(big?._source['log']).toBeUndefined(); // not flagged truncated
  });

  it('fails docker run naming es-url when es-url is not a URL', async () => {
    const r = await docker(['run', '--rm', ...LD, '--log-opt', 'es-url=not-a-url', IMAGE, 'echo', 'never']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('invalid log-opt "es-url"');
    expect(r.stderr).toContain('"not-a-url", which is not a URL');
  });

  it('does not fail docker run on an unreachable es-url (closed port); the lines end in dead letters once retries run out', async () => {
    const port = await closedPort();
    const work = workload(20, 3);
    const run = await runComplete(['--log-opt', `es-url=http://127.0.0.1:${port}`, ...QUICK, '--log-opt', 'es-retries=2'], work);
    const letters = await waitFor('23 dead letters', () => {
      const l = deadLetters(run.id);
      return l.length >= 23 ? l : undefined;
    });
    expect(letters).toHaveLength(23);
    const lines = await loggedLines(run.name);
    expect(letters.map((d) => ({ ts: d.time, stream: d.stream, message: d.message })).sort((a, b) => (a.ts < b.ts ? -1 : 1))).toEqual(lines);
    for (const d of letters) {
      expect(d.containerName).toBe(run.name);
      expect(d.reason).toMatch(new RegExp(`^retries exhausted \\(2\\): cannot reach elasticsearch: .*ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
    }
  });
});

describe.skipIf(REAL)('faults injected by fake-es: the final stored set is still exact, docker run unaffected', () => {
  const BATCHES = ['--log-opt', 'es-batch-docs=200'];
  let usualMs = 0;

  beforeAll(async () => {
    const es = await startFakeEs();
    try {
      const run = await runComplete(['--log-opt', `es-url=${es.url}`, ...QUICK, ...BATCHES], workload(1500, 100));
      await expectStoredExactly(es, DS, run, 1600);
      usualMs = run.ms;
    } finally {
      await es.close();
    }
  });

  /** The standard workload (1600 lines, 140 KB: more than a pipe holds) through a faulty `es`: docker run exits 0 as fast as usual, docker logs complete. */
  async function runThrough(es: FakeEs, extra: string[] = []): Promise<Run> {
    const run = await runComplete(['--log-opt', `es-url=${es.url}`, ...QUICK, ...BATCHES, ...extra], workload(1500, 100));
    expectUsualSpeed(run.ms, usualMs);
    return run;
  }

  it('per-item 429 and 503 on the first attempts', async () => {
    const es = await fakeEs();
    const n = (item: { source: Json | undefined }): number => Number(/-(\d+)/.exec(String(item.source?.['message']))?.[1]);
    const f429 = es.faults.item({ status: 429, times: 2, match: (d) => n(d) % 3 === 0 });
    const f503 = es.faults.item({ status: 503, times: 1, match: (d) => n(d) % 5 === 0 });
    const run = await runThrough(es);
    await expectStoredExactly(es, DS, run, 1600);
    // 500 + 33 lines are ≡ 0 mod 3, each refused twice; 300 + 20 ≡ 0 mod 5, each refused once.
    expect(f429.hits).toBe(2 * (500 + 33));
    expect(f503.hits).toBe(300 + 20);
    expect(es.stats().stored).toBe(1600);
  });

  it('whole-request 503 and 429', async () => {
    const es = await fakeEs();
    const f503 = es.faults.request({ fault: { kind: 'status', status: 503 }, times: 3 });
    const f429 = es.faults.request({ fault: { kind: 'status', status: 429 }, times: 3 });
    const run = await runThrough(es);
    await expectStoredExactly(es, DS, run, 1600);
    expect([f503.hits, f429.hits]).toEqual([3, 3]);
    expect(es.requests({ path: `/${DS}/_bulk` }).filter((r) => r.status === 503 || r.status === 429)).toHaveLength(6);
  });

  it('slow answers past es-timeout (stored but answered late, and held before processing)', async () => {
    const es = await fakeEs();
    const after = es.faults.request({ fault: { kind: 'delay', ms: 2000, when: 'after' }, times: 2 });
    const before = es.faults.request({ fault: { kind: 'delay', ms: 2000, when: 'before' }, times: 2 });
    const run = await runThrough(es, ['--log-opt', 'es-timeout=300ms']);
    await expectStoredExactly(es, DS, run, 1600);
    expect([after.hits, before.hits]).toEqual([2, 2]);
    // The late-answered batches were stored before the client gave up: their re-sends met 409s, counted as delivered.
    expect(es.stats().conflicts).toBeGreaterThan(0);
    expect(driver.output()).toContain('did not answer within es-timeout');
  });

  it('connection resets mid-body and after processing', async () => {
    const es = await fakeEs();
    const midBody = es.faults.request({ fault: { kind: 'reset', when: 'request-body' }, times: 3 });
    const afterProcessing = es.faults.request({ fault: { kind: 'reset', when: 'after-processing' }, times: 2 });
    const run = await runThrough(es);
    await expectStoredExactly(es, DS, run, 1600);
    expect([midBody.hits, afterProcessing.hits]).toEqual([3, 2]);
    expect(es.stats().conflicts).toBeGreaterThan(0);
  });

  it('server stopped (connection refused) then started again while a container logs', async () => {
    const es = await fakeEs();
    const name = uniqueName('es-outage');
    const pad = 'q'.repeat(100);
    const phase = (p: number, count: number): string => `awk 'BEGIN { for (i = 1; i <= ${count}; i++) printf "p${p}-%d ${pad}\\n", i }'`;
    const gate = (file: string): string => `while [ ! -e /tmp/${file} ]; do sleep 0.02; done`;
    // Phase 2 (3000 lines, ~300 KB: far more than a pipe holds) is written while the server is down.
    const script = [phase(1, 100), gate('p2'), phase(2, 3000), 'echo p2-done >&2', gate('p3'), phase(3, 100)].join('; ');
    await dockerOk(['run', '-d', '--name', name, ...LD, '--log-opt', `es-url=${es.url}`, ...QUICK, ...BATCHES, IMAGE, 'sh', '-c', script]);
    const { Id: id } = await inspect(name);
    const b = new Backend(es.url, '', es);
    await b.waitForDocs(DS, id, 100);

    await es.stop();
    const outputMark = driver.output().length;
    await dockerOk(['exec', name, 'touch', '/tmp/p2']);
    // The container wrote all of phase 2 and shiplog's store has it, while Elasticsearch is unreachable.
    await waitFor('phases 1 and 2 in docker logs while the server is down', async () => {
      const r = await docker(['logs', name]);
      return r.stderr === 'p2-done\n' && r.stdout.split('\n').length === 3101 ? true : undefined;
    });
    await waitFor('a refused connection reported by the driver', () => (/cannot reach elasticsearch: .*ECONNREFUSED/.test(driver.output().slice(outputMark)) ? true : undefined));
    expect(es.docs(DS)).toHaveLength(100);

    await es.start();
    await dockerOk(['exec', name, 'touch', '/tmp/p3']);
    expect((await dockerOk(['wait', name])).stdout.trim()).toBe('0');
    const logs = await dockerOk(['logs', name]);
    expect(logs.stdout.split('\n')).toHaveLength(3201);
    await expectStoredExactly(es, DS, { name, id, ms: 0 }, 3201);
  });

  it('per-item 400: those lines in the dead-letter file with the reason, all others stored', async () => {
    const es = await fakeEs();
    const refused = (msg: unknown): boolean => /^(out|err)-\d*7 /.test(`${String(msg)} `);
    const reason = 'failed to parse field [message] of type [long] in document';
    const f400 = es.faults.item({ status: 400, errorType: 'document_parsing_exception', reason, match: (d) => refused(d.source?.['message']) });
    const work = workload(300, 30);
    const run = await runComplete(['--log-opt', `es-url=${es.url}`, ...QUICK], work);
    const lines = await loggedLines(run.name);
    const bad = lines.filter((l) => refused(l.message.split(' ')[0]));
    const good = lines.filter((l) => !refused(l.message.split(' ')[0]));
    expect(bad).toHaveLength(30 + 3);
    const b = new Backend(es.url, '', es);
    await b.waitForDocs(DS, run.id, good.length);
    const letters = await waitFor(`${bad.length} dead letters`, () => {
      const l = deadLetters(run.id);
      return l.length >= bad.length ? l : undefined;
    });
    expectExactly(await b.read(DS, run.id), good);
    expect(letters.map((d) => ({ ts: d.time, stream: d.stream, message: d.message })).sort((x, y) => (x.ts < y.ts ? -1 : 1))).toEqual(bad);
    for (const d of letters) {
      expect(d.containerName).toBe(run.name);
      expect(d.reason).toBe(`elasticsearch refused the document: 400 document_parsing_exception: ${reason}`);
    }
    // Refused for good means sent once: a 400 is not retried.
    expect(f400.hits).toBe(bad.length);
  });
});

describe.skipIf(REAL)('StartLogging does no network I/O', () => {
  it('docker run with the server stopped returns as fast as usual; the lines arrive once it is started', async () => {
    const es = await fakeEs();
    const opts = ['--log-opt', `es-url=${es.url}`, ...QUICK];
    const work = workload(1500, 100);
    const usual = Math.max((await runComplete(opts, work)).ms, (await runComplete(opts, work)).ms);

    await es.stop();
    const run = await runComplete(opts, work);
    expectUsualSpeed(run.ms, usual);
    expect(es.docs(DS).filter((d) => containerOf(d._source) === run.id)).toHaveLength(0);
    await es.start();
    await expectStoredExactly(es, DS, run, 1600);
  });

  it('docker run against a server that accepts connections but never answers returns as fast as usual', async () => {
    const es = await fakeEs();
    // Every request (bulk or not) is held forever; es-timeout is long, so waiting on the network shows.
    es.faults.request({ fault: { kind: 'delay', ms: Number.POSITIVE_INFINITY, when: 'before' }, match: () => true });
    const opts = ['--log-opt', `es-url=${es.url}`, ...QUICK, '--log-opt', 'es-timeout=30s'];
    const baseline = await runComplete(['--log-opt', `es-url=http://127.0.0.1:${await closedPort()}`, ...QUICK, '--log-opt', 'es-retries=0'], workload(5, 0));
    const run = await runComplete(opts, workload(200, 10));
    expectUsualSpeed(run.ms, baseline.ms);
    // The sink did connect, in the background, and is stuck on its first request.
    await within(10_000, 'the first bulk request', es.waitForRequests(1, { path: `/${DS}/_bulk` }));
    expect(es.docs(DS)).toHaveLength(0);
    // Drop the held connections and serve normally: the batch is retried and lands once.
    es.faults.clear();
    await es.stop();
    await es.start();
    await expectStoredExactly(es, DS, run, 210);
  });
});
