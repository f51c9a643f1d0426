import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OptionError, parseTable } from '../src/option-table.js';
import { elasticsearchInstanceKey, elasticsearchSink } from '../sinks/elasticsearch.js';
import { elasticsearchOptions, validateElasticsearchOptions } from '../sinks/elasticsearch/options.js';
import type { ElasticsearchOptions } from '../sinks/elasticsearch/options.js';
import { resolveTarget } from '../sinks/elasticsearch/target.js';
import type { ContainerMeta } from '../sinks/sink.js';

function parse(config: Record<string, string>, env: Record<string, string> = {}): ElasticsearchOptions {
  return parseTable(elasticsearchOptions, config, env);
}

function parseAndValidate(config: Record<string, string>): ElasticsearchOptions {
  const o = parse(config);
  validateElasticsearchOptions(o);
  return o;
}

/** The OptionError message of a config, or '' if it is accepted. */
function errorOf(config: Record<string, string>): string {
  try {
    parseAndValidate(config);
    return '';
  } catch (err) {
    expect(err).toBeInstanceOf(OptionError);
    return (err as Error).message;
  }
}

const URL = 'http://es.example:9200';

describe('elasticsearch option table', () => {
  it('documents every option with a default that parses', () => {
    for (const [key, spec] of Object.entries(elasticsearchOptions)) {
      expect(key).toMatch(/^es-/);
      expect(spec.doc.length, key).toBeGreaterThan(20);
      expect(() => spec.parse(spec.default), key).not.toThrow();
    }
    expect(elasticsearchSink.name).toBe('elasticsearch');
    expect(elasticsearchSink.activatedBy).toEqual(['es-url']);
    expect(elasticsearchOptions['es-password'].secret).toBe(true);
    expect(elasticsearchOptions['es-api-key'].secret).toBe(true);
  });

  it('has the documented defaults', () => {
    const o = parse({ 'es-url': URL });
    expect(o).toEqual({
      'es-url': [URL], 'es-index': 'logs-docker-default', 'es-data-stream': 'auto', 'es-pipeline': '', 'es-username': '', 'es-password': '',
      'es-api-key': '', 'es-ca': '', 'es-cert': '', 'es-key': '', 'es-tls-skip-verify': false, 'es-compress': true, 'es-batch-size': 5_000_000,
      'es-batch-docs': 2000, 'es-flush-interval': 1000, 'es-concurrency': 2, 'es-timeout': 30_000, 'es-retries': Number.POSITIVE_INFINITY,
      'es-backoff-max': 60_000, 'es-templates': false, 'es-event-original': false,
    });
    expect(elasticsearchSink.batchLimits(o)).toEqual({ maxRecords: 2000, maxBytes: 5_000_000, maxLatencyMs: 1000, concurrency: 2, maxQueuedRecords: 8000, maxRetries: Number.POSITIVE_INFINITY, backoffMaxMs: 60_000 });
  });

  it('takes defaults from plugin settings, overridden by log-opts', () => {
    expect(parse({}, { LOG_OPT_ES_URL: URL, LOG_OPT_ES_BATCH_DOCS: '10' })['es-batch-docs']).toBe(10);
    expect(parse({ 'es-batch-docs': '20' }, { ES_BATCH_DOCS: '10' })['es-batch-docs']).toBe(20);
    expect(parse({}, { LOG_OPT_ES_URL: URL })['es-url']).toEqual([URL]);
  });

  it('parses several comma-separated URLs, trimming, dropping trailing slashes and duplicates', () => {
    expect(parse({ 'es-url': ' https://a:9200/ , http://b:9200,https://a:9200,http://c/prefix/,' })['es-url']).toEqual(['https://a:9200', 'http://b:9200', 'http://c/prefix']);
  });

  it('names es-url in the error for something that is not a URL', () => {
    expect(errorOf({ 'es-url': 'http://' })).toMatch(/^invalid log-opt "es-url": .*is not a URL/);
    expect(errorOf({ 'es-url': 'es.example:9200' })).toMatch(/^invalid log-opt "es-url": .*"es.example:9200", which is not an http:\/\/ or https:\/\/ URL/);
    expect(errorOf({ 'es-url': 'http://ok:9200,not a url' })).toMatch(/"es-url".*"not a url", which is not a URL/);
    expect(errorOf({ 'es-url': 'ftp://es:21' })).toMatch(/"es-url".*not an http:\/\/ or https:\/\/ URL/);
    expect(errorOf({ 'es-url': 'http://es:9200/?x=1' })).toMatch(/"es-url".*query or fragment/);
  });

  it('refuses credentials inside es-url, so secrets only live in secret options', () => {
    expect(errorOf({ 'es-url': 'https://elastic:changeme@es:9200' })).toMatch(/"es-url".*credentials.*es-username\/es-password or es-api-key/);
  });

  it('requires es-url when the sink is on', () => {
    expect(errorOf({})).toMatch(/"es-url": is required/);
  });

  it('checks index names like Elasticsearch and allows only %Y %m %d %H', () => {
    expect(errorOf({ 'es-url': URL, 'es-index': 'Docker' })).toMatch(/"es-index": "Docker" must be lowercase/);
    expect(errorOf({ 'es-url': URL, 'es-index': 'a b' })).toMatch(/"es-index".*forbids/);
    expect(errorOf({ 'es-url': URL, 'es-index': 'a*' })).toMatch(/"es-index".*forbids/);
    expect(errorOf({ 'es-url': URL, 'es-index': '_x' })).toMatch(/"es-index".*must not start with/);
    expect(errorOf({ 'es-url': URL, 'es-index': 'docker-%y' })).toMatch(/"es-index".*"%y"; only %Y, %m, %d and %H/);
    expect(errorOf({ 'es-url': URL, 'es-index': 'docker-%' })).toMatch(/"es-index".*"%"/);
    expect(errorOf({ 'es-url': URL, 'es-index': 'x'.repeat(256) })).toMatch(/"es-index".*255 bytes/);
    expect(errorOf({ 'es-url': URL, 'es-index': 'docker-%Y.%m.%d-%H' })).toBe('');
  });

  it('refuses a date-templated data stream', () => {
    expect(errorOf({ 'es-url': URL, 'es-index': 'logs-docker-%Y', 'es-data-stream': 'true' })).toMatch(/"es-index".*rolls over by itself/);
    expect(errorOf({ 'es-url': URL, 'es-data-stream': 'yes' })).toMatch(/"es-data-stream": "yes" is not one of auto, true, false/);
  });

  it('parses es-retries as unlimited or a count', () => {
    expect(parse({ 'es-retries': 'unlimited' })['es-retries']).toBe(Number.POSITIVE_INFINITY);
    expect(parse({ 'es-retries': '0' })['es-retries']).toBe(0);
    expect(parse({ 'es-retries': '12' })['es-retries']).toBe(12);
    expect(() => parse({ 'es-retries': '-1' })).toThrow(/"es-retries": "-1" is neither "unlimited" nor a whole number/);
    expect(() => parse({ 'es-retries': 'forever' })).toThrow(OptionError);
  });

  it('checks auth combinations, and never echoes a secret', () => {
    expect(errorOf({ 'es-url': URL, 'es-password': 'hunter2' })).toMatch(/"es-password": is set without es-username/);
    expect(errorOf({ 'es-url': URL, 'es-username': 'u' })).toMatch(/"es-username": is set without es-password/);
    expect(errorOf({ 'es-url': URL, 'es-username': 'u', 'es-password': 'p', 'es-api-key': 'k' })).toMatch(/"es-api-key".*choose one/);
    expect(errorOf({ 'es-url': URL, 'es-username': 'u', 'es-password': 'hunter2' })).toBe('');
    const configs: Record<string, string>[] = [{ 'es-url': URL, 'es-password': 'hunter2' }, { 'es-url': URL, 'es-api-key': 'hunter2', 'es-username': 'u' }];
    for (const config of configs) {
      expect(errorOf(config)).not.toContain('hunter2');
    }
  });

  it('checks TLS files: readable, paired, and only with https', () => {
    const dir = mkdtempSync(join(tmpdir(), 'shiplog-es-'));
    const pem = join(dir, 'ca.pem');
    writeFileSync(pem, '-----BEGIN CERTIFICATE-----\n');
    expect(errorOf({ 'es-url': URL, 'es-ca': pem })).toMatch(/"es-ca": is set, but no es-url uses https/);
    expect(errorOf({ 'es-url': 'https://es:9200', 'es-ca': join(dir, 'missing.pem') })).toMatch(/"es-ca": ".*missing.pem" cannot be read \(ENOENT\)/);
    expect(errorOf({ 'es-url': 'https://es:9200', 'es-cert': pem })).toMatch(/"es-cert": needs its partner/);
    expect(errorOf({ 'es-url': 'https://es:9200', 'es-key': pem })).toMatch(/"es-key": needs its partner/);
    expect(errorOf({ 'es-url': 'https://es:9200', 'es-ca': pem, 'es-cert': pem, 'es-key': pem })).toBe('');
    expect(errorOf({ 'es-url': URL, 'es-tls-skip-verify': 'true' })).toMatch(/"es-tls-skip-verify": is set, but no es-url uses https/);
  });

  it('refuses zero sizes and durations', () => {
    expect(errorOf({ 'es-url': URL, 'es-batch-size': '0' })).toMatch(/"es-batch-size": must be greater than 0/);
    expect(errorOf({ 'es-url': URL, 'es-flush-interval': '0' })).toMatch(/"es-flush-interval"/);
    expect(errorOf({ 'es-url': URL, 'es-timeout': '0' })).toMatch(/"es-timeout"/);
    expect(errorOf({ 'es-url': URL, 'es-backoff-max': '0' })).toMatch(/"es-backoff-max"/);
    expect(errorOf({ 'es-url': URL, 'es-batch-docs': '0' })).toMatch(/"es-batch-docs"/);
    expect(errorOf({ 'es-url': URL, 'es-concurrency': '65' })).toMatch(/"es-concurrency"/);
  });
});

describe('elasticsearch target', () => {
  it('defaults to the logs-docker-default data stream, with data_stream fields from its name', () => {
    expect(resolveTarget('logs-docker-default', 'auto')).toEqual({ pattern: 'logs-docker-default', dataStream: true, dated: false, dataStreamParts: { type: 'logs', dataset: 'docker', namespace: 'default' } });
    expect(resolveTarget('logs-my-app-prod', 'auto').dataStreamParts).toEqual({ type: 'logs', dataset: 'my-app', namespace: 'prod' });
  });

  it('treats other names as indices unless told otherwise', () => {
    expect(resolveTarget('docker-%Y.%m.%d', 'auto')).toEqual({ pattern: 'docker-%Y.%m.%d', dataStream: false, dated: true, dataStreamParts: undefined });
    expect(resolveTarget('applogs', 'auto').dataStream).toBe(false);
    expect(resolveTarget('logs-docker-default', false)).toMatchObject({ dataStream: false, dataStreamParts: undefined });
    expect(resolveTarget('mystream', true)).toMatchObject({ dataStream: true, dataStreamParts: undefined });
  });
});

describe('elasticsearch instance key', () => {
  const meta = (id: string): ContainerMeta => ({ id, name: id, imageName: '', imageId: '', tag: '', attrs: {}, labels: {}, hostname: 'h' });

  it('is shared by containers with equal settings and differs when any setting differs', () => {
    const a = parse({ 'es-url': URL, 'es-username': 'u', 'es-password': 'p1' });
    expect(elasticsearchSink.instanceKey(a, meta('c1'))).toBe(elasticsearchSink.instanceKey(parse({ 'es-url': URL, 'es-username': 'u', 'es-password': 'p1' }), meta('c2')));
    const changes: Record<string, string>[] = [{ 'es-password': 'p2' }, { 'es-index': 'other' }, { 'es-pipeline': 'p' }, { 'es-compress': 'false' }, { 'es-timeout': '5s' }, { 'es-url': 'http://other:9200' }, { 'es-event-original': 'true' }];
    for (const change of changes) {
      const b = parse({ 'es-url': URL, 'es-username': 'u', 'es-password': 'p1', ...change });
      expect(elasticsearchInstanceKey(b), JSON.stringify(change)).not.toBe(elasticsearchInstanceKey(a));
    }
  });

  it('holds no secret in clear', () => {
    const key = elasticsearchInstanceKey(parse({ 'es-url': URL, 'es-username': 'u', 'es-password': 'hunter2-secret' }));
    const keyApi = elasticsearchInstanceKey(parse({ 'es-url': URL, 'es-api-key': 'VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==' }));
    expect(key).not.toContain('hunter2');
    expect(keyApi).not.toContain('VnVhQ2Z');
    expect(key).toMatch(/es-password="sha256:[0-9a-f]{16}"/);
  });
});
