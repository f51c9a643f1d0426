/**
 * fake-es: an Elasticsearch-compatible HTTP server for tests and benchmarks (no real Elasticsearch can
 * be installed on these machines). It speaks enough of the REST API for shiplog and for reading the
 * results back, keeps what it accepted in memory, and injects faults on demand.
 *
 * What it implements, like ES 8 does:
 *  - `GET|HEAD /` cluster info; every answer carries `X-Elastic-Product: Elasticsearch` (the official
 *    client refuses a 2xx without it) and honours the compatible-with media types (an ES 8 server
 *    refuses `compatible-with=9`, which is what a 9.x client sends).
 *  - `POST|PUT /_bulk` and `/<index>/_bulk`: NDJSON bodies, plain or `Content-Encoding: gzip|deflate`;
 *    `create` (409 version_conflict_engine_exception when the `_id` exists) and `index` ops; data
 *    streams need `create` and `@timestamp`; `filter_path`, `pipeline` recorded on each doc.
 *  - Data streams auto-created from an index template with `data_stream: {}` (the built-in `logs`
 *    template for `logs-*-*` is there unless `builtinTemplates: false`), `PUT|GET|DELETE
 *    /_data_stream/<name>`, `POST /<stream>/_rollover`.
 *  - `PUT|POST|GET|DELETE /_component_template/<name>` and `/_index_template/<name>`, with
 *    `create=true` answered like ES: 400 illegal_argument_exception "... already exists".
 *    `POST /_index_template/_simulate_index/<name>`; `GET /<target>/_mapping/field/<field>` from the
 *    explicit mappings an index got from its templates at creation; `PUT /<index>` with mappings.
 *  - Read-back for end-to-end tests that also run against a real cluster: `/<target>/_refresh`,
 *    `/<target>/_count`, `/<target>/_search` (match_all or one `term`, `size`, `from`, in acceptance
 *    order).
 * What it cannot prove: real mappings (no dynamic mapping, no type conflicts, no field limits — inject
 * 400s instead), analysis, ingest pipelines, shards, refresh delays, cluster behaviour under load.
 */
import { EventEmitter } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync, inflateSync } from 'node:zlib';

export type JsonObject = Record<string, unknown>;

export interface FakeEsOptions {
  /** 0 (default): any free port. The port stays the same across stop()/start(). */
  readonly port?: number;
  readonly host?: string;
  /** Reported by `GET /`; its major decides which compatible-with versions are accepted. Default 8.19.0. */
  readonly version?: string;
  /** When set, every request must carry one of these credentials, or it gets 401 security_exception. */
  readonly auth?: { readonly basic?: { readonly username: string; readonly password: string }; readonly apiKey?: string };
  /** Bodies whose decoded size exceeds this get 413 (ES's http.max_content_length, 100mb by default). */
  readonly maxBodyBytes?: number;
  /** Install the built-in `logs` index template (`logs-*-*`, data stream) and its component templates. Default true. */
  readonly builtinTemplates?: boolean;
  /**
   * For the benchmark: a bulk request's documents are counted (as stored), not parsed, checked or
   * kept, and every item succeeds (fault rules do not apply). Parsing and keeping every document cost
   * this server more CPU than shiplog spent sending them, on the same cores. Default false.
   */
  readonly countOnly?: boolean;
}

export interface StoredDoc {
  /** The data stream or index the request named. */
  readonly target: string;
  /** The concrete index holding the doc (a `.ds-…` backing index for data streams). */
  readonly _index: string;
  readonly _id: string;
  readonly _source: JsonObject;
  /** The source line exactly as received. */
  readonly raw: string;
  readonly opType: 'create' | 'index';
  readonly pipeline: string | undefined;
  /** Acceptance order across the whole server, from 0. */
  readonly seqNo: number;
}

export interface RequestLog {
  readonly seq: number;
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly headers: IncomingHttpHeaders;
  readonly contentEncoding: string | undefined;
  /** Body bytes as received, and after decoding gzip/deflate. */
  wireBytes: number;
  bodyBytes: number;
  /** HTTP status answered; 0 while unanswered, or when the connection was reset instead. */
  status: number;
  /** The injected fault that acted on this request, if any. */
  fault: RequestFault['kind'] | undefined;
  /** For bulk requests: the documents in the body. */
  documents: number;
}

export interface RequestView {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
}

export type RequestFault =
  /** Answer with this status and an ES-style error body instead of processing. */
  | { readonly kind: 'status'; readonly status: number; readonly errorType?: string; readonly reason?: string }
  /** Answer late. `after` (default): process, then wait (the documents are stored, the answer is late); `before`: wait, then process. `ms: Infinity` never answers (until the client gives up or close()). */
  | { readonly kind: 'delay'; readonly ms: number; readonly when?: 'before' | 'after' }
  /** Destroy the connection. `request-body` (default): as soon as body bytes arrive, nothing stored; `after-processing`: documents stored, answer never sent. */
  | { readonly kind: 'reset'; readonly when?: 'request-body' | 'after-processing' };

export interface RequestFaultRule {
  readonly fault: RequestFault;
  /** How many matching requests it acts on (default: all). */
  readonly times?: number;
  /** Which requests it acts on (default: bulk requests). */
  readonly match?: (req: RequestView) => boolean;
}

export interface BulkItemView {
  /** Target as named by the action line or the request path. */
  readonly index: string;
  readonly id: string | undefined;
  readonly opType: string;
  readonly source: JsonObject | undefined;
}

export interface ItemFaultRule {
  /** Item status to answer, e.g. 429, 400, 409, 503. */
  readonly status: number;
  readonly errorType?: string;
  readonly reason?: string;
  /** Act on each matching document's first N attempts (counted per index and _id; default: every attempt). */
  readonly times?: number;
  /** Which documents (default: all). */
  readonly match?: (item: BulkItemView) => boolean;
}

export interface FaultHandle {
  /** How many times the fault has acted. */
  readonly hits: number;
  remove(): void;
}

export interface Faults {
  request(rule: RequestFaultRule): FaultHandle;
  item(rule: ItemFaultRule): FaultHandle;
  /** 413 above this many decoded body bytes; settable per test. */
  maxBodyBytes: number;
  clear(): void;
}

export interface FakeEsStats {
  requests: number;
  bulkRequests: number;
  /** Bulk items seen, stored, refused by a 409 conflict, and failed otherwise. */
  bulkItems: number;
  stored: number;
  conflicts: number;
  failedItems: number;
}

export interface FakeEs {
  readonly url: string;
  readonly port: number;
  /** Documents of a data stream or index (by the name the client used), or all, in acceptance order. */
  docs(target?: string): StoredDoc[];
  /** `_source`s of docs(target). */
  sources(target?: string): JsonObject[];
  doc(target: string, id: string): StoredDoc | undefined;
  /** Names of data streams and (non-backing) indices that exist. */
  targets(): string[];
  dataStreams(): string[];
  componentTemplate(name: string): JsonObject | undefined;
  indexTemplate(name: string): JsonObject | undefined;
  requests(filter?: { readonly path?: string | RegExp; readonly method?: string }): RequestLog[];
  stats(): FakeEsStats;
  readonly faults: Faults;
  /** Resolves when `predicate` holds, re-checked whenever a request arrives, is answered or stores docs. */
  waitFor(predicate: () => boolean): Promise<void>;
  waitForDocs(count: number, target?: string): Promise<void>;
  waitForRequests(count: number, filter?: { readonly path?: string | RegExp; readonly method?: string }): Promise<void>;
  /** Stop listening and drop every connection: clients now get ECONNREFUSED on this port. */
  stop(): Promise<void>;
  /** Listen again on the same port. */
  start(): Promise<void>;
  /** Forget documents, templates, data streams, requests and faults (built-ins come back). */
  reset(): void;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------

const BUILTIN_COMPONENTS: Readonly<Record<string, JsonObject>> = {
  'logs@mappings': {
    template: {
      mappings: {
        date_detection: false,
        properties: {
          '@timestamp': { type: 'date' },
          data_stream: { properties: { type: { type: 'constant_keyword', value: 'logs' }, dataset: { type: 'constant_keyword' }, namespace: { type: 'constant_keyword' } } },
        },
      },
    },
    _meta: { managed: true, description: 'fake-es stand-in for the built-in logs@mappings' },
  },
  'logs@settings': { template: { settings: { index: { lifecycle: { name: 'logs' }, codec: 'best_compression' } } }, _meta: { managed: true } },
  'ecs@mappings': { template: { mappings: { dynamic_templates: [] } }, _meta: { managed: true, description: 'fake-es stand-in: no dynamic templates' } },
};

const BUILTIN_INDEX_TEMPLATES: Readonly<Record<string, JsonObject>> = {
  logs: {
    index_patterns: ['logs-*-*'],
    priority: 100,
    data_stream: {},
    composed_of: ['logs@mappings', 'logs@settings', 'logs@custom', 'ecs@mappings'],
    ignore_missing_component_templates: ['logs@custom'],
    allow_auto_create: true,
    _meta: { managed: true, description: 'default logs template installed by x-pack' },
  },
};

interface IndexState {
  readonly name: string;
  readonly dataStream: string | undefined;
  readonly mappings: JsonObject;
  readonly docs: Map<string, StoredDoc>;
}

interface DataStreamState {
  readonly name: string;
  readonly template: string;
  readonly backing: string[];
}

class EsError extends Error {
  constructor(readonly status: number, readonly type: string, reason: string) {
    super(reason);
  }
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
}

function deepMerge(into: JsonObject, from: JsonObject): JsonObject {
  for (const [k, v] of Object.entries(from)) {
    const cur = into[k];
    into[k] = isObject(cur) && isObject(v) ? deepMerge({ ...cur }, v) : structuredClone(v);
  }
  return into;
}

const NEWLINE = 0x0a;
const INDEX_OP_PREFIX = Buffer.from('{"index"');
/** Where countBulk's answer gets its items. */
const ITEMS_MARK = '\u0000items\u0000';

/** An answer already serialized (countBulk's): sent as it is. */
class JsonText {
  constructor(readonly text: string) {}
}

/** A bulk body whose last line has no newline (Elasticsearch's 400 for it). */
function notTerminatedByNewline(): EsError {
  return new EsError(400, 'illegal_argument_exception', 'The bulk request must be terminated by a newline [\\n]');
}

/** `response` as the request's `filter_path` (if any) leaves it. */
function withFilterPath(response: unknown, query: Readonly<Record<string, string>>): unknown {
  return query['filter_path'] !== undefined ? applyFilterPath(response, query['filter_path']) : response;
}

/** ES filter_path: comma-separated dotted paths, `*` matching any key, arrays traversed. */
export function applyFilterPath(value: unknown, filterPath: string): unknown {
  const patterns = filterPath.split(',').map((p) => p.trim()).filter((p) => p !== '').map((p) => p.split('.'));
  return filterValue(value, patterns) ?? {};
}

function filterValue(value: unknown, patterns: string[][]): unknown {
  if (patterns.some((p) => p.length === 0)) return value;
  if (Array.isArray(value)) {
    const out = value.map((v) => filterValue(v, patterns)).filter((v) => v !== undefined);
    return out.length > 0 ? out : undefined;
  }
  if (!isObject(value)) return undefined;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) {
    const sub = patterns.filter((p) => p[0] === '*' || p[0] === k).map((p) => p.slice(1));
    if (sub.length === 0) continue;
    const r = filterValue(v, sub);
    if (r !== undefined) out[k] = r;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function dateStamp(): string {
  return new Date().toISOString().slice(0, 10).replace(/-/g, '.');
}

function lookupMapping(mappings: JsonObject, field: string): JsonObject | undefined {
  let props: unknown = mappings['properties'];
  let def: unknown;
  for (const part of field.split('.')) {
    if (!isObject(props)) return undefined;
    def = props[part];
    if (!isObject(def)) return undefined;
    props = def['properties'];
  }
  return isObject(def) ? def : undefined;
}

function valueAt(source: JsonObject, path: string): unknown {
  if (path in source) return source[path];
  let cur: unknown = source;
  for (const part of path.split('.')) {
    if (!isObject(cur)) return undefined;
    cur = cur[part];
  }
  return cur;
}

class FakeElasticsearch implements FakeEs {
  private server: Server;
  private listening = false;
  private portNumber = 0;
  private readonly host: string;
  private readonly version: string;
  private readonly events = new EventEmitter();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly log: RequestLog[] = [];
  private readonly counters: FakeEsStats = { requests: 0, bulkRequests: 0, bulkItems: 0, stored: 0, conflicts: 0, failedItems: 0 };
  private components = new Map<string, JsonObject>();
  private indexTemplates = new Map<string, JsonObject>();
  private indices = new Map<string, IndexState>();
  private streams = new Map<string, DataStreamState>();
  private order: StoredDoc[] = [];
  private nextAutoId = 0;
  private requestRules: { rule: RequestFaultRule; left: number; hits: number }[] = [];
  private itemRules: { rule: ItemFaultRule; attempts: Map<string, number>; hits: number }[] = [];
  readonly faults: Faults;

  constructor(private readonly options: FakeEsOptions) {
    this.host = options.host ?? '127.0.0.1';
    this.version = options.version ?? '8.19.0';
    this.events.setMaxListeners(0);
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 60_000;
    const self = this;
    let maxBodyBytes = options.maxBodyBytes ?? 100 * 1024 * 1024;
    this.faults = {
      request(rule) {
        const entry = { rule, left: rule.times ?? Number.POSITIVE_INFINITY, hits: 0 };
        self.requestRules.push(entry);
        return { get hits() { return entry.hits; }, remove: () => { self.requestRules = self.requestRules.filter((e) => e !== entry); } };
      },
      item(rule) {
        const entry = { rule, attempts: new Map<string, number>(), hits: 0 };
        self.itemRules.push(entry);
        return { get hits() { return entry.hits; }, remove: () => { self.itemRules = self.itemRules.filter((e) => e !== entry); } };
      },
      get maxBodyBytes() { return maxBodyBytes; },
      set maxBodyBytes(n: number) { maxBodyBytes = n; },
      clear() {
        self.requestRules = [];
        self.itemRules = [];
        maxBodyBytes = options.maxBodyBytes ?? 100 * 1024 * 1024;
      },
    };
    this.installBuiltins();
  }

  get port(): number {
    return this.portNumber;
  }

  get url(): string {
    return `http://${this.host}:${this.portNumber}`;
  }

  async start(): Promise<void> {
    if (this.listening) return;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.portNumber === 0 ? (this.options.port ?? 0) : this.portNumber, this.host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    this.listening = true;
    this.portNumber = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    if (!this.listening) return;
    this.listening = false;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.stop();
    this.events.emit('change');
  }

  reset(): void {
    this.components = new Map();
    this.indexTemplates = new Map();
    this.indices = new Map();
    this.streams = new Map();
    this.order = [];
    this.log.length = 0;
    Object.assign(this.counters, { requests: 0, bulkRequests: 0, bulkItems: 0, stored: 0, conflicts: 0, failedItems: 0 });
    this.faults.clear();
    this.installBuiltins();
  }

  docs(target?: string): StoredDoc[] {
    return target === undefined ? [...this.order] : this.order.filter((d) => d.target === target);
  }

  sources(target?: string): JsonObject[] {
    return this.docs(target).map((d) => d._source);
  }

  doc(target: string, id: string): StoredDoc | undefined {
    for (const index of this.concreteIndices(target)) {
      const d = this.indices.get(index)?.docs.get(id);
      if (d !== undefined) return d;
    }
    return undefined;
  }

  targets(): string[] {
    return [...this.streams.keys(), ...[...this.indices.values()].filter((i) => i.dataStream === undefined).map((i) => i.name)];
  }

  dataStreams(): string[] {
    return [...this.streams.keys()];
  }

  componentTemplate(name: string): JsonObject | undefined {
    return this.components.get(name);
  }

  indexTemplate(name: string): JsonObject | undefined {
    return this.indexTemplates.get(name);
  }

  requests(filter?: { readonly path?: string | RegExp; readonly method?: string }): RequestLog[] {
    return this.log.filter((r) => {
      if (filter?.method !== undefined && r.method !== filter.method) return false;
      const p = filter?.path;
      if (p === undefined) return true;
      return typeof p === 'string' ? r.path === p : p.test(r.path);
    });
  }

  stats(): FakeEsStats {
    return { ...this.counters };
  }

  waitFor(predicate: () => boolean): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => {
        if (predicate()) {
          this.events.off('change', check);
          resolve();
        }
      };
      this.events.on('change', check);
    });
  }

  waitForDocs(count: number, target?: string): Promise<void> {
    return this.waitFor(() => this.docs(target).length >= count);
  }

  waitForRequests(count: number, filter?: { readonly path?: string | RegExp; readonly method?: string }): Promise<void> {
    return this.waitFor(() => this.requests(filter).length >= count);
  }

  // --- HTTP ------------------------------------------------------------------------------------

  private installBuiltins(): void {
    if (this.options.builtinTemplates === false) return;
    for (const [name, body] of Object.entries(BUILTIN_COMPONENTS)) this.components.set(name, structuredClone(body));
    for (const [name, body] of Object.entries(BUILTIN_INDEX_TEMPLATES)) this.indexTemplates.set(name, structuredClone(body));
  }

  private later(ms: number, fn: () => void): void {
    if (ms === Number.POSITIVE_INFINITY) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake-es');
    const query: Record<string, string> = Object.fromEntries(url.searchParams);
    const view: RequestView = { method: req.method ?? 'GET', path: decodeURIComponent(url.pathname), query };
    const encoding = typeof req.headers['content-encoding'] === 'string' ? req.headers['content-encoding'].toLowerCase() : undefined;
    const entry: RequestLog = {
      seq: this.log.length, method: view.method, path: view.path, query, headers: req.headers, contentEncoding: encoding,
      wireBytes: 0, bodyBytes: 0, status: 0, fault: undefined, documents: 0,
    };
    this.log.push(entry);
    this.counters.requests++;
    const isBulk = /(^|\/)_bulk$/.test(view.path);
    if (isBulk) this.counters.bulkRequests++;
    this.events.emit('change');

    const rule = this.requestRules.find((r) => r.left > 0 && (r.rule.match ?? ((v: RequestView) => /(^|\/)_bulk$/.test(v.path)))(view));
    let fault: RequestFault | undefined;
    if (rule !== undefined) {
      rule.left--;
      rule.hits++;
      fault = rule.rule.fault;
      entry.fault = fault.kind;
    }

    const chunks: Buffer[] = [];
    if (fault?.kind === 'reset' && (fault.when ?? 'request-body') === 'request-body') {
      let destroyed = false;
      const kill = (): void => {
        if (destroyed) return;
        destroyed = true;
        req.socket.destroy();
        this.events.emit('change');
      };
      req.once('data', kill);
      req.once('end', kill);
      return;
    }
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const wire = Buffer.concat(chunks);
      entry.wireBytes = wire.length;
      const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
        if (res.destroyed || res.writableEnded) return;
        const accept = typeof req.headers.accept === 'string' ? req.headers.accept : '';
        const compat = /compatible-with=(\d+)/.exec(accept);
        const contentType = compat !== null ? `application/vnd.elasticsearch+json;compatible-with=${compat[1]}` : 'application/json';
        const text = body === undefined ? '' : body instanceof JsonText ? body.text : JSON.stringify(body);
        res.writeHead(status, { 'X-Elastic-Product': 'Elasticsearch', 'Content-Type': contentType, 'Content-Length': String(Buffer.byteLength(text)), ...headers });
        res.end(view.method === 'HEAD' ? undefined : text);
        entry.status = status;
        this.events.emit('change');
      };
      const sendError = (err: EsError): void => {
        const extra: Record<string, string> = err.status === 401 ? { 'WWW-Authenticate': 'Basic realm="security", ApiKey' } : {};
        send(err.status, { error: { root_cause: [{ type: err.type, reason: err.message }], type: err.type, reason: err.message }, status: err.status }, extra);
      };
      if (fault?.kind === 'status') {
        sendError(new EsError(fault.status, fault.errorType ?? (fault.status === 429 ? 'es_rejected_execution_exception' : 'unavailable_shards_exception'), fault.reason ?? `injected ${fault.status}`));
        return;
      }
      const answerRequest = (): void => {
        let answer: { status: number; body: unknown };
        try {
          answer = this.route(req, view, wire, encoding, entry);
        } catch (err) {
          // A bug in fake-es answers 500 rather than crashing the test run.
          const esError = err instanceof EsError ? err : new EsError(500, 'fake_es_internal_error', err instanceof Error ? err.stack ?? err.message : String(err));
          if (fault?.kind === 'reset') {
            req.socket.destroy();
            this.events.emit('change');
          } else if (fault?.kind === 'delay' && (fault.when ?? 'after') === 'after') {
            this.later(fault.ms, () => sendError(esError));
          } else {
            sendError(esError);
          }
          return;
        }
        this.events.emit('change');
        if (fault?.kind === 'reset') {
          req.socket.destroy();
          this.events.emit('change');
        } else if (fault?.kind === 'delay' && (fault.when ?? 'after') === 'after') {
          this.later(fault.ms, () => send(answer.status, answer.body));
        } else {
          send(answer.status, answer.body);
        }
      };
      if (fault?.kind === 'delay' && fault.when === 'before') this.later(fault.ms, answerRequest);
      else answerRequest();
    });
  }

  private checkAuth(headers: IncomingHttpHeaders, path: string): void {
    const auth = this.options.auth;
    if (auth === undefined) return;
    const given = headers.authorization ?? '';
    const ok =
      (auth.basic !== undefined && given === `Basic ${Buffer.from(`${auth.basic.username}:${auth.basic.password}`).toString('base64')}`) ||
      (auth.apiKey !== undefined && given === `ApiKey ${auth.apiKey}`);
    if (!ok) throw new EsError(401, 'security_exception', given === '' ? `missing authentication credentials for REST request [${path}]` : `unable to authenticate with provided credentials for REST request [${path}]`);
  }

  private checkMediaType(headers: IncomingHttpHeaders): void {
    const major = Number(this.version.split('.')[0]);
    for (const h of [headers['content-type'], headers.accept]) {
      const m = typeof h === 'string' ? /compatible-with=(\d+)/.exec(h) : null;
      if (m !== null && Number(m[1]) !== major && Number(m[1]) !== major - 1) {
        throw new EsError(400, 'media_type_header_exception', `Invalid media-type value on headers [Accept, Content-Type]; A compatible version is required on both Content-Type and Accept headers if either one has requested a compatible version and the compatible versions must match. Accept=${headers.accept ?? 'null'}, Content-Type=${headers['content-type'] ?? 'null'}`);
      }
    }
  }

  /** The request body, uncompressed (bytes: counting mode counts a bulk body's lines without decoding its text). */
  private decode(wire: Buffer, encoding: string | undefined, entry: RequestLog): Buffer {
    let body: Buffer;
    try {
      body = encoding === 'gzip' ? gunzipSync(wire) : encoding === 'deflate' ? inflateSync(wire) : wire;
    } catch (err) {
      throw new EsError(400, 'illegal_argument_exception', `cannot decode ${encoding ?? ''} body: ${(err as Error).message}`);
    }
    entry.bodyBytes = body.length;
    if (body.length > this.faults.maxBodyBytes) throw new EsError(413, 'content_too_long_exception', `request body is ${body.length} bytes, over the limit of ${this.faults.maxBodyBytes}`);
    return body;
  }

  private json(text: string): JsonObject {
    if (text.trim() === '') return {};
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (err) {
      throw new EsError(400, 'x_content_parse_exception', `failed to parse request body: ${(err as Error).message}`);
    }
    if (!isObject(v)) throw new EsError(400, 'x_content_parse_exception', 'request body must be an object');
    return v;
  }

  private route(req: IncomingMessage, view: RequestView, wire: Buffer, encoding: string | undefined, entry: RequestLog): { status: number; body: unknown } {
    this.checkAuth(req.headers, view.path);
    this.checkMediaType(req.headers);
    const requestBody = this.decode(wire, encoding, entry);
    const { method, query } = view;
    const parts = view.path.split('/').filter((p) => p !== '');
    const [p0, p1, p2, p3] = parts;
    const ok = (body: unknown, status = 200): { status: number; body: unknown } => ({ status, body });

    if (parts.length === 0 && (method === 'GET' || method === 'HEAD')) return ok(this.info());
    if (p0 === '_bulk' && parts.length === 1 && (method === 'POST' || method === 'PUT')) return ok(this.bulk(undefined, requestBody, query, entry));
    if (p1 === '_bulk' && parts.length === 2 && p0 !== undefined && (method === 'POST' || method === 'PUT')) return ok(this.bulk(p0, requestBody, query, entry));
    const text = requestBody.toString('utf8');
    if (p0 === '_component_template' && p1 !== undefined && parts.length === 2) return ok(this.templateApi(this.components, 'component template', p1, method, query, text));
    if (p0 === '_component_template' && parts.length === 1 && method === 'GET') return ok({ component_templates: [...this.components].map(([name, t]) => ({ name, component_template: t })) });
    if (p0 === '_index_template' && p1 === '_simulate_index' && p2 !== undefined && method === 'POST') return ok(this.simulateIndex(p2));
    if (p0 === '_index_template' && p1 !== undefined && parts.length === 2) return ok(this.templateApi(this.indexTemplates, 'index template', p1, method, query, text));
    if (p0 === '_index_template' && parts.length === 1 && method === 'GET') return ok({ index_templates: [...this.indexTemplates].map(([name, t]) => ({ name, index_template: t })) });
    if (p0 === '_data_stream') return ok(this.dataStreamApi(p1, method));
    if (p0 !== undefined && p1 === '_mapping' && p2 === 'field' && p3 !== undefined && method === 'GET') return ok(this.fieldMapping(p0, p3));
    if (p0 !== undefined && p1 === '_rollover' && method === 'POST') return ok(this.rollover(p0));
    if (p0 !== undefined && p1 === '_refresh' && (method === 'POST' || method === 'GET')) return ok({ _shards: { total: 1, successful: 1, failed: 0 } });
    if (p0 !== undefined && p1 === '_count' && (method === 'GET' || method === 'POST')) return ok({ count: this.search(p0, this.json(text), query, true).length, _shards: { total: 1, successful: 1, skipped: 0, failed: 0 } });
    if (p0 !== undefined && p1 === '_search' && (method === 'GET' || method === 'POST')) return ok(this.searchBody(p0, this.json(text), query));
    if (p0 !== undefined && parts.length === 1 && method === 'PUT') return ok(this.createIndex(p0, this.json(text)));
    throw new EsError(400, 'illegal_argument_exception', `no handler found for uri [${view.path}] and method [${method}] (fake-es)`);
  }

  private info(): JsonObject {
    return {
      name: 'fake-es', cluster_name: 'fake-es', cluster_uuid: 'ZmFrZS1lcy1jbHVzdGVy',
      version: {
        number: this.version, build_flavor: 'default', build_type: 'tar', build_hash: 'fake', build_date: '2025-01-01T00:00:00.000Z',
        build_snapshot: false, lucene_version: '9.12.0', minimum_wire_compatibility_version: '7.17.0', minimum_index_compatibility_version: '7.0.0',
      },
      tagline: 'You Know, for Search',
    };
  }

  // --- templates, indices, data streams -------------------------------------------------------

  private templateApi(store: Map<string, JsonObject>, what: string, name: string, method: string, query: Readonly<Record<string, string>>, text: string): unknown {
    if (method === 'GET') {
      const matching = [...store].filter(([n]) => globToRegExp(name).test(n));
      if (matching.length === 0) throw new EsError(404, 'resource_not_found_exception', `${what} matching [${name}] not found`);
      return what === 'index template'
        ? { index_templates: matching.map(([n, t]) => ({ name: n, index_template: t })) }
        : { component_templates: matching.map(([n, t]) => ({ name: n, component_template: t })) };
    }
    if (method === 'DELETE') {
      if (!store.delete(name)) throw new EsError(404, 'resource_not_found_exception', `${what} matching [${name}] not found`);
      return { acknowledged: true };
    }
    if (method !== 'PUT' && method !== 'POST') throw new EsError(405, 'illegal_argument_exception', `method [${method}] not allowed`);
    const body = this.json(text);
    if (query['create'] === 'true' && store.has(name)) throw new EsError(400, 'illegal_argument_exception', `${what} [${name}] already exists`);
    if (what === 'component template' && !isObject(body['template'])) throw new EsError(400, 'x_content_parse_exception', 'Required [template]');
    if (what === 'index template') {
      if (!Array.isArray(body['index_patterns']) || body['index_patterns'].length === 0) throw new EsError(400, 'action_request_validation_exception', 'Validation Failed: 1: index patterns are missing;');
      const ignored = Array.isArray(body['ignore_missing_component_templates']) ? body['ignore_missing_component_templates'] : [];
      const missing = (Array.isArray(body['composed_of']) ? body['composed_of'] : []).filter((c): c is string => typeof c === 'string' && !this.components.has(c) && !ignored.includes(c));
      if (missing.length > 0) throw new EsError(400, 'invalid_index_template_exception', `index_template [${name}] invalid, cause [index template [${name}] specifies component templates [${missing.join(', ')}] that do not exist]`);
    }
    store.set(name, body);
    return { acknowledged: true };
  }

  /** The highest-priority index template whose patterns match `name`. */
  private matchingTemplate(name: string): [string, JsonObject] | undefined {
    let best: [string, JsonObject] | undefined;
    for (const [tname, t] of this.indexTemplates) {
      const patterns = Array.isArray(t['index_patterns']) ? t['index_patterns'] : [];
      if (!patterns.some((p) => typeof p === 'string' && globToRegExp(p).test(name))) continue;
      const prio = typeof t['priority'] === 'number' ? t['priority'] : 0;
      const bestPrio = best !== undefined && typeof best[1]['priority'] === 'number' ? best[1]['priority'] : 0;
      if (best === undefined || prio > bestPrio) best = [tname, t];
    }
    return best;
  }

  /** The mappings an index named `name` gets from its template: composed components in order, then its own. */
  private resolvedMappings(template: JsonObject | undefined): JsonObject {
    const out: JsonObject = {};
    if (template === undefined) return out;
    for (const c of Array.isArray(template['composed_of']) ? template['composed_of'] : []) {
      const comp = typeof c === 'string' ? this.components.get(c) : undefined;
      const m = isObject(comp) && isObject(comp['template']) ? comp['template']['mappings'] : undefined;
      if (isObject(m)) deepMerge(out, m);
    }
    const own = isObject(template['template']) ? template['template']['mappings'] : undefined;
    if (isObject(own)) deepMerge(out, own);
    return out;
  }

  private simulateIndex(name: string): JsonObject {
    const found = this.matchingTemplate(name);
    return { template: { settings: {}, mappings: this.resolvedMappings(found?.[1]), aliases: {} }, overlapping: [] };
  }

  private createDataStream(name: string): DataStreamState {
    const found = this.matchingTemplate(name);
    if (found === undefined || !isObject(found[1]['data_stream'])) throw new EsError(400, 'illegal_argument_exception', `no matching index template with a data stream template found for data stream [${name}]`);
    const ds: DataStreamState = { name, template: found[0], backing: [] };
    this.streams.set(name, ds);
    this.addBackingIndex(ds);
    return ds;
  }

  private addBackingIndex(ds: DataStreamState): string {
    const generation = ds.backing.length + 1;
    const index = `.ds-${ds.name}-${dateStamp()}-${String(generation).padStart(6, '0')}`;
    this.indices.set(index, { name: index, dataStream: ds.name, mappings: this.resolvedMappings(this.matchingTemplate(ds.name)?.[1]), docs: new Map() });
    ds.backing.push(index);
    return index;
  }

  private createIndex(name: string, body: JsonObject): JsonObject {
    if (this.indices.has(name) || this.streams.has(name)) throw new EsError(400, 'resource_already_exists_exception', `index [${name}] already exists`);
    const mappings = this.resolvedMappings(this.matchingTemplate(name)?.[1]);
    if (isObject(body['mappings'])) deepMerge(mappings, body['mappings']);
    this.indices.set(name, { name, dataStream: undefined, mappings, docs: new Map() });
    return { acknowledged: true, shards_acknowledged: true, index: name };
  }

  private rollover(name: string): JsonObject {
    const ds = this.streams.get(name);
    if (ds === undefined) throw new EsError(400, 'illegal_argument_exception', `rollover target [${name}] does not exist (fake-es rolls over data streams only)`);
    const old = ds.backing.at(-1);
    const index = this.addBackingIndex(ds);
    return { acknowledged: true, shards_acknowledged: true, old_index: old, new_index: index, rolled_over: true, dry_run: false };
  }

  private dataStreamApi(name: string | undefined, method: string): JsonObject {
    const describe = (ds: DataStreamState): JsonObject => ({
      name: ds.name, timestamp_field: { name: '@timestamp' }, indices: ds.backing.map((index_name) => ({ index_name, index_uuid: index_name })),
      generation: ds.backing.length, status: 'GREEN', template: ds.template, hidden: false, system: false,
    });
    if (method === 'GET') {
      const list = [...this.streams.values()].filter((ds) => name === undefined || globToRegExp(name).test(ds.name));
      if (name !== undefined && !name.includes('*') && list.length === 0) throw new EsError(404, 'index_not_found_exception', `no such index [${name}]`);
      return { data_streams: list.map(describe) };
    }
    if (name === undefined) throw new EsError(400, 'illegal_argument_exception', 'data stream name is missing');
    if (method === 'PUT') {
      if (this.streams.has(name)) throw new EsError(400, 'resource_already_exists_exception', `data_stream [${name}] already exists`);
      this.createDataStream(name);
      return { acknowledged: true };
    }
    if (method === 'DELETE') {
      const ds = this.streams.get(name);
      if (ds === undefined) throw new EsError(404, 'index_not_found_exception', `no such index [${name}]`);
      for (const index of ds.backing) this.indices.delete(index);
      this.streams.delete(name);
      this.order = this.order.filter((d) => d.target !== name);
      return { acknowledged: true };
    }
    throw new EsError(405, 'illegal_argument_exception', `method [${method}] not allowed`);
  }

  /** Concrete indices a name means: a data stream's backing indices, an index, or a glob over both. */
  private concreteIndices(target: string): string[] {
    const out: string[] = [];
    for (const t of target.split(',')) {
      const re = globToRegExp(t);
      for (const ds of this.streams.values()) if (re.test(ds.name)) out.push(...ds.backing);
      for (const index of this.indices.values()) if (re.test(index.name) && (index.dataStream === undefined || index.name === t)) out.push(index.name);
    }
    return [...new Set(out)];
  }

  private fieldMapping(target: string, fields: string): JsonObject {
    const indices = this.concreteIndices(target);
    if (indices.length === 0 && !target.includes('*')) throw new EsError(404, 'index_not_found_exception', `no such index [${target}]`);
    const out: JsonObject = {};
    for (const name of indices) {
      const mappings: JsonObject = {};
      const index = this.indices.get(name);
      for (const field of fields.split(',')) {
        const def = index === undefined ? undefined : lookupMapping(index.mappings, field);
        // Like ES, object fields are not "fields" here: only leaves (with a type other than object) answer.
        if (def === undefined || typeof def['type'] !== 'string' || def['type'] === 'object' || def['type'] === 'nested') continue;
        mappings[field] = { full_name: field, mapping: { [field.split('.').at(-1) ?? field]: def } };
      }
      out[name] = { mappings };
    }
    return out;
  }

  private search(target: string, body: JsonObject, query: Readonly<Record<string, string>>, countOnly: boolean): StoredDoc[] {
    const indices = new Set(this.concreteIndices(target));
    if (indices.size === 0 && !target.includes('*') && query['ignore_unavailable'] !== 'true') throw new EsError(404, 'index_not_found_exception', `no such index [${target}]`);
    let docs = this.order.filter((d) => indices.has(d._index));
    const q = body['query'];
    const term = isObject(q) ? q['term'] : undefined;
    if (isObject(term)) {
      for (const [field, cond] of Object.entries(term)) {
        const want = isObject(cond) ? cond['value'] : cond;
        docs = docs.filter((d) => valueAt(d._source, field) === want);
      }
    } else if (isObject(q) && !isObject(q['match_all'])) {
      throw new EsError(400, 'parsing_exception', 'fake-es supports only match_all and term queries');
    }
    if (countOnly) return docs;
    const from = Number(query['from'] ?? body['from'] ?? 0);
    const size = Number(query['size'] ?? body['size'] ?? 10);
    return docs.slice(from, from + size);
  }

  private searchBody(target: string, body: JsonObject, query: Readonly<Record<string, string>>): JsonObject {
    const total = this.search(target, body, query, true).length;
    const hits = this.search(target, body, query, false);
    return {
      took: 1, timed_out: false, _shards: { total: 1, successful: 1, skipped: 0, failed: 0 },
      hits: { total: { value: total, relation: 'eq' }, max_score: 1, hits: hits.map((d) => ({ _index: d._index, _id: d._id, _score: 1, _source: d._source })) },
    };
  }

  // --- bulk ------------------------------------------------------------------------------------

  private bulk(pathIndex: string | undefined, body: Buffer, query: Readonly<Record<string, string>>, entry: RequestLog): unknown {
    if (this.options.countOnly === true) return this.countBulk(body, query, entry);
    const text = body.toString('utf8');
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    else if (text !== '') throw notTerminatedByNewline();
    if (lines.length === 0) throw new EsError(400, 'action_request_validation_exception', 'Validation Failed: 1: no requests added;');
    const items: JsonObject[] = [];
    let errors = false;
    for (let i = 0; i < lines.length; i++) {
      let action: unknown;
      try {
        action = JSON.parse(lines[i] ?? '');
      } catch {
        throw new EsError(400, 'x_content_parse_exception', `[${i + 1}:1] Malformed action/metadata line [${i + 1}], expected START_OBJECT`);
      }
      const opType = isObject(action) ? Object.keys(action)[0] : undefined;
      const meta = isObject(action) && opType !== undefined ? action[opType] : undefined;
      if (opType === undefined || !isObject(meta)) throw new EsError(400, 'illegal_argument_exception', `Malformed action/metadata line [${i + 1}]`);
      if (opType !== 'delete') i++;
      const sourceLine = opType === 'delete' ? undefined : lines[i];
      const index = typeof meta['_index'] === 'string' ? meta['_index'] : pathIndex;
      const id = typeof meta['_id'] === 'string' ? meta['_id'] : undefined;
      const pipeline = typeof meta['pipeline'] === 'string' ? meta['pipeline'] : query['pipeline'];
      const item = this.bulkItem(opType, index, id, sourceLine, pipeline);
      if (isObject(item['error'])) errors = true;
      items.push({ [opType]: item });
    }
    entry.documents = items.length;
    const response = { took: 1, errors, items };
    return withFilterPath(response, query);
  }

  /**
   * countOnly: action and source lines in pairs, every one a success of the first line's op type.
   * The bytes are counted, not decoded; the answer is what withFilterPath makes of it, built as text
   * from one filtered item, since every item is the same (decoding the body to text, then the generic
   * filter and JSON.stringify over a million items, took this server ~0.6 of its 0.9 CPU s per million
   * documents, on the cores shiplog runs on in the benchmark).
   */
  private countBulk(body: Buffer, query: Readonly<Record<string, string>>, entry: RequestLog): unknown {
    let lines = 0;
    for (let at = body.indexOf(NEWLINE); at !== -1; at = body.indexOf(NEWLINE, at + 1)) lines++;
    if (lines === 0 || body[body.length - 1] !== NEWLINE) throw notTerminatedByNewline();
    const documents = lines >> 1;
    const opType = body.subarray(0, INDEX_OP_PREFIX.length).equals(INDEX_OP_PREFIX) ? 'index' : 'create';
    this.counters.bulkItems += documents;
    this.counters.stored += documents;
    entry.documents = documents;
    const item = { [opType]: { status: opType === 'create' ? 201 : 200, result: 'created' } };
    if (documents === 0) return withFilterPath({ took: 1, errors: false, items: [] }, query);
    const filtered = withFilterPath({ took: 1, errors: false, items: [item] }, query);
    if (!isObject(filtered) || !Array.isArray(filtered['items'])) return filtered; // filter_path left no items
    const itemJson = JSON.stringify(filtered['items'][0]);
    const shell = JSON.stringify({ ...filtered, items: ITEMS_MARK });
    return new JsonText(shell.replace(JSON.stringify(ITEMS_MARK), `[${`${itemJson},`.repeat(documents - 1)}${itemJson}]`));
  }

  private itemError(index: string, id: string | undefined, status: number, type: string, reason: string): JsonObject {
    this.counters.failedItems++;
    return { _index: index, _id: id ?? null, status, error: { type, reason, index } };
  }

  private bulkItem(opType: string, target: string | undefined, id: string | undefined, sourceLine: string | undefined, pipeline: string | undefined): JsonObject {
    this.counters.bulkItems++;
    if (target === undefined) return this.itemError('', id, 400, 'action_request_validation_exception', 'Validation Failed: 1: index is missing;');
    if (opType !== 'create' && opType !== 'index') return this.itemError(target, id, 400, 'illegal_argument_exception', `fake-es supports only create and index operations, not [${opType}]`);
    let source: JsonObject | undefined;
    try {
      const parsed: unknown = JSON.parse(sourceLine ?? '');
      if (isObject(parsed)) source = parsed;
    } catch {
      source = undefined;
    }
    const view: BulkItemView = { index: target, id, opType, source };
    for (const r of this.itemRules) {
      if (r.rule.match !== undefined && !r.rule.match(view)) continue;
      const key = `${target}\u0000${id ?? ''}`;
      const attempt = (r.attempts.get(key) ?? 0) + 1;
      r.attempts.set(key, attempt);
      if (attempt > (r.rule.times ?? Number.POSITIVE_INFINITY)) continue;
      r.hits++;
      if (r.rule.status === 409) this.counters.conflicts++;
      const type = r.rule.errorType ?? (r.rule.status === 429 ? 'es_rejected_execution_exception' : r.rule.status === 409 ? 'version_conflict_engine_exception' : r.rule.status >= 500 ? 'unavailable_shards_exception' : 'document_parsing_exception');
      return this.itemError(target, id, r.rule.status, type, r.rule.reason ?? `injected ${r.rule.status}`);
    }
    if (source === undefined) return this.itemError(target, id, 400, 'document_parsing_exception', '[1:1] failed to parse: source is not a JSON object');
    let concrete: IndexState;
    const ds = this.streams.get(target);
    if (ds !== undefined) {
      concrete = this.indices.get(ds.backing.at(-1) ?? '') as IndexState;
    } else if (this.indices.has(target)) {
      concrete = this.indices.get(target) as IndexState;
    } else {
      const template = this.matchingTemplate(target);
      if (template !== undefined && isObject(template[1]['data_stream'])) {
        if (opType !== 'create') return this.itemError(target, id, 400, 'illegal_argument_exception', `only write ops with an op_type of create are allowed in data streams`);
        const created = this.createDataStream(target);
        concrete = this.indices.get(created.backing.at(-1) ?? '') as IndexState;
      } else {
        this.createIndex(target, {});
        concrete = this.indices.get(target) as IndexState;
      }
    }
    if (concrete.dataStream !== undefined) {
      if (opType !== 'create') return this.itemError(target, id, 400, 'illegal_argument_exception', 'only write ops with an op_type of create are allowed in data streams');
      if (typeof source['@timestamp'] !== 'string' && typeof source['@timestamp'] !== 'number') return this.itemError(concrete.name, id, 400, 'document_parsing_exception', '[1:1] failed to parse: data stream timestamp field [@timestamp] is missing');
    }
    const docId = id ?? `fake${(this.nextAutoId++).toString(36).padStart(16, '0')}`;
    // An id is unique within its concrete index (for a data stream: its write index), as in ES.
    const existing = concrete.docs.get(docId);
    if (existing !== undefined && opType === 'create') {
      this.counters.conflicts++;
      return this.itemError(concrete.name, docId, 409, 'version_conflict_engine_exception', `[${docId}]: version conflict, document already exists (current version [1])`);
    }
    const doc: StoredDoc = { target, _index: concrete.name, _id: docId, _source: source, raw: sourceLine ?? '', opType, pipeline, seqNo: this.counters.stored };
    concrete.docs.set(docId, doc);
    if (existing !== undefined) this.order = this.order.filter((d) => d !== existing);
    this.order.push(doc);
    this.counters.stored++;
    return { _index: concrete.name, _id: docId, _version: 1, result: existing !== undefined ? 'updated' : 'created', status: existing !== undefined ? 200 : 201, _seq_no: doc.seqNo, _primary_term: 1 };
  }
}

/** Starts a fake Elasticsearch on 127.0.0.1 (a free port unless `port` is given). */
export async function startFakeEs(options: FakeEsOptions = {}): Promise<FakeEs> {
  const es = new FakeElasticsearch(options);
  await es.start();
  return es;
}
