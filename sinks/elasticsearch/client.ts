/**
 * Builds the official client (@elastic/elasticsearch 8.19: it speaks to ES 8 and 9) for one sink
 * instance. Constructing it does no network I/O; the first connection is made by the first request.
 * The library itself is loaded on first use, not at start: it (with apache-arrow) is ~27 MiB of RSS
 * that a host shipping only to files never needs.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { ConnectionOptions as TlsOptions } from 'node:tls';
import type { Client, ClientOptions } from '@elastic/elasticsearch';
import { OptionError } from '../../src/option-table.js';
import type { ElasticsearchOptions } from './options.js';
import { type SerializerClass, withBulkShortcut } from './serializer.js';

export type ClientAuth = { readonly username: string; readonly password: string } | { readonly apiKey: string };

/**
 * Elasticsearch's `Authorization: ApiKey` wants base64(id:key), which is what it returns as `encoded`.
 * A key given as `id:key` (`:` is not base64) is encoded here.
 */
export function apiKeyHeaderValue(key: string): string {
  return key.includes(':') ? Buffer.from(key, 'utf8').toString('base64') : key;
}

export function clientAuth(o: ElasticsearchOptions): ClientAuth | undefined {
  if (o['es-api-key'] !== '') return { apiKey: apiKeyHeaderValue(o['es-api-key']) };
  if (o['es-username'] !== '') return { username: o['es-username'], password: o['es-password'] };
  return undefined;
}

function readPem(key: 'es-ca' | 'es-cert' | 'es-key', path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new OptionError(`invalid log-opt "${key}": ${JSON.stringify(path)} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
}

/** TLS settings; the PEM files are read now (once per sink instance), not per connection. */
export function clientTls(o: ElasticsearchOptions): TlsOptions | undefined {
  const tls: TlsOptions = {};
  if (o['es-ca'] !== '') tls.ca = readPem('es-ca', o['es-ca']);
  if (o['es-cert'] !== '') tls.cert = readPem('es-cert', o['es-cert']);
  if (o['es-key'] !== '') tls.key = readPem('es-key', o['es-key']);
  if (o['es-tls-skip-verify']) tls.rejectUnauthorized = false;
  return Object.keys(tls).length > 0 ? tls : undefined;
}

export function clientOptions(o: ElasticsearchOptions): ClientOptions {
  const auth = clientAuth(o);
  const tls = clientTls(o);
  return {
    nodes: [...o['es-url']],
    // shiplog's core retries with capped exponential backoff; the transport's own immediate retries
    // would double-count attempts and skip the backoff.
    maxRetries: 0,
    requestTimeout: o['es-timeout'],
    // The sink gzips bodies itself at level 1 (the client's own compression uses level 6).
    compression: false,
    sniffOnStart: false,
    sniffInterval: false,
    sniffOnConnectionFault: false,
    name: 'shiplog',
    ...(auth !== undefined ? { auth } : {}),
    ...(tls !== undefined ? { tls } : {}),
  };
}

/** The client, made on first use. */
export interface LazyClient {
  get(): Promise<Client>;
  /** Closes the client if it was made (nothing to close otherwise). */
  close(): Promise<void>;
}

type ClientClass = new (options: ClientOptions) => Client;

const requireCjs = createRequire(import.meta.url);

/**
 * A class the library exports, loaded with require(): it is CommonJS, and `import()` of it once (of
 * ~20 busy 20-container benchmark runs) resolved to a namespace whose `Client` was not a constructor,
 * which then failed every send of that process ("lib.Client is not a constructor"). require() hands
 * back module.exports itself.
 */
function libraryClass(name: 'Client' | 'Serializer'): unknown {
  const lib = requireCjs('@elastic/elasticsearch') as Record<string, unknown>;
  const found = lib[name];
  if (typeof found !== 'function') throw new Error(`@elastic/elasticsearch has no ${name} class (got ${typeof found})`);
  return found;
}

/** The library's Client class. */
export function loadClientClass(): ClientClass {
  return libraryClass('Client') as ClientClass;
}

/** The library's Serializer class, which the client gets with the bulk shortcut (serializer.ts). */
export function loadSerializerClass(): SerializerClass {
  return libraryClass('Serializer') as SerializerClass;
}

/**
 * The options are checked (PEM files read) now, so a bad es-ca fails StartLogging with its name;
 * the library is loaded, and the client made, when the sink first talks to Elasticsearch. A load
 * that fails is tried again by the next request (the sink retries it like any failed send) instead
 * of failing every later one.
 */
export function createClient(o: ElasticsearchOptions, load: () => ClientClass = loadClientClass, loadSerializer: () => SerializerClass = loadSerializerClass): LazyClient {
  const options = clientOptions(o);
  let client: Client | undefined;
  return {
    get: async () => {
      if (client === undefined) {
        const ClientClass = load();
        client = new ClientClass({ ...options, Serializer: withBulkShortcut(loadSerializer()) });
      }
      return client;
    },
    close: async () => {
      if (client !== undefined) await client.close();
    },
  };
}
