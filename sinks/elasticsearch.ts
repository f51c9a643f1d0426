/**
 * Elasticsearch sink: one `_bulk` request per batch (split on 413), ECS documents with stable `_id`s
 * sent with op_type create, and a precise report of what landed. Batching, retries with backoff and
 * dead-letter files are the core's (sinks/sink.ts); this module only translates and classifies.
 */
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { Client } from '@elastic/elasticsearch';
import type { Logger } from 'pino';
import { FatalSinkError, RetryableSinkError } from './sink.js';
import type { BatchLimits, ContainerMeta, DeadLetter, LogRecord, Sink, SinkContext, SinkDefinition, WriteOutcome } from './sink.js';
import { BULK_FILTER_PATH, classifyBulkResponse, classifyRequestError, responseStatus } from './elasticsearch/bulk.js';
import { createClient } from './elasticsearch/client.js';
import { DocumentBuilder } from './elasticsearch/document.js';
import { elasticsearchOptions, validateElasticsearchOptions } from './elasticsearch/options.js';
import type { ElasticsearchOptionTable, ElasticsearchOptions } from './elasticsearch/options.js';
import { resolveTarget } from './elasticsearch/target.js';
import type { Target } from './elasticsearch/target.js';
import { TemplateInstaller, templatePlan } from './elasticsearch/templates.js';
import type { EsRequest } from './elasticsearch/templates.js';

const gzipAsync = promisify(gzip);

/** Fingerprint of a secret for instance keys: equal secrets share an instance, the key reveals nothing. */
function fingerprint(secret: string): string {
  return secret === '' ? '' : `sha256:${createHash('sha256').update(secret).digest('hex').slice(0, 16)}`;
}

/** Every option (they all change behaviour), secrets only as fingerprints. */
export function elasticsearchInstanceKey(o: ElasticsearchOptions): string {
  const parts: string[] = ['elasticsearch'];
  for (const [key, spec] of Object.entries(elasticsearchOptions)) {
    const value: unknown = o[key as keyof ElasticsearchOptions];
    const shown = spec.secret === true ? fingerprint(String(value)) : value === Number.POSITIVE_INFINITY ? 'unlimited' : value;
    parts.push(`${key}=${JSON.stringify(shown)}`);
  }
  return parts.join(' ');
}

/** The options as they may be logged: secrets replaced by whether they are set. */
function loggable(o: ElasticsearchOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(elasticsearchOptions)) {
    const value: unknown = o[key as keyof ElasticsearchOptions];
    out[key] = spec.secret === true ? (value === '' ? '' : '(set)') : value === Number.POSITIVE_INFINITY ? 'unlimited' : value;
  }
  return out;
}

interface RangeResult {
  retry: LogRecord[];
  deadLetters: DeadLetter[];
  /** Request-level errors of sub-requests (after a 413 split); their records are in `retry`/`deadLetters`. */
  failures: (RetryableSinkError | FatalSinkError)[];
  /** Sub-requests that got a bulk answer (or a final 413 for a single document). */
  answered: number;
}

export class ElasticsearchSink implements Sink {
  readonly name = 'elasticsearch';
  private readonly builder: DocumentBuilder;
  private readonly installer: TemplateInstaller | undefined;
  private readonly querystring: Record<string, string>;
  private closed = false;

  constructor(
    private readonly client: Client,
    private readonly opts: ElasticsearchOptions,
    target: Target,
    private readonly logger: Logger,
  ) {
    this.builder = new DocumentBuilder({ target, eventOriginal: opts['es-event-original'] });
    this.querystring = { filter_path: BULK_FILTER_PATH };
    if (opts['es-pipeline'] !== '') this.querystring['pipeline'] = opts['es-pipeline'];
    if (opts['es-templates']) {
      const plan = templatePlan(target);
      if (typeof plan === 'string') {
        logger.warn(`es-templates: nothing installed: ${plan}`);
      } else {
        this.installer = new TemplateInstaller(this.jsonRequest, plan, target, logger, opts['es-backoff-max']);
        // Not awaited: StartLogging must not wait on the network. The first write waits for it.
        setImmediate(() => this.installer?.start());
      }
    }
  }

  async write(batch: readonly LogRecord[]): Promise<WriteOutcome> {
    if (this.closed) throw new RetryableSinkError('elasticsearch sink is closed');
    if (batch.length === 0) return {};
    await this.installer?.beforeWrite();
    const labels = this.installer?.labelMode ?? 'normalised';
    const entries = batch.map((r) => this.builder.entry(r, labels));
    const result = await this.sendRange(batch, entries, 0, batch.length);
    // After a 413 split, if no part got an answer and every part may be retried, this is one request
    // failure (e.g. the cluster went away mid-split): report it as such so the core backs off.
    const first = result.failures[0];
    if (first instanceof RetryableSinkError && result.answered === 0 && result.failures.every((f) => f instanceof RetryableSinkError)) throw first;
    return { retry: result.retry, deadLetters: result.deadLetters };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.installer?.close();
    await this.client.close();
  }

  /**
   * One `_bulk` request for records [from, to); on 413 the range is halved and each half sent in turn.
   * A request-level failure of the whole range is thrown; failures of halves are folded into the lists.
   */
  private async sendRange(batch: readonly LogRecord[], entries: readonly string[], from: number, to: number): Promise<RangeResult> {
    const records = batch.slice(from, to);
    let body: unknown;
    try {
      body = await this.bulk(entries.slice(from, to).join(''));
    } catch (err) {
      if (responseStatus(err) !== 413) {
        const failure = classifyRequestError(err);
        if (to - from === batch.length) throw failure;
        return this.failedRange(records, failure);
      }
      if (to - from === 1) {
        const size = Buffer.byteLength(entries[from] ?? '');
        return { retry: [], deadLetters: [{ record: batch[from] as LogRecord, reason: `elasticsearch refused the document as too large (413, ${size} bytes of NDJSON); raise http.max_content_length or lower the line size cap` }], failures: [], answered: 1 };
      }
      const mid = from + Math.ceil((to - from) / 2);
      this.logger.debug({ documents: to - from }, 'elasticsearch answered 413; splitting the bulk request in two');
      const halves = [await this.settleRange(batch, entries, from, mid), await this.settleRange(batch, entries, mid, to)];
      return halves.reduce((a, b) => ({ retry: [...a.retry, ...b.retry], deadLetters: [...a.deadLetters, ...b.deadLetters], failures: [...a.failures, ...b.failures], answered: a.answered + b.answered }));
    }
    const items = classifyBulkResponse(body, records);
    return { ...items, failures: [], answered: 1 };
  }

  private async settleRange(batch: readonly LogRecord[], entries: readonly string[], from: number, to: number): Promise<RangeResult> {
    try {
      return await this.sendRange(batch, entries, from, to);
    } catch (err) {
      return this.failedRange(batch.slice(from, to), err instanceof RetryableSinkError || err instanceof FatalSinkError ? err : classifyRequestError(err));
    }
  }

  private failedRange(records: LogRecord[], failure: RetryableSinkError | FatalSinkError): RangeResult {
    return failure instanceof FatalSinkError
      ? { retry: [], deadLetters: records.map((record) => ({ record, reason: failure.message })), failures: [failure], answered: 0 }
      : { retry: records, deadLetters: [], failures: [failure], answered: 0 };
  }

  private async bulk(ndjson: string): Promise<unknown> {
    const compress = this.opts['es-compress'];
    const bulkBody = compress ? await gzipAsync(ndjson, { level: 1 }) : ndjson;
    const index = this.builder.pathIndex;
    return this.client.transport.request(
      { method: 'POST', path: index === undefined ? '/_bulk' : `/${encodeURIComponent(index)}/_bulk`, querystring: this.querystring, bulkBody, meta: { name: 'bulk' } },
      { requestTimeout: this.opts['es-timeout'], maxRetries: 0, ...(compress ? { headers: { 'content-encoding': 'gzip' } } : {}) },
    );
  }

  /** JSON requests for the template installer: any HTTP status resolves; transport failures reject. */
  private readonly jsonRequest: EsRequest = async (method, path, querystring, body) => {
    try {
      const result = await this.client.transport.request(
        { method, path, ...(querystring !== undefined ? { querystring } : {}), ...(body !== undefined ? { body } : {}) },
        { meta: true, requestTimeout: this.opts['es-timeout'], maxRetries: 0 },
      );
      return { statusCode: result.statusCode ?? 200, body: result.body };
    } catch (err) {
      const statusCode = responseStatus(err);
      if (statusCode === undefined) throw err;
      return { statusCode, body: (err as { meta?: { body?: unknown } }).meta?.body };
    }
  };
}

/**
 * `satisfies` rather than an annotation, as for the file sink: the same checks, and the inferred type
 * stays assignable to the registry's `SinkDefinition` (TS measures SinkDefinition<T> as invariant in T).
 */
export const elasticsearchSink = {
  name: 'elasticsearch',
  options: elasticsearchOptions,
  activatedBy: ['es-url'] as const,
  validate: validateElasticsearchOptions,
  instanceKey: (opts: ElasticsearchOptions, _container: ContainerMeta): string => elasticsearchInstanceKey(opts),
  batchLimits: (opts: ElasticsearchOptions): BatchLimits => ({
    maxRecords: opts['es-batch-docs'],
    maxBytes: opts['es-batch-size'],
    maxLatencyMs: opts['es-flush-interval'],
    concurrency: opts['es-concurrency'],
    maxRetries: opts['es-retries'],
    backoffMaxMs: opts['es-backoff-max'],
  }),
  create(opts: ElasticsearchOptions, ctx: SinkContext): Sink {
    validateElasticsearchOptions(opts);
    const logger = ctx.logger;
    const target = resolveTarget(opts['es-index'], opts['es-data-stream']);
    if (opts['es-tls-skip-verify']) logger.warn('es-tls-skip-verify=true: the Elasticsearch server certificate is not verified; anyone on the path can read and alter logs (use es-ca instead)');
    const client = createClient(opts);
    logger.info({ options: loggable(opts), dataStream: target.dataStream }, 'elasticsearch sink created');
    return new ElasticsearchSink(client, opts, target, logger);
  },
} satisfies SinkDefinition<ElasticsearchOptionTable>;
