import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type BodySchema, bodyValidator, findBodyError } from '../src/body-schema.js';

const info: BodySchema = {
  type: 'object',
  properties: {
    ContainerID: { type: 'string' },
    Config: { type: ['object', 'null'], additionalProperties: { type: 'string' } },
    ContainerArgs: { type: ['array', 'null'], items: { type: 'string' } },
  },
  required: ['ContainerID'],
};
const start: BodySchema = { type: 'object', properties: { File: { type: 'string', minLength: 1 }, Info: info }, required: ['File', 'Info'] };
const read: BodySchema = {
  type: 'object',
  properties: { Config: { type: 'object', properties: { Tail: { type: 'integer' }, Follow: { type: 'boolean' } } } },
};

describe('request body schemas', () => {
  it('accepts what dockerd sends: nulls where allowed, maps of strings, unknown fields', () => {
    expect(findBodyError(start, { File: '/run/docker/logging/x', Info: { ContainerID: 'abc', Config: { tag: 't' }, ContainerArgs: null, Extra: 1 } })).toBeUndefined();
    expect(findBodyError(start, { File: 'f', Info: { ContainerID: 'abc', Config: null, ContainerArgs: ['sh', '-c'] } })).toBeUndefined();
    expect(findBodyError(read, { Config: { Tail: -1, Follow: true } })).toBeUndefined();
  });

  it.each([
    ['a body that is not an object', null, '', 'must be object'],
    ['a missing required field', { Info: { ContainerID: 'a' } }, '', "must have required property 'File'"],
    ['an empty string under minLength', { File: '', Info: { ContainerID: 'a' } }, '/File', 'must NOT have fewer than 1 characters'],
    ['a number where a string belongs', { File: 'f', Info: { ContainerID: 7 } }, '/Info/ContainerID', 'must be string'],
    ['a nested required field', { File: 'f', Info: {} }, '/Info', "must have required property 'ContainerID'"],
    ['a map value that is not a string', { File: 'f', Info: { ContainerID: 'a', Config: { 'max-size': 10 } } }, '/Info/Config/max-size', 'must be string'],
    ['an array item that is not a string', { File: 'f', Info: { ContainerID: 'a', ContainerArgs: ['ok', false] } }, '/Info/ContainerArgs/1', 'must be string'],
    ['an array where an object or null belongs', { File: 'f', Info: { ContainerID: 'a', Config: [] } }, '/Info/Config', 'must be object,null'],
  ])('refuses %s, saying where and what, in Ajv\'s words', (_what, body, instancePath, message) => {
    expect(findBodyError(start, body)).toMatchObject({ instancePath, message });
  });

  it('refuses a fractional or string Tail and a string Follow: nothing is coerced', () => {
    expect(findBodyError(read, { Config: { Tail: 1.5 } })).toMatchObject({ instancePath: '/Config/Tail', message: 'must be integer' });
    expect(findBodyError(read, { Config: { Tail: '5' } })).toMatchObject({ instancePath: '/Config/Tail', message: 'must be integer' });
    expect(findBodyError(read, { Config: { Follow: 'true' } })).toMatchObject({ instancePath: '/Config/Follow', message: 'must be boolean' });
  });

  it('escapes / and ~ in field names as JSON Pointer does', () => {
    expect(findBodyError(info, { ContainerID: 'a', Config: { 'a/b~c': 1 } })).toMatchObject({ instancePath: '/Config/a~1b~0c' });
  });

  it('gives fastify its validator shape: a boolean, the problem in errors', () => {
    const validate = bodyValidator(start);
    expect(validate({ File: 'f', Info: { ContainerID: 'a' } })).toBe(true);
    expect(validate.errors).toBeNull();
    expect(validate({ File: 'f' })).toBe(false);
    expect(validate.errors).toEqual([expect.objectContaining({ keyword: 'required', params: { missingProperty: 'Info' } })]);
  });

  it('lets the plugin server start without loading Ajv or the schema compilers (the memory they hold is why)', () => {
    const root = path.resolve(import.meta.dirname, '..');
    const script = `
      import { createRequire } from 'node:module';
      import pino from 'pino';
      const { buildServer } = await import(${JSON.stringify(path.join(root, 'dist/src/server.js'))});
      const app = buildServer({}, pino({ level: 'silent' }));
      await app.ready();
      const res = await app.inject({ method: 'POST', url: '/LogDriver.StopLogging', payload: '{"File":7}' });
      const loaded = Object.keys(createRequire(import.meta.url).cache).filter((m) => /node_modules\\/(ajv|@fastify\\/ajv-compiler|@fastify\\/fast-json-stringify-compiler)\\/|fast-json-stringify\\/index\\.js$/.test(m));
      console.log(JSON.stringify({ status: res.statusCode, err: res.json().Err, loaded: loaded.length }));
      await app.close();`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual({ status: 400, err: 'LogDriver.StopLogging: body/File must be string', loaded: 0 });
  });
});
