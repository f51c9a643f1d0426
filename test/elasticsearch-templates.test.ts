import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { elasticsearchSink } from '../sinks/elasticsearch.js';
import { elasticsearchOptions } from '../sinks/elasticsearch/options.js';
import { resolveTarget } from '../sinks/elasticsearch/target.js';
import { TemplateInstaller, templatePlan } from '../sinks/elasticsearch/templates.js';
import type { EsRequest, HttpAnswer, TemplatePlan } from '../sinks/elasticsearch/templates.js';
import { type ContainerMeta, EncodedBatch, type LogRecord, type Sink } from '../sinks/sink.js';
import { parseTable } from '../src/option-table.js';
import { bigIntToParts } from '../src/time.js';
import { startFakeEs } from './support/fake-es.js';
import type { FakeEs, JsonObject } from './support/fake-es.js';

const DS = 'logs-docker-default';
const CUSTOM = {
  properties: {
    '@timestamp': { type: 'date_nanos' },
    container: { properties: { labels: { type: 'flattened' } } },
    stream: { type: 'keyword' },
    tag: { type: 'keyword' },
    log: { properties: { flags: { type: 'keyword' } } },
  },
};
const META = { managed_by: 'shiplog', description: 'Installed by the shiplog Docker logging plugin (es-templates=true). shiplog never overwrites it: edit freely.' };

function captureLogs(): { lines: JsonObject[]; logger: pino.Logger } {
  const lines: JsonObject[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as JsonObject);
      done();
    },
  });
  return { lines, logger: pino({ level: 'debug' }, stream) };
}

const container: ContainerMeta = {
  id: 'a'.repeat(64), name: 'compose-web-1', imageName: 'web', imageId: '', tag: '', attrs: {}, hostname: 'h',
  labels: { 'com.docker.compose.project': 'shop', 'com.docker.compose.project.working_dir': '/srv/shop' },
};
const record = (line: string): LogRecord => ({ container, source: 'stdout', timeNano: bigIntToParts(1_700_000_000_000_000_000n + BigInt(line.length)), line: Buffer.from(line), truncated: false, seq: 0 });

describe('template plan', () => {
  it('for the default data stream: a create-only @custom component and an index template above the built-in one', () => {
    expect(templatePlan(resolveTarget(DS, 'auto'))).toEqual({
      componentName: 'logs-docker@custom',
      component: { template: { mappings: CUSTOM }, _meta: META },
      indexTemplateName: 'shiplog-logs-docker',
      indexTemplate: {
        index_patterns: ['logs-docker-*'],
        priority: 150,
        data_stream: {},
        composed_of: ['logs@mappings', 'logs@settings', 'logs@custom', 'ecs@mappings', 'logs-docker@custom'],
        ignore_missing_component_templates: ['logs@custom', 'logs-docker@custom'],
        _meta: META,
      },
    });
  });

  it('for a dated index: a pattern over every rendered name, no data stream, no built-ins', () => {
    const plan = templatePlan(resolveTarget('docker-%Y.%m.%d', 'auto')) as TemplatePlan;
    expect(plan.componentName).toBe('docker@custom');
    expect(plan.indexTemplate).toEqual({ index_patterns: ['docker-*'], priority: 150, composed_of: ['docker@custom'], ignore_missing_component_templates: ['docker@custom'], _meta: META });
  });

  it('for other data streams: only the component, and data_stream kept', () => {
    const plan = templatePlan(resolveTarget('metrics-app-default', true)) as TemplatePlan;
    expect(plan.indexTemplate).toMatchObject({ index_patterns: ['metrics-app-*'], data_stream: {}, composed_of: ['metrics-app@custom'] });
  });

  it('declines a name that starts with a date token', () => {
    expect(templatePlan(resolveTarget('%Y-logs', 'auto'))).toMatch(/starts with a date token/);
  });
});

describe('template installation against fake-es', () => {
  let es: FakeEs;
  const open: Sink[] = [];
  const sinkFor = (logger: pino.Logger, config: Record<string, string> = {}): Sink => {
    const opts = parseTable(elasticsearchOptions, { 'es-url': es.url, 'es-templates': 'true', 'es-compress': 'false', ...config }, {});
    const sink = elasticsearchSink.create(opts, { container, logger, stateDir: '/nonexistent' });
    open.push(sink);
    return sink;
  };
  /** Encodes as the core does when records are queued: with the label mode the installer has settled on by then. */
  const batchOf = (sink: Sink, lines: string[]): EncodedBatch => {
    return EncodedBatch.encode(sink, lines.map(record));
  };
  const labelsOf = (i: number): unknown => (es.sources(DS)[i]?.['container'] as JsonObject | undefined)?.['labels'];

  beforeAll(async () => {
    es = await startFakeEs();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
    es.reset();
  });
  afterAll(async () => {
    await es.close();
  });

  it('installs both templates create-only before the first bulk, which then creates the data stream from them', async () => {
    const logs = captureLogs();
    const sink = sinkFor(logs.logger);
    await sink.write(batchOf(sink, ['first']));
    expect(es.requests().map((r) => `${r.method} ${r.path}${r.query['create'] !== undefined ? `?create=${r.query['create']}` : ''}`)).toEqual([
      'PUT /_component_template/logs-docker@custom?create=true',
      'PUT /_index_template/shiplog-logs-docker?create=true',
      `GET /${DS}/_mapping/field/container.labels`,
      `POST /_index_template/_simulate_index/${DS}`,
      `POST /${DS}/_bulk`,
    ]);
    expect(es.componentTemplate('logs-docker@custom')).toEqual({ template: { mappings: CUSTOM }, _meta: META });
    expect(es.indexTemplate('shiplog-logs-docker')?.['composed_of']).toContain('logs-docker@custom');
    // Encoded before the installer settled: normalised keys, which any mapping accepts.
    expect(labelsOf(0)).toEqual({ com_docker_compose_project: 'shop', com_docker_compose_project_working_dir: '/srv/shop' });
    // Encoded after it found container.labels flattened: label keys keep their dots.
    await sink.write(batchOf(sink, ['second']));
    expect(labelsOf(1)).toEqual({ 'com.docker.compose.project': 'shop', 'com.docker.compose.project.working_dir': '/srv/shop' });
    expect(logs.lines.find((l) => l['componentTemplate'] === 'logs-docker@custom')).toMatchObject({ component: 'created', index: 'created', labelKeys: 'dotted' });
  });

  it('never overwrites a template an operator already has, and normalises label keys when it is not flattened', async () => {
    const edited = { template: { mappings: { properties: { stream: { type: 'keyword' } } } }, _meta: { owner: 'ops' } };
    await fetch(`${es.url}/_component_template/logs-docker@custom`, { method: 'PUT', body: JSON.stringify(edited), headers: { 'content-type': 'application/json' } });
    const logs = captureLogs();
    const sink = sinkFor(logs.logger);
    await sink.write(batchOf(sink, ['x']));
    await sink.write(batchOf(sink, ['yy'])); // encoded after the installer settled (another length: another time, another _id)
    expect(es.componentTemplate('logs-docker@custom')).toEqual(edited);
    expect(labelsOf(1)).toEqual({ com_docker_compose_project: 'shop', com_docker_compose_project_working_dir: '/srv/shop' });
    expect(logs.lines.find((l) => l['componentTemplate'] === 'logs-docker@custom')).toMatchObject({ component: 'exists', index: 'created', labelKeys: 'normalised' });
  });

  it('keeps dots out of label keys while an existing data stream lacks the mapping, until it rolls over', async () => {
    await fetch(`${es.url}/_data_stream/${DS}`, { method: 'PUT' });
    const logs = captureLogs();
    const before = sinkFor(logs.logger);
    await before.write(batchOf(before, ['before rollover']));
    await before.write(batchOf(before, ['still before rollover'])); // encoded after the installer settled
    expect(labelsOf(1)).toEqual({ com_docker_compose_project: 'shop', com_docker_compose_project_working_dir: '/srv/shop' });
    expect(String(logs.lines.find((l) => l['labelKeys'] === 'normalised')?.['msg'])).toMatch(/roll it over/);

    await fetch(`${es.url}/${DS}/_rollover`, { method: 'POST' });
    const after = sinkFor(captureLogs().logger);
    await after.write(batchOf(after, ['after the rollover']));
    await after.write(batchOf(after, ['after the rollover, settled']));
    expect(labelsOf(3)).toEqual({ 'com.docker.compose.project': 'shop', 'com.docker.compose.project.working_dir': '/srv/shop' });
  });

  it('only warns when installation fails: lines still land, with normalised label keys', async () => {
    es.faults.request({ fault: { kind: 'status', status: 403, errorType: 'security_exception', reason: 'action [cluster:admin/component_template/put] is unauthorized' }, match: (r) => r.path.startsWith('/_component_template') });
    const logs = captureLogs();
    const sink = sinkFor(logs.logger);
    expect(await sink.write(batchOf(sink, ['still lands']))).toEqual({ retry: [], deadLetters: [] });
    expect(es.sources(DS).map((s) => s['message'])).toEqual(['still lands']);
    expect(labelsOf(0)).toEqual({ com_docker_compose_project: 'shop', com_docker_compose_project_working_dir: '/srv/shop' });
    const warning = logs.lines.find((l) => l['level'] === 40);
    expect(warning?.['msg']).toMatch(/could not install elasticsearch templates.*403: security_exception/);
    expect(warning?.['willRetry']).toBe(false);
    // A permanent failure is not retried by later writes.
    await sink.write(batchOf(sink, ['again']));
    expect(labelsOf(1)).toEqual({ com_docker_compose_project: 'shop', com_docker_compose_project_working_dir: '/srv/shop' });
    expect(es.requests({ path: /^\/_component_template/ })).toHaveLength(1);
  });
});

describe('template installer retries', () => {
  const plan = templatePlan(resolveTarget(DS, 'auto')) as TemplatePlan;

  function scripted(answers: ((path: string) => HttpAnswer | Error)[]): { request: EsRequest; paths: string[] } {
    const paths: string[] = [];
    const request: EsRequest = (method, path) => {
      paths.push(`${method} ${path}`);
      const next = answers.shift();
      const answer = next === undefined ? new Error('unexpected request') : next(path);
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
    };
    return { request, paths };
  }
  const refused = (): Error => Object.assign(new Error('connect ECONNREFUSED'), { name: 'ConnectionError' });
  const ok = (): HttpAnswer => ({ statusCode: 200, body: { acknowledged: true } });
  const notFound = (): HttpAnswer => ({ statusCode: 404, body: { error: { type: 'index_not_found_exception' } } });
  const flattened = (): HttpAnswer => ({ statusCode: 200, body: { template: { mappings: CUSTOM } } });

  it('retries a failure that may pass, no sooner than retryAfterMs, from a write', async () => {
    let now = 1000;
    const { request, paths } = scripted([refused, ok, ok, notFound, flattened]);
    const installer = new TemplateInstaller(request, plan, resolveTarget(DS, 'auto'), captureLogs().logger, 60_000, () => now);
    await installer.beforeWrite();
    expect(installer.status).toBe('failed-retryable');
    expect(installer.labelMode).toBe('normalised');
    now += 59_999;
    await installer.beforeWrite();
    expect(paths).toHaveLength(1);
    now += 1;
    await installer.beforeWrite();
    expect(installer.status).toBe('done');
    expect(installer.labelMode).toBe('dotted');
    expect(paths).toEqual([
      'PUT /_component_template/logs-docker%40custom',
      'PUT /_component_template/logs-docker%40custom',
      'PUT /_index_template/shiplog-logs-docker',
      `GET /${DS}/_mapping/field/container.labels`,
      `POST /_index_template/_simulate_index/${DS}`,
    ]);
  });

  it('treats a 5xx answer as passing and a 4xx other than "already exists" as permanent', async () => {
    const five = scripted([() => ({ statusCode: 503, body: {} })]);
    const a = new TemplateInstaller(five.request, plan, resolveTarget(DS, 'auto'), captureLogs().logger, 0);
    await a.beforeWrite();
    expect(a.status).toBe('failed-retryable');
    const four = scripted([() => ({ statusCode: 400, body: { error: { type: 'invalid_index_template_exception', reason: 'bad' } } })]);
    const b = new TemplateInstaller(four.request, plan, resolveTarget(DS, 'auto'), captureLogs().logger, 0);
    await b.beforeWrite();
    expect(b.status).toBe('failed');
    await b.beforeWrite();
    expect(four.paths).toHaveLength(1);
  });
});
