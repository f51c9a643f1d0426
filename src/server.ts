/**
 * The plugin HTTP API dockerd speaks over a unix socket (protocol.md §1–2): a thin layer over the
 * Driver. dockerd sends no Content-Type and sometimes an empty body, so one catch-all parser takes
 * JSON from any request; every answer is JSON with `Err` ("" on success).
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { type BodySchema, bodyValidator } from './body-schema.js';
import type { ContainerInfo } from './container-info.js';
import { type Driver, DriverError, type ReadConfig } from './driver.js';
import type { ReadRequest } from './store/store.js';

const infoSchema = {
  type: 'object',
  properties: {
    Config: { type: ['object', 'null'], additionalProperties: { type: 'string' } },
    ContainerID: { type: 'string' },
    ContainerName: { type: 'string' },
    ContainerEntrypoint: { type: 'string' },
    ContainerArgs: { type: ['array', 'null'], items: { type: 'string' } },
    ContainerImageID: { type: 'string' },
    ContainerImageName: { type: 'string' },
    ContainerCreated: { type: 'string' },
    ContainerEnv: { type: ['array', 'null'], items: { type: 'string' } },
    ContainerLabels: { type: ['object', 'null'], additionalProperties: { type: 'string' } },
    LogPath: { type: 'string' },
    DaemonName: { type: 'string' },
  },
  required: ['ContainerID'],
} as const satisfies BodySchema;

const startSchema = {
  type: 'object', properties: { File: { type: 'string', minLength: 1 }, Info: infoSchema }, required: ['File', 'Info'],
} as const satisfies BodySchema;
const stopSchema = { type: 'object', properties: { File: { type: 'string', minLength: 1 } }, required: ['File'] } as const satisfies BodySchema;
const readSchema = {
  type: 'object',
  properties: {
    Info: infoSchema,
    Config: {
      type: 'object',
      properties: { Since: { type: 'string' }, Until: { type: 'string' }, Tail: { type: 'integer' }, Follow: { type: 'boolean' } },
    },
  },
  required: ['Info', 'Config'],
} as const satisfies BodySchema;

interface StartBody { File: string; Info: Partial<ContainerInfo> }
interface StopBody { File: string }
interface ReadBody { Info: Partial<ContainerInfo>; Config: ReadConfig }

const OK = { Err: '' };

/**
 * Stands in for fastify's default compiler factories, which would load Ajv and fast-json-stringify
 * (body-schema.ts says why not): bodies are checked by bodyValidator, and no route has a response
 * schema. Called only if a route needed one of them, which would then fail at start-up.
 */
function noCompilerFactory(): never {
  throw new Error('shiplog has no schema compiler for this route (see src/body-schema.ts)');
}

export function buildServer(driver: Driver, logger: Logger): FastifyInstance {
  // fastify logs every request at info; per-call logging is debug-level detail for shiplog, so its logger starts at warn.
  const apiLogger = logger.child({ part: 'api' }, { level: logger.isLevelEnabled('trace') ? 'trace' : 'warn' });
  const app = Fastify({
    loggerInstance: apiLogger as FastifyBaseLogger, bodyLimit: 4 * 1024 * 1024, return503OnClosing: true,
    schemaController: { compilersFactory: { buildValidator: noCompilerFactory, buildSerializer: noCompilerFactory } },
  });
  app.setValidatorCompiler(({ schema }) => bodyValidator(schema as BodySchema));

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text) as unknown);
    } catch (err) {
      done(new BadRequest(`request body is not JSON: ${(err as Error).message}`), undefined);
    }
  });

  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, req, reply) => {
    const status = err.validation !== undefined || err instanceof BadRequest ? 400 : err.statusCode ?? 500;
    if (status >= 500) req.log.error({ err, url: req.url }, 'plugin call failed');
    void reply.code(status).send({ Err: `${req.url.replace(/^\//, '')}: ${err.message}` });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ Err: `shiplog does not implement ${req.method} ${req.url}` });
  });

  app.post('/Plugin.Activate', async () => ({ Implements: ['LogDriver'] }));
  app.post('/LogDriver.Capabilities', async () => ({ Cap: { ReadLogs: true } }));

  app.post<{ Body: StartBody }>('/LogDriver.StartLogging', { schema: { body: startSchema } }, async (req) => {
    try {
      await driver.startLogging(req.body.File, req.body.Info);
      return OK;
    } catch (err) {
      if (err instanceof DriverError) {
        req.log.warn({ file: req.body.File, err: err.message }, 'StartLogging refused');
        return { Err: err.message };
      }
      throw err;
    }
  });

  app.post<{ Body: StopBody }>('/LogDriver.StopLogging', { schema: { body: stopSchema } }, async (req) => {
    driver.stopLogging(req.body.File);
    return OK;
  });

  app.post<{ Body: ReadBody }>('/LogDriver.ReadLogs', { schema: { body: readSchema } }, async (req, reply) => {
    let read;
    try {
      read = driver.parseReadRequest(req.body.Info, req.body.Config);
    } catch (err) {
      if (err instanceof DriverError) return reply.code(400).send({ Err: err.message });
      throw err;
    }
    await streamLogs(driver, read.containerId, read.request, reply);
    return reply;
  });

  return app;
}

/** ReadLogs answers with a stream of frames, so errors before the first byte are JSON with a non-200 status. */
async function streamLogs(driver: Driver, containerId: string, request: ReadRequest, reply: FastifyReply): Promise<void> {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'Content-Type': 'application/x-protobuf' });
  try {
    await driver.readLogs(containerId, request, res);
  } catch (err) {
    reply.log.error({ err }, 'ReadLogs failed');
    // Headers are gone: end the body mid-stream so dockerd reports an error instead of a clean end.
    res.destroy(err instanceof Error ? err : new Error(String(err)));
    return;
  }
  res.end();
}

class BadRequest extends Error {
  readonly statusCode = 400;
}
