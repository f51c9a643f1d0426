/**
 * Restart re-attach: a new shiplog over the same state dir picks up the FIFOs the old one was reading
 * (dockerd keeps writing into them and never re-sends StartLogging).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeEntry, driverFixture, entryFrame, info } from './support/driver-fixture.js';

type Fixture = Awaited<ReturnType<typeof driverFixture>>;
const open: Fixture[] = [];
afterEach(async () => { for (const f of open.splice(0)) await f.close(); });
async function fixture(reuse?: string): Promise<Fixture> {
  const f = await driverFixture({}, reuse);
  open.push(f);
  return f;
}

function lines(body: Buffer): string[] {
  const out: string[] = [];
  for (let p = 0; p < body.length;) {
    const n = body.readUInt32BE(p);
    out.push(Buffer.from(decodeEntry(body.subarray(p + 4, p + 4 + n)).line).toString());
    p += 4 + n;
  }
  return out;
}

async function readAll(f: Fixture): Promise<string[]> {
  const r = await f.post('/LogDriver.ReadLogs', { Info: info(), Config: { Tail: -1, Follow: false } });
  return lines(r.rawPayload);
}

/** Resolves once the driver has taken in `count` entries across its streams (read from the store). */
async function untilStored(f: Fixture, count: number): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if ((await readAll(f)).length >= count) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`store never reached ${count} entries`);
}

describe('re-attach after a restart', () => {
  it('a clean stop carries a half-read frame to the next start: nothing lost, nothing doubled', async () => {
    const a = await fixture();
    const fifo = a.makeFifo();
    expect((await a.post('/LogDriver.StartLogging', { File: fifo.file, Info: info() })).json()).toEqual({ Err: '' });
    const frames = Array.from({ length: 10 }, (_, i) => entryFrame(`line${i}`, i));
    const all = Buffer.concat(frames);
    const cut = frames.slice(0, 4).reduce((n, f) => n + f.length, 0) + 5; // inside frame 4
    fifo.write(all.subarray(0, cut));
    await untilStored(a, 4);
    await a.driver.shutdown();
    expect(fs.existsSync(path.join(a.dir, 'state/streams', `${path.basename(fifo.file)}.carry`))).toBe(true);
    open.splice(open.indexOf(a), 1);
    await a.close();

    fifo.write(all.subarray(cut)); // dockerd kept writing while shiplog was away
    const b = await fixture(a.dir);
    expect(await b.driver.reattach()).toBe(1);
    await untilStored(b, 10);
    await b.post('/LogDriver.StopLogging', { File: fifo.file });
    const ended = b.driver.whenEnded(fifo.file);
    fifo.close();
    await ended;
    expect(await readAll(b)).toEqual(Array.from({ length: 10 }, (_, i) => `line${i}\n`));
    expect(fs.readdirSync(path.join(a.dir, 'state/streams'))).toEqual([]);
  });

  it('after a crash mid-frame, skips to the next frame start and loses only that entry', async () => {
    const a = await fixture();
    const fifo = a.makeFifo();
    await a.post('/LogDriver.StartLogging', { File: fifo.file, Info: info() });
    const frames = Array.from({ length: 10 }, (_, i) => entryFrame(`line${i}`, i));
    const all = Buffer.concat(frames);
    const cut = frames.slice(0, 4).reduce((n, f) => n + f.length, 0) + 5;
    fifo.write(all.subarray(0, cut));
    await untilStored(a, 4);
    await a.driver.shutdown();
    // A crash leaves no carry: take it away.
    fs.rmSync(path.join(a.dir, 'state/streams', `${path.basename(fifo.file)}.carry`));
    open.splice(open.indexOf(a), 1);
    await a.close();

    fifo.write(all.subarray(cut));
    const b = await fixture(a.dir);
    expect(await b.driver.reattach()).toBe(1);
    await untilStored(b, 9);
    const ended = b.driver.whenEnded(fifo.file);
    fifo.close();
    await ended;
    expect(await readAll(b)).toEqual(Array.from({ length: 10 }, (_, i) => `line${i}\n`).filter((l) => l !== 'line4\n'));
  });

  it('forgets journalled streams whose FIFO is gone, and ends and removes FIFOs dockerd no longer holds', async () => {
    const a = await fixture();
    const gone = a.makeFifo();
    const stale = a.makeFifo();
    await a.post('/LogDriver.StartLogging', { File: gone.file, Info: info() });
    await a.post('/LogDriver.StartLogging', { File: stale.file, Info: info() });
    await a.driver.shutdown();
    open.splice(open.indexOf(a), 1);
    await a.close();
    gone.close();
    fs.rmSync(gone.file);
    stale.close(); // dockerd died: nobody holds the write end any more

    const b = await fixture(a.dir);
    expect(await b.driver.reattach()).toBe(1);
    await b.driver.whenEnded(stale.file);
    expect(b.driver.liveStreams).toBe(0);
    expect(fs.existsSync(stale.file)).toBe(false);
    expect(fs.readdirSync(path.join(a.dir, 'state/streams'))).toEqual([]);
  });
});
