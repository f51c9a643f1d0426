/**
 * Elasticsearch sink: one `_bulk` request per batch (split on 413), ECS documents with stable `_id`s
 * sent with op_type create, and a precise report of what landed. Each record is encoded once, as its
 * action + document lines, when the core queues it; a request body is a view of the batch's bytes.
 * Batching, retries with backoff and dead-letter files are the core's (sinks/sink.ts); this module
 * only translates and classifies.
 */
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { Logger } from 'pino';
import { FatalSinkError, RetryableSinkError } from './sink.js';
import type { BatchLimits, ContainerMeta, DeadLetter, EncodedBatch, EntryWriter, LogRecord, Sink, SinkContext, SinkDefinition, WriteOutcome } from './sink.js';
import { BULK_FILTER_PATH, classifyBulkResponse, classifyRequestError, responseStatus } from './elasticsearch/bulk.js';
import { createClient, type LazyClient } from './elasticsearch/client.js';
import { DocumentBuilder } from './elasticsearch/document.js';
import { elasticsearchOptions, validateElasticsearchOptions } from './elasticsearch/options.js';
import type { ElasticsearchOptionTable, ElasticsearchOptions } from './elasticsearch/options.js';
import { resolveTarget } from './elasticsearch/target.js';
import type { Target } from './elasticsearch/target.js';
import { TemplateInstaller, templatePlan } from './elasticsearch/templates.js';
import type { EsRequest } from './elasticsearch/templates.js';

const gzipAsync = promisify(gzip);

/**
 * zlib's output piece for a request body of `inputBytes`. At zlib's default (16 KiB) each piece is
 * one more trip between the thread pool and the event loop: ~4 for 2,000 short lines' documents,
 * 0.5 ms more CPU per batch than one piece, and on a busy host each trip waits for a core. One piece
 * for any body that compresses 4:1 or better (bulk bodies do 10-15:1), 64 KiB to 1 MiB.
 */
export function gzipChunkBytes(inputBytes: number): number {
  return Math.min(1 << 20, Math.max(64 * 1024, Math.ceil(inputBytes / 4)));
}

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

/** What became of entries [from, to) of a batch; indices are the batch's. */
interface RangeResult {
  retry: number[];
  deadLetters: DeadLetter[];
  /** Request-level errors of sub-requests (after a 413 split); their entries are in `retry`/`deadLetters`. */
  failures: (RetryableSinkError | FatalSinkError)[];
  /** Sub-requests that got a bulk answer (or a final 413 for a single document). */
  answered: number;
}

/** Entries [from, to) all failed the same way at request level. */
function failedRange(from: number, to: number, failure: RetryableSinkError | FatalSinkError): RangeResult {
  const indices = Array.from({ length: to - from }, (_, i) => from + i);
  return failure instanceof FatalSinkError
    ? { retry: [], deadLetters: indices.map((index) => ({ index, reason: failure.message })), failures: [failure], answered: 0 }
    : { retry: indices, deadLetters: [], failures: [failure], answered: 0 };
}

export class ElasticsearchSink implements Sink {
  readonly name = 'elasticsearch';
  /**
   * Gzipped, a request's body is zlib's output: the batch's bytes are read only by the gzip, which
   * is done before the request starts, so an acknowledged batch's buffer can serve the next batch
   * (at 2,000 documents a batch, the one allocation per batch that was left). Uncompressed, the body
   * is a view of the batch, which the HTTP client may still be writing when an early answer or a
   * timeout settles write().
   */
  readonly releasesBatchOnSettle: boolean;
  private readonly builder: DocumentBuilder;
  private readonly installer: TemplateInstaller | undefined;
  private readonly querystring: Record<string, string>;
  private closed = false;

  constructor(
    private readonly client: LazyClient,
    private readonly opts: ElasticsearchOptions,
    target: Target,
    private readonly logger: Logger,
  ) {
    this.releasesBatchOnSettle = opts['es-compress'];
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

  /**
   * The record's slice of a `_bulk` body: action line and ECS document, each ending in '\n'. Label
   * keys follow the template installer's verdict at encode time, and the entry keeps them however late
   * it is sent. Entries encoded before the installer settled use 'normalised' keys (no dots), which
   * index correctly under either mapping of `container.labels` (object or `flattened`), so an early
   * entry is never refused for its labels.
   */
  encode(record: LogRecord, out: EntryWriter): void {
    this.builder.writeEntry(record, this.installer?.labelMode ?? 'normalised', out);
  }

  async write(batch: EncodedBatch): Promise<WriteOutcome> {
    if (this.closed) throw new RetryableSinkError('elasticsearch sink is closed');
    if (batch.count === 0) return {};
    await this.installer?.beforeWrite();
    const result = await this.sendRange(batch, 0, batch.count);
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
   * One `_bulk` request for entries [from, to) of the batch, its body a view of the batch's bytes; on
   * 413 the range is halved and each half sent in turn. A request-level failure of the whole batch is
   * thrown; failures of parts are folded into the lists.
   */
  private async sendRange(batch: EncodedBatch, from: number, to: number): Promise<RangeResult> {
    let body: unknown;
    try {
      body = await this.bulk(batch.range(from, to));
    } catch (err) {
      if (responseStatus(err) !== 413) {
        const failure = classifyRequestError(err);
        if (to - from === batch.count) throw failure;
        return failedRange(from, to, failure);
      }
      if (to - from === 1) {
        const size = batch.end(from) - batch.start(from);
        return { retry: [], deadLetters: [{ index: from, reason: `elasticsearch refused the document as too large (413, ${size} bytes of NDJSON); raise http.max_content_length or lower the line size cap` }], failures: [], answered: 1 };
      }
      const mid = from + Math.ceil((to - from) / 2);
      this.logger.debug({ documents: to - from }, 'elasticsearch answered 413; splitting the bulk request in two');
      const halves = [await this.settleRange(batch, from, mid), await this.settleRange(batch, mid, to)];
      return halves.reduce((a, b) => ({ retry: [...a.retry, ...b.retry], deadLetters: [...a.deadLetters, ...b.deadLetters], failures: [...a.failures, ...b.failures], answered: a.answered + b.answered }));
    }
    // The response's item i is the range's entry i, i.e. the batch's entry from + i.
    const items = classifyBulkResponse(body, to - from);
    return {
      retry: items.retry.map((i) => from + i),
      deadLetters: items.deadLetters.map((d) => ({ index: from + d.index, reason: d.reason })),
      failures: [],
      answered: 1,
    };
  }

  private async settleRange(batch: EncodedBatch, from: number, to: number): Promise<RangeResult> {
    try {
      return await this.sendRange(batch, from, to);
    } catch (err) {
      return failedRange(from, to, err instanceof RetryableSinkError || err instanceof FatalSinkError ? err : classifyRequestError(err));
    }
  }

  /**
   * `ndjson` (a view of the batch) goes out as is, or gzipped: the transport sends a Buffer bulkBody
   * without serialising it, so no string is built per request.
   */
  private async bulk(ndjson: Buffer): Promise<unknown> {
    const compress = this.opts['es-compress'];
    const bulkBody = compress ? await gzipAsync(ndjson, { level: 1, chunkSize: gzipChunkBytes(ndjson.length) }) : ndjson;
    const index = this.builder.pathIndex;
    return (await this.client.get()).transport.request(
      { method: 'POST', path: index === undefined ? '/_bulk' : `/${encodeURIComponent(index)}/_bulk`, querystring: this.querystring, bulkBody, meta: { name: 'bulk' } },
      { requestTimeout: this.opts['es-timeout'], maxRetries: 0, ...(compress ? { headers: { 'content-encoding': 'gzip' } } : {}) },
    );
  }

  /** JSON requests for the template installer: any HTTP status resolves; transport failures reject. */
  private readonly jsonRequest: EsRequest = async (method, path, querystring, body) => {
    try {
      const result = await (await this.client.get()).transport.request(
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
    // The batches in flight and two more ready: a backlog beyond that waits in the spool (where it
    // is already, written through), not in memory (2 × 32 MiB of peak RSS measured with 32 MiB of
    // queued documents, half of it garbage the collector had not reached yet).
    maxQueuedRecords: (opts['es-concurrency'] + 2) * opts['es-batch-docs'],
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
