/**
 * The elasticsearch sink's log-opts: one table, each option with its default and doc side by side
 * (README's table is generated from it). Plugin settings (env `LOG_OPT_ES_URL`, …) override the defaults.
 */
import { accessSync, constants } from 'node:fs';
import { OptionError, opt } from '../../src/option-table.js';
import type { ParsedOptions } from '../../src/option-table.js';
import { parseInteger } from '../../src/units.js';
import { parseIndexName, resolveTarget } from './target.js';
import type { DataStreamChoice } from './target.js';

/**
 * `es-url`: one or more http(s) base URLs, comma-separated. Credentials in the URL are refused so that
 * secrets live only in the options marked secret (which are never logged or echoed back).
 */
export function parseUrls(text: string): readonly string[] {
  const urls: string[] = [];
  for (const part of text.split(',')) {
    const s = part.trim();
    if (s === '') continue;
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      throw new Error(`has ${JSON.stringify(s)}, which is not a URL (use e.g. https://es.example:9200; separate several with commas)`);
    }
    // `es.example:9200` parses with the scheme "es.example:": the usual missing-scheme mistake.
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`has ${JSON.stringify(s)}, which is not an http:// or https:// URL (use e.g. https://es.example:9200)`);
    if (url.username !== '' || url.password !== '') throw new Error('has credentials in a URL; use es-username/es-password or es-api-key, which are kept secret');
    if (url.search !== '' || url.hash !== '') throw new Error(`has ${JSON.stringify(s)}: a query or fragment makes no sense in a base URL`);
    const normalised = `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
    if (!urls.includes(normalised)) urls.push(normalised);
  }
  return urls;
}

export function parseDataStreamChoice(text: string): DataStreamChoice {
  if (text === 'auto') return 'auto';
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new Error('is not one of auto, true, false');
}

/** `es-retries`: `unlimited` or a whole number of retries after the first attempt. */
export function parseRetries(text: string): number {
  if (text.trim() === 'unlimited') return Number.POSITIVE_INFINITY;
  try {
    return parseInteger(text, 0, 1_000_000);
  } catch {
    throw new Error('is neither "unlimited" nor a whole number of retries (use e.g. unlimited or 10)');
  }
}

export const elasticsearchOptions = {
  'es-url': opt.custom<readonly string[]>('', 'Elasticsearch base URL(s), comma-separated (e.g. `https://es1:9200,https://es2:9200`). Required; setting it turns the sink on. Unreachable URLs do not fail `docker run`: lines wait and are retried.', 'url list', parseUrls),
  'es-index': opt.custom('logs-docker-default', 'Target data stream or index. `%Y %m %d %H` render from each line\'s UTC time (e.g. `docker-%Y.%m.%d`). The default matches Elasticsearch\'s built-in `logs-*-*` template, so it needs no setup.', 'index name', parseIndexName),
  'es-data-stream': opt.custom<DataStreamChoice>('auto', 'Whether es-index is a data stream (adds `data_stream.*` fields). `auto`: true when es-index follows the `logs-<dataset>-<namespace>` scheme and has no date tokens. Either way documents are sent with op_type create and a stable `_id`, so a re-sent line is stored once.', 'auto|true|false', parseDataStreamChoice),
  'es-pipeline': opt.string('', 'Ingest pipeline to run on every document (empty: the index\'s default pipeline).'),
  'es-username': opt.string('', 'User for HTTP basic auth (needs es-password).'),
  'es-password': opt.string('', 'Password for HTTP basic auth. Secret: never logged.', true),
  'es-api-key': opt.string('', 'API key, as Elasticsearch returns it in `encoded` (base64 of id:key) or as `id:key`. Secret: never logged. Needs the `create_doc` and `auto_configure` privileges on the target (plus `manage_index_templates` for es-templates).', true),
  'es-ca': opt.string('', 'Path (inside the plugin) of a PEM CA bundle to trust for https:// URLs, read when the sink starts.'),
  'es-cert': opt.string('', 'Path of a PEM client certificate for TLS client authentication (with es-key).'),
  'es-key': opt.string('', 'Path of the PEM private key of es-cert.'),
  'es-tls-skip-verify': opt.bool('false', 'Accept any server certificate (testing only; logs a warning). Prefer es-ca.'),
  'es-compress': opt.bool('true', 'Gzip request bodies (level 1: about 5 ms per MB of CPU for 5-20x less traffic).'),
  'es-batch-size': opt.size('5m', 'A bulk request is sent once its lines reach this size (estimated before JSON encoding).'),
  'es-batch-docs': opt.int('2000', 'A bulk request is sent once it holds this many lines.', 1, 100_000),
  'es-flush-interval': opt.duration('1s', 'A bulk request is sent at the latest this long after its first line arrived.'),
  'es-concurrency': opt.int('2', 'Bulk requests in flight at once per sink instance. With a disk spool, an instance keeps at most (es-concurrency + 2) × es-batch-docs lines in memory; a backlog beyond that waits in the spool.', 1, 64),
  'es-timeout': opt.duration('30s', 'Time limit of one bulk request; past it the batch is retried (its documents keep their ids, so nothing doubles).'),
  'es-retries': opt.custom('unlimited', 'Retries of a retryable failure (429, 5xx, timeout, connection error) before the batch goes to the dead-letter file. `unlimited` keeps retrying while shiplog runs: during an outage lines wait, in order, in the bounded queue (later the disk spool), whose cap is the only place lines are dropped and counted. Documents Elasticsearch refuses for good (mapping errors) go to dead letters at once.', 'unlimited|integer', parseRetries),
  'es-backoff-max': opt.duration('60s', 'Upper bound of the exponential backoff (with jitter) between retries.'),
  'es-templates': opt.bool('false', 'Install, create-only, a `<type>-<dataset>@custom` component template (`container.labels` flattened, `stream`/`tag`/`log.flags` keyword, `@timestamp` date_nanos) and an index template using it; templates that exist are never overwritten. Runs in the background; failures only warn. When it verifies that `container.labels` is flattened on the target, label keys keep their dots.'),
  'es-event-original': opt.bool('false', 'Also send the line as `event.original` (kept verbatim when an ingest pipeline rewrites `message`).'),
} as const;

export type ElasticsearchOptionTable = typeof elasticsearchOptions;
export type ElasticsearchOptions = ParsedOptions<ElasticsearchOptionTable>;

function fail(key: keyof ElasticsearchOptionTable, message: string): never {
  throw new OptionError(`invalid log-opt "${key}": ${message}`);
}

/** Checks what single-option parsing cannot: combinations, positive durations, readable TLS files. */
export function validateElasticsearchOptions(o: ElasticsearchOptions): void {
  if (o['es-url'].length === 0) fail('es-url', 'is required by the elasticsearch sink (e.g. --log-opt es-url=https://es.example:9200)');
  const target = resolveTarget(o['es-index'], o['es-data-stream']);
  if (target.dataStream && target.dated) fail('es-index', `${JSON.stringify(o['es-index'])} has date tokens, but a data stream rolls over by itself: drop the tokens or set es-data-stream=false`);
  if (o['es-password'] !== '' && o['es-username'] === '') fail('es-password', 'is set without es-username');
  if (o['es-username'] !== '' && o['es-password'] === '') fail('es-username', 'is set without es-password');
  if (o['es-api-key'] !== '' && o['es-username'] !== '') fail('es-api-key', 'and es-username are both set; choose one way to authenticate');
  if ((o['es-cert'] === '') !== (o['es-key'] === '')) fail(o['es-cert'] === '' ? 'es-key' : 'es-cert', 'needs its partner: set both es-cert and es-key');
  const https = o['es-url'].some((u) => u.startsWith('https:'));
  for (const key of ['es-ca', 'es-cert', 'es-key'] as const) {
    const path = o[key];
    if (path === '') continue;
    if (!https) fail(key, 'is set, but no es-url uses https://');
    try {
      accessSync(path, constants.R_OK);
    } catch (err) {
      fail(key, `${JSON.stringify(path)} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)}); the path is inside the plugin's filesystem`);
    }
  }
  if (o['es-tls-skip-verify'] && !https) fail('es-tls-skip-verify', 'is set, but no es-url uses https://');
  if (o['es-batch-size'] < 1) fail('es-batch-size', 'must be greater than 0');
  if (o['es-flush-interval'] <= 0) fail('es-flush-interval', 'must be greater than 0');
  if (o['es-timeout'] < 1) fail('es-timeout', 'must be at least 1ms');
  if (o['es-backoff-max'] <= 0) fail('es-backoff-max', 'must be greater than 0');
}
