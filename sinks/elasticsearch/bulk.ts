/**
 * What a `_bulk` answer means for each entry, and what a failed request means for the batch. The
 * rules are Filebeat's (research §1.3): per item 2xx and 409-on-create are delivered, 429 and 5xx are
 * retried, other 4xx are dead letters with Elasticsearch's reason; per request 408/429/5xx, timeouts
 * and connection errors are retried, 413 is split by the caller, other errors cannot be fixed by
 * retrying.
 */
import { FatalSinkError, RetryableSinkError } from '../sink.js';
import type { DeadLetter } from '../sink.js';

/** Ask Elasticsearch for no more than the classification needs. */
export const BULK_FILTER_PATH = 'errors,items.*.error,items.*.status';

/** Entries of one bulk request, by their index in that request (0 = its first document). */
export interface ItemOutcome {
  retry: number[];
  deadLetters: DeadLetter[];
}

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `type: reason (caused by type: reason)` from an Elasticsearch error object, bounded in length. */
export function describeEsError(error: unknown): string {
  if (!isObject(error)) return typeof error === 'string' ? error : 'no error details';
  const type = typeof error['type'] === 'string' ? error['type'] : 'unknown_error';
  const reason = typeof error['reason'] === 'string' ? error['reason'] : '';
  let text = reason === '' ? type : `${type}: ${reason}`;
  const cause = error['caused_by'];
  if (isObject(cause)) text += ` (caused by ${describeEsError(cause)})`;
  return text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
}

/**
 * Classifies the items of a bulk response to a request of `count` documents. Indices in the outcome
 * are positions in that request; the caller maps them back to its batch. Throws RetryableSinkError
 * when the response does not account for every document: what landed is then unknown, and re-sending
 * is safe because every document has a stable `_id`.
 */
export function classifyBulkResponse(body: unknown, count: number): ItemOutcome {
  const out: ItemOutcome = { retry: [], deadLetters: [] };
  if (!isObject(body) || typeof body['errors'] !== 'boolean') {
    throw new RetryableSinkError('elasticsearch answered _bulk without an "errors" flag; resending the batch');
  }
  if (body['errors'] === false) return out;
  const items = body['items'];
  if (!Array.isArray(items) || items.length !== count) {
    throw new RetryableSinkError(`elasticsearch answered _bulk with ${Array.isArray(items) ? items.length : 'no'} items for ${count} documents; resending the batch`);
  }
  for (let i = 0; i < count; i++) {
    const item: unknown = items[i];
    // Each item is `{ "<op type>": { status, error? } }`.
    const result = isObject(item) ? Object.values(item)[0] : undefined;
    const status = isObject(result) && typeof result['status'] === 'number' ? result['status'] : undefined;
    if (status === undefined) {
      out.retry.push(i);
    } else if ((status >= 200 && status < 300) || status === 409) {
      // 409 on create: a document with this id is already stored, i.e. an earlier attempt landed.
    } else if (status === 429 || status >= 500) {
      out.retry.push(i);
    } else {
      const error = isObject(result) ? result['error'] : undefined;
      out.deadLetters.push({ index: i, reason: `elasticsearch refused the document: ${status} ${describeEsError(error)}` });
    }
  }
  return out;
}

interface ClientErrorShape {
  name: string;
  message: string;
  statusCode?: number;
  body?: unknown;
}

function asClientError(err: unknown): ClientErrorShape {
  if (err instanceof Error) {
    const meta = (err as { meta?: { statusCode?: unknown; body?: unknown } }).meta;
    const statusCode = typeof meta?.statusCode === 'number' ? meta.statusCode : undefined;
    return { name: err.name, message: err.message, ...(statusCode !== undefined ? { statusCode } : {}), body: meta?.body };
  }
  return { name: 'Error', message: String(err) };
}

/** HTTP status of a client ResponseError, if that is what `err` is. */
export function responseStatus(err: unknown): number | undefined {
  const e = asClientError(err);
  return e.name === 'ResponseError' ? e.statusCode : undefined;
}

function responseReason(e: ClientErrorShape): string {
  const body = e.body;
  if (isObject(body) && body['error'] !== undefined) return describeEsError(body['error']);
  if (typeof body === 'string' && body.trim() !== '') return body.trim().slice(0, 500);
  return 'no error details';
}

/**
 * Turns a failed request (anything the client threw, except 413 which the caller splits on) into
 * RetryableSinkError or FatalSinkError with a message an operator can act on.
 */
export function classifyRequestError(err: unknown): RetryableSinkError | FatalSinkError {
  const e = asClientError(err);
  switch (e.name) {
    case 'ResponseError': {
      const status = e.statusCode ?? 0;
      const text = `elasticsearch answered ${status}: ${responseReason(e)}`;
      // 401/403 are kept retryable: a role or realm fixed server-side makes the same request work,
      // and dead-lettering every line of a long auth outage helps nobody.
      if (status === 401 || status === 403) return new RetryableSinkError(`${text} (check es-username/es-password or es-api-key and its privileges)`);
      if (status === 408 || status === 429 || status >= 500) return new RetryableSinkError(text);
      return new FatalSinkError(text);
    }
    case 'TimeoutError':
      return new RetryableSinkError(`elasticsearch did not answer within es-timeout: ${e.message}`);
    case 'ConnectionError':
    case 'NoLivingConnectionsError':
      return new RetryableSinkError(`cannot reach elasticsearch: ${e.message}`);
    case 'ProductNotSupportedError':
      return new FatalSinkError('the server at es-url is not Elasticsearch (no "X-Elastic-Product: Elasticsearch" header; OpenSearch is not supported by this client)');
    case 'ConfigurationError':
    case 'SerializationError':
      return new FatalSinkError(`elasticsearch client refused the request: ${e.message}`);
    default:
      // DeserializationError, RequestAbortedError and the unknown: what landed is unknown, and a
      // re-send is harmless thanks to stable ids.
      return new RetryableSinkError(`elasticsearch request failed (${e.name}): ${e.message}`);
  }
}
