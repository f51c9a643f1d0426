import { describe, expect, it } from 'vitest';
import { classifyBulkResponse, classifyRequestError, describeEsError, responseStatus } from '../sinks/elasticsearch/bulk.js';
import { apiKeyHeaderValue, clientOptions } from '../sinks/elasticsearch/client.js';
import { FatalSinkError, RetryableSinkError } from '../sinks/sink.js';
import { parseTable } from '../src/option-table.js';
import { elasticsearchOptions } from '../sinks/elasticsearch/options.js';

/** An error shaped like the client's ResponseError (name + meta.statusCode/body). */
function responseError(statusCode: number, body: unknown): Error {
  return Object.assign(new Error(`status ${statusCode}`), { name: 'ResponseError', meta: { statusCode, body } });
}

function namedError(name: string, message = name): Error {
  return Object.assign(new Error(message), { name });
}

describe('bulk response items', () => {
  it('delivers everything when errors is false', () => {
    expect(classifyBulkResponse({ errors: false }, 3)).toEqual({ retry: [], deadLetters: [] });
  });

  it('delivers 2xx and 409, retries 429 and 5xx, dead-letters other 4xx with the ES reason', () => {
    const statuses = [201, 200, 409, 429, 503, 500, 400, 404, 403];
    const items = statuses.map((status) => ({
      create: status < 300 ? { status } : {
        status,
        error: status === 400
          ? { type: 'document_parsing_exception', reason: '[1:42] failed to parse field [n] of type [long]', caused_by: { type: 'illegal_argument_exception', reason: 'For input string: "abc"' } }
          : { type: `type_${status}`, reason: `reason ${status}` },
      },
    }));
    const out = classifyBulkResponse({ errors: true, items }, statuses.length);
    expect(out.retry).toEqual([3, 4, 5]);
    expect(out.deadLetters.map((d) => d.index)).toEqual([6, 7, 8]);
    expect(out.deadLetters[0]?.reason).toBe('elasticsearch refused the document: 400 document_parsing_exception: [1:42] failed to parse field [n] of type [long] (caused by illegal_argument_exception: For input string: "abc")');
    expect(out.deadLetters[1]?.reason).toBe('elasticsearch refused the document: 404 type_404: reason 404');
  });

  it('retries an item without a status rather than guessing', () => {
    expect(classifyBulkResponse({ errors: true, items: [{ create: { status: 201 } }, { create: {} }] }, 2).retry).toEqual([1]);
  });

  it('refuses a response that does not account for every document', () => {
    expect(() => classifyBulkResponse({ errors: true, items: [{ create: { status: 201 } }] }, 2)).toThrow(new RetryableSinkError('elasticsearch answered _bulk with 1 items for 2 documents; resending the batch'));
    expect(() => classifyBulkResponse({ items: [] }, 1)).toThrow(/without an "errors" flag/);
    expect(() => classifyBulkResponse('not json', 1)).toThrow(RetryableSinkError);
  });

  it('describes errors boundedly', () => {
    expect(describeEsError(undefined)).toBe('no error details');
    expect(describeEsError({ type: 't' })).toBe('t');
    expect(describeEsError({ type: 't', reason: 'r'.repeat(5000) }).length).toBeLessThanOrEqual(2001);
  });
});

describe('request-level errors', () => {
  it('retries 408, 429, 5xx, 401 and 403; other 4xx cannot be fixed by retrying', () => {
    for (const status of [408, 429, 500, 502, 503, 504, 401, 403]) expect(classifyRequestError(responseError(status, {})), String(status)).toBeInstanceOf(RetryableSinkError);
    for (const status of [400, 404, 406, 415]) expect(classifyRequestError(responseError(status, {})), String(status)).toBeInstanceOf(FatalSinkError);
    expect(classifyRequestError(responseError(400, { error: { type: 'media_type_header_exception', reason: 'Invalid media-type' } })).message).toBe('elasticsearch answered 400: media_type_header_exception: Invalid media-type');
    expect(classifyRequestError(responseError(403, { error: { type: 'security_exception', reason: 'action [indices:data/write/bulk] is unauthorized' } })).message).toMatch(/403: security_exception.*check es-username\/es-password or es-api-key/);
  });

  it('retries timeouts, connection errors and unknown failures', () => {
    for (const name of ['TimeoutError', 'ConnectionError', 'NoLivingConnectionsError', 'DeserializationError', 'RequestAbortedError', 'TypeError']) {
      expect(classifyRequestError(namedError(name)), name).toBeInstanceOf(RetryableSinkError);
    }
    expect(classifyRequestError('a string').message).toMatch(/a string/);
  });

  it('does not retry a server that is not Elasticsearch', () => {
    expect(classifyRequestError(namedError('ProductNotSupportedError'))).toBeInstanceOf(FatalSinkError);
    expect(classifyRequestError(namedError('ConfigurationError'))).toBeInstanceOf(FatalSinkError);
  });

  it('reads the status of a ResponseError only', () => {
    expect(responseStatus(responseError(413, ''))).toBe(413);
    expect(responseStatus(namedError('TimeoutError'))).toBeUndefined();
  });
});

describe('client options', () => {
  const parse = (config: Record<string, string>) => parseTable(elasticsearchOptions, { 'es-url': 'https://a:9200,https://b:9200', ...config }, {});

  it('leaves retries and gzip to shiplog, sets the timeout, and never sniffs', () => {
    expect(clientOptions(parse({ 'es-timeout': '7s' }))).toMatchObject({ nodes: ['https://a:9200', 'https://b:9200'], maxRetries: 0, requestTimeout: 7000, compression: false, sniffOnStart: false, sniffInterval: false, sniffOnConnectionFault: false });
  });

  it('passes basic auth or an API key, encoding an id:key pair', () => {
    expect(clientOptions(parse({ 'es-username': 'u', 'es-password': 'p' })).auth).toEqual({ username: 'u', password: 'p' });
    expect(clientOptions(parse({ 'es-api-key': 'aWQ6a2V5' })).auth).toEqual({ apiKey: 'aWQ6a2V5' });
    expect(apiKeyHeaderValue('id:key')).toBe(Buffer.from('id:key').toString('base64'));
    expect(clientOptions(parse({})).auth).toBeUndefined();
  });

  it('turns off certificate checks only when asked', () => {
    expect(clientOptions(parse({})).tls).toBeUndefined();
    expect(clientOptions(parse({ 'es-tls-skip-verify': 'true' })).tls).toEqual({ rejectUnauthorized: false });
  });
});
