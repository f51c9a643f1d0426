import { gzipSync } from 'node:zlib';
import { Client } from '@elastic/elasticsearch';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { applyFilterPath, startFakeEs } from './support/fake-es.js';
import type { FakeEs } from './support/fake-es.js';

let es: FakeEs;
let client: Client;

beforeAll(async () => {
  es = await startFakeEs();
  client = new Client({ node: es.url, maxRetries: 0, requestTimeout: 5000 });
});
afterAll(async () => {
  await client.close();
  await es.close();
});
afterEach(() => es.reset());

const ndjson = (...lines: unknown[]): string => lines.map((l) => `${JSON.stringify(l)}\n`).join('');

async function rawBulk(path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${es.url}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/x-ndjson', ...headers } });
  return { status: res.status, body: await res.json() };
}

describe('fake-es speaks enough Elasticsearch for the official client', () => {
  it('answers GET / like ES 8 with the product header the client checks', async () => {
    const info = await client.info();
    expect(info.version.number).toBe('8.19.0');
    expect(info.tagline).toBe('You Know, for Search');
    const res = await fetch(es.url);
    expect(res.headers.get('x-elastic-product')).toBe('Elasticsearch');
  });

  it('refuses the compatible-with=9 media type like an ES 8 server', async () => {
    const res = await fetch(`${es.url}/_bulk`, {
      method: 'POST', body: ndjson({ create: { _index: 'x' } }, { a: 1 }),
      headers: { 'content-type': 'application/vnd.elasticsearch+x-ndjson; compatible-with=9', accept: 'application/vnd.elasticsearch+json; compatible-with=9' },
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('media_type_header_exception');
  });

  it('stores create ops by _id and answers 409 version_conflict_engine_exception for an existing id', async () => {
    const body = ndjson({ create: { _index: 'plain', _id: 'a' } }, { n: 1 }, { create: { _index: 'plain', _id: 'a' } }, { n: 2 });
    const res = await client.bulk({ operations: [{ create: { _index: 'plain', _id: 'a' } }, { n: 1 }, { create: { _index: 'plain', _id: 'a' } }, { n: 2 }] });
    expect(res.errors).toBe(true);
    expect(res.items[0]?.create?.status).toBe(201);
    expect(res.items[1]?.create?.status).toBe(409);
    expect(res.items[1]?.create?.error?.type).toBe('version_conflict_engine_exception');
    expect(es.sources('plain')).toEqual([{ n: 1 }]);
    expect(body).toContain('"_id":"a"');
    expect(es.stats()).toMatchObject({ bulkRequests: 1, bulkItems: 2, stored: 1, conflicts: 1 });
  });

  it('decodes gzip bodies and records both sizes', async () => {
    const text = ndjson({ create: { _id: '1' } }, { msg: 'x'.repeat(1000) });
    const res = await rawBulk('/gz/_bulk', gzipSync(text), { 'content-encoding': 'gzip' });
    expect(res.status).toBe(200);
    expect(es.sources('gz')).toEqual([{ msg: 'x'.repeat(1000) }]);
    const [req] = es.requests({ path: '/gz/_bulk' });
    expect(req?.contentEncoding).toBe('gzip');
    expect(req?.bodyBytes).toBe(Buffer.byteLength(text));
    expect(req?.wireBytes).toBeLessThan(req?.bodyBytes ?? 0);
  });

  it('auto-creates a data stream for logs-*-* from the built-in template, which needs create and @timestamp', async () => {
    const res = await rawBulk('/_bulk', ndjson(
      { create: { _index: 'logs-a-default', _id: '1' } }, { '@timestamp': '2024-01-01T00:00:00.000000001Z', message: 'm' },
      { index: { _index: 'logs-a-default', _id: '2' } }, { '@timestamp': '2024-01-01T00:00:00Z' },
      { create: { _index: 'logs-a-default', _id: '3' } }, { message: 'no time' },
    ));
    const items = (res.body as { items: { [op: string]: { status: number; error?: { reason: string } } }[] }).items;
    expect(items.map((i) => Object.values(i)[0]?.status)).toEqual([201, 400, 400]);
    expect(Object.values(items[2] ?? {})[0]?.error?.reason).toMatch(/timestamp field \[@timestamp\] is missing/);
    expect(es.dataStreams()).toEqual(['logs-a-default']);
    expect(es.docs('logs-a-default')[0]?._index).toMatch(/^\.ds-logs-a-default-\d{4}\.\d{2}\.\d{2}-000001$/);
    const ds = await client.indices.getDataStream({ name: 'logs-a-default' });
    expect(ds.data_streams[0]?.template).toBe('logs');
  });

  it('honours filter_path like Filebeat asks for it', async () => {
    const res = await rawBulk('/f/_bulk?filter_path=errors,items.*.error,items.*.status', ndjson({ create: { _id: '1' } }, { a: 1 }));
    expect(res.body).toEqual({ errors: false, items: [{ create: { status: 201 } }] });
    expect(applyFilterPath({ a: { b: 1, c: 2 }, d: [{ b: 3 }] }, 'a.b,d.*')).toEqual({ a: { b: 1 }, d: [{ b: 3 }] });
  });

  it('creates component and index templates create-only, answering like ES when they exist', async () => {
    await client.cluster.putComponentTemplate({ name: 'c@custom', create: true, template: { mappings: { properties: { a: { type: 'keyword' } } } } });
    await expect(client.cluster.putComponentTemplate({ name: 'c@custom', create: true, template: { mappings: {} } })).rejects.toMatchObject({
      meta: { statusCode: 400, body: { error: { type: 'illegal_argument_exception', reason: 'component template [c@custom] already exists' } } },
    });
    expect(es.componentTemplate('c@custom')).toEqual({ template: { mappings: { properties: { a: { type: 'keyword' } } } } });
    await expect(client.indices.putIndexTemplate({ name: 'bad', index_patterns: ['b-*'], composed_of: ['missing'] })).rejects.toMatchObject({ meta: { statusCode: 400 } });
    await client.indices.putIndexTemplate({ name: 't', create: true, index_patterns: ['c-*'], priority: 150, composed_of: ['c@custom'] });
    await expect(client.indices.putIndexTemplate({ name: 't', create: true, index_patterns: ['c-*'] })).rejects.toMatchObject({ meta: { statusCode: 400 } });
    const got = await client.indices.getIndexTemplate({ name: 't' });
    expect(got.index_templates[0]?.index_template.composed_of).toEqual(['c@custom']);
    const sim = await client.indices.simulateIndexTemplate({ name: 'c-1' });
    expect(sim.template.mappings).toEqual({ properties: { a: { type: 'keyword' } } });
  });

  it('answers field mappings from the templates an index was created with', async () => {
    await client.cluster.putComponentTemplate({ name: 'x@custom', template: { mappings: { properties: { container: { properties: { labels: { type: 'flattened' } } } } } } });
    await client.indices.putIndexTemplate({ name: 'x', index_patterns: ['logs-x-*'], priority: 150, data_stream: {}, composed_of: ['logs@mappings', 'x@custom'] });
    await expect(client.indices.getFieldMapping({ index: 'logs-x-default', fields: 'container.labels' })).rejects.toMatchObject({ meta: { statusCode: 404 } });
    await client.indices.createDataStream({ name: 'logs-x-default' });
    const fm = await client.indices.getFieldMapping({ index: 'logs-x-default', fields: 'container.labels' });
    const [backing] = Object.keys(fm);
    expect(fm[backing ?? '']?.mappings['container.labels']?.mapping).toEqual({ labels: { type: 'flattened' } });
    await client.indices.createDataStream({ name: 'logs-y-default' });
    const plain = await client.indices.getFieldMapping({ index: 'logs-y-default', fields: 'container.labels' });
    expect(Object.values(plain)[0]?.mappings).toEqual({});
  });

  it('reads documents back with _count and _search (match_all and term)', async () => {
    await rawBulk('/r/_bulk', ndjson({ create: { _id: '1' } }, { c: { id: 'a' }, n: 1 }, { create: { _id: '2' } }, { c: { id: 'b' }, n: 2 }, { create: { _id: '3' } }, { c: { id: 'a' }, n: 3 }));
    expect((await client.count({ index: 'r' })).count).toBe(3);
    const found = await client.search<{ n: number }>({ index: 'r', size: 10, query: { term: { 'c.id': 'a' } } });
    expect(found.hits.hits.map((h) => h._source?.n)).toEqual([1, 3]);
  });
});

describe('fake-es fault injection', () => {
  it('fails chosen documents for their first N attempts', async () => {
    const rule = es.faults.item({ status: 429, times: 1, match: (d) => d.id === 'b' });
    const body = ndjson({ create: { _id: 'a' } }, { v: 1 }, { create: { _id: 'b' } }, { v: 2 });
    const first = await rawBulk('/i/_bulk?filter_path=errors,items.*.status', body);
    expect(first.body).toEqual({ errors: true, items: [{ create: { status: 201 } }, { create: { status: 429 } }] });
    const second = await rawBulk('/i/_bulk?filter_path=items.*.status', body);
    expect(second.body).toEqual({ items: [{ create: { status: 409 } }, { create: { status: 201 } }] });
    expect(rule.hits).toBe(1);
  });

  it('answers whole requests with an injected status, N times', async () => {
    es.faults.request({ fault: { kind: 'status', status: 503 }, times: 1 });
    await expect(client.bulk({ index: 'w', operations: [{ create: { _id: '1' } }, { a: 1 }] })).rejects.toMatchObject({ meta: { statusCode: 503 } });
    await client.bulk({ index: 'w', operations: [{ create: { _id: '1' } }, { a: 1 }] });
    expect(es.requests({ path: '/w/_bulk' }).map((r) => r.status)).toEqual([503, 200]);
  });

  it('answers 413 for bodies over maxBodyBytes', async () => {
    es.faults.maxBodyBytes = 100;
    const res = await rawBulk('/big/_bulk', ndjson({ create: { _id: '1' } }, { m: 'y'.repeat(200) }));
    expect(res.status).toBe(413);
    expect(es.docs('big')).toEqual([]);
  });

  it('delays answers, resets connections, and refuses connections while stopped', async () => {
    const slow = new Client({ node: es.url, maxRetries: 0, requestTimeout: 100 });
    try {
      es.faults.request({ fault: { kind: 'delay', ms: Number.POSITIVE_INFINITY }, times: 1 });
      await expect(slow.bulk({ index: 'd', operations: [{ create: { _id: '1' } }, { a: 1 }] })).rejects.toMatchObject({ name: 'TimeoutError' });
      // 'after' (the default): the documents were stored, only the answer was late.
      expect(es.sources('d')).toEqual([{ a: 1 }]);

      es.faults.request({ fault: { kind: 'reset' }, times: 1 });
      await expect(slow.bulk({ index: 'd', operations: [{ create: { _id: '2' } }, { a: 2 }] })).rejects.toMatchObject({ name: 'ConnectionError' });
      expect(es.docs('d')).toHaveLength(1);

      const port = es.port;
      await es.stop();
      await expect(slow.info()).rejects.toMatchObject({ name: 'ConnectionError', message: expect.stringMatching(/ECONNREFUSED/) });
      await es.start();
      expect(es.port).toBe(port);
      expect((await slow.info()).version.number).toBe('8.19.0');
    } finally {
      await slow.close();
    }
  });

  it('asks for credentials when configured with them', async () => {
    const secured = await startFakeEs({ auth: { basic: { username: 'u', password: 'p' }, apiKey: 'a2V5' } });
    const anonymous = new Client({ node: secured.url, maxRetries: 0 });
    const basic = new Client({ node: secured.url, maxRetries: 0, auth: { username: 'u', password: 'p' } });
    const apiKey = new Client({ node: secured.url, maxRetries: 0, auth: { apiKey: 'a2V5' } });
    try {
      await expect(anonymous.info()).rejects.toMatchObject({ meta: { statusCode: 401 } });
      await basic.info();
      await apiKey.info();
      expect(secured.requests().map((r) => r.headers.authorization)).toEqual([undefined, `Basic ${Buffer.from('u:p').toString('base64')}`, 'ApiKey a2V5']);
    } finally {
      await Promise.all([anonymous.close(), basic.close(), apiKey.close(), secured.close()]);
    }
  });
});

describe('fake-es counting mode (the benchmark\'s)', () => {
  it('counts the documents of a bulk request as stored, keeps none, and answers every item with success through filter_path', async () => {
    const counting = await startFakeEs({ countOnly: true });
    try {
      const body = gzipSync(ndjson({ create: { _index: 'logs-a-b', _id: '1' } }, { n: 1 }, { create: { _index: 'logs-a-b', _id: '1' } }, { n: 2 }, { create: { _index: 'logs-a-b', _id: '2' } }, { n: 3 }));
      const res = await fetch(`${counting.url}/_bulk?filter_path=errors,items.*.error,items.*.status`, {
        method: 'POST', body, headers: { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' },
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ errors: false, items: [{ create: { status: 201 } }, { create: { status: 201 } }, { create: { status: 201 } }] });
      expect(counting.stats()).toMatchObject({ bulkRequests: 1, bulkItems: 3, stored: 3, conflicts: 0 });
      expect(counting.sources('logs-a-b')).toEqual([]);
      const unterminated = await fetch(`${counting.url}/_bulk`, { method: 'POST', body: '{"create":{}}', headers: { 'content-type': 'application/x-ndjson' } });
      expect(unterminated.status).toBe(400);
    } finally {
      await counting.close();
    }
  });

  it.each([
    ['errors,items.*.error,items.*.status'],
    ['errors'],
    ['items.*.index.status'],
    [undefined],
  ])('answers what the generic filter_path makes of a success per item (filter_path %s), in ES\'s key order', async (filterPath) => {
    const counting = await startFakeEs({ countOnly: true });
    try {
      const pairs = Array.from({ length: 1000 }, (_, i) => [{ index: { _index: 'logs-a-b', _id: String(i) } }, { n: i }]).flat();
      const query = filterPath === undefined ? '' : `?filter_path=${filterPath}`;
      const res = await fetch(`${counting.url}/_bulk${query}`, { method: 'POST', body: ndjson(...pairs), headers: { 'content-type': 'application/x-ndjson' } });
      expect(res.status).toBe(200);
      const text = await res.text();
      const full = { took: 1, errors: false, items: Array.from({ length: 1000 }, () => ({ index: { status: 200, result: 'created' } })) };
      const expected = filterPath === undefined ? full : applyFilterPath(full, filterPath);
      expect(JSON.parse(text)).toEqual(expected);
      expect(text).toBe(JSON.stringify(expected));
      expect(counting.stats()).toMatchObject({ bulkItems: 1000, stored: 1000 });
    } finally {
      await counting.close();
    }
  });
});
