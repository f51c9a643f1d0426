import { afterEach, describe, expect, it } from 'vitest';
import { decodeEntry, driverFixture, entryFrame, info } from './support/driver-fixture.js';

let fx: Awaited<ReturnType<typeof driverFixture>> | undefined;
afterEach(async () => { await fx?.close(); fx = undefined; });

function frames(body: Buffer): { source: string; line: string }[] {
  const out: { source: string; line: string }[] = [];
  for (let p = 0; p < body.length;) {
    const n = body.readUInt32BE(p);
    const e = decodeEntry(body.subarray(p + 4, p + 4 + n));
    out.push({ source: e.source, line: Buffer.from(e.line).toString() });
    p += 4 + n;
  }
  return out;
}

describe('plugin API', () => {
  it('answers Activate and Capabilities with the shapes dockerd reads (empty bodies, no Content-Type)', async () => {
    fx = await driverFixture();
    const a = await fx.post('/Plugin.Activate');
    expect(a.statusCode).toBe(200);
    expect(a.json()).toEqual({ Implements: ['LogDriver'] });
    const c = await fx.app.inject({ method: 'POST', url: '/LogDriver.Capabilities', payload: 'null\n' });
    expect(c.json()).toEqual({ Cap: { ReadLogs: true } });
  });

  it('answers malformed bodies with {"Err": ...} naming the problem', async () => {
    fx = await driverFixture();
    const notJson = await fx.app.inject({ method: 'POST', url: '/LogDriver.StartLogging', payload: '{nope' });
    expect(notJson.statusCode).toBe(400);
    expect(notJson.json().Err).toMatch(/not JSON/);
    const missing = await fx.post('/LogDriver.StartLogging', { Info: info() });
    expect(missing.statusCode).toBe(400);
    expect(missing.json().Err).toMatch(/File/);
    const unknown = await fx.post('/Nope');
    expect(unknown.statusCode).toBe(404);
    expect(typeof unknown.json().Err).toBe('string');
    const badRead = await fx.post('/LogDriver.ReadLogs', { Info: info(), Config: { Since: 'yesterday', Tail: -1 } });
    expect(badRead.statusCode).toBe(400);
    expect(badRead.json().Err).toMatch(/RFC 3339/);
  });

  it('refuses FIFO paths outside the logging directory', async () => {
    fx = await driverFixture();
    const r = await fx.post('/LogDriver.StartLogging', { File: '/etc/shadow', Info: info() });
    expect(r.json().Err).toMatch(/not a FIFO under/);
  });

  it('refuses unknown and malformed log-opts with a message naming the option', async () => {
    fx = await driverFixture();
    const f = fx.makeFifo();
    expect((await fx.post('/LogDriver.StartLogging', { File: f.file, Info: info({ colour: 'blue' }) })).json().Err).toMatch(/unknown log-opt "colour"/);
    expect((await fx.post('/LogDriver.StartLogging', { File: f.file, Info: info({ 'max-size': '10q' }) })).json().Err)
      .toBe('invalid log-opt "max-size": "10q" is not a size (use e.g. 10m, 512k, 1g)');
    f.close();
  });

  it('reads a FIFO to EOF after StopLogging and serves the lines through ReadLogs', async () => {
    fx = await driverFixture();
    const f = fx.makeFifo();
    expect((await fx.post('/LogDriver.StartLogging', { File: f.file, Info: info() })).json()).toEqual({ Err: '' });
    f.write(Buffer.concat([entryFrame('one', 1), entryFrame('two', 2, 'stderr')]));
    expect((await fx.post('/LogDriver.StopLogging', { File: f.file })).json()).toEqual({ Err: '' });
    // Data written after StopLogging (still in the pipe) must be read too: EOF comes only on close.
    f.write(entryFrame('three', 3));
    const ended = fx.driver.whenEnded(f.file);
    f.close();
    await ended;
    const r = await fx.post('/LogDriver.ReadLogs', { Info: info(), Config: { Since: '0001-01-01T00:00:00Z', Until: '0001-01-01T00:00:00Z', Tail: -1, Follow: false } });
    expect(r.statusCode).toBe(200);
    expect(frames(r.rawPayload)).toEqual([
      { source: 'stdout', line: 'one\n' }, { source: 'stderr', line: 'two\n' }, { source: 'stdout', line: 'three\n' },
    ]);
  });

  it('counts and skips a corrupt frame and keeps reading', async () => {
    fx = await driverFixture();
    const f = fx.makeFifo();
    await fx.post('/LogDriver.StartLogging', { File: f.file, Info: info() });
    const garbage = Buffer.from([0, 0, 0, 2, 0x0a, 0xff]);
    f.write(Buffer.concat([entryFrame('before', 1), garbage, entryFrame('after', 2)]));
    await fx.post('/LogDriver.StopLogging', { File: f.file });
    const ended = fx.driver.whenEnded(f.file);
    f.close();
    await ended;
    const r = await fx.post('/LogDriver.ReadLogs', { Info: info(), Config: { Tail: -1, Follow: false } });
    expect(frames(r.rawPayload).map((x) => x.line)).toEqual(['before\n', 'after\n']);
  });

  it('always answers StopLogging for an unknown stream with success', async () => {
    fx = await driverFixture();
    expect((await fx.post('/LogDriver.StopLogging', { File: '/run/docker/logging/unknown' })).json()).toEqual({ Err: '' });
  });
});

