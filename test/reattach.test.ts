/**
 * Restart re-attach: a new shiplog over the same state dir picks up the FIFOs the old one was reading
 * (dockerd keeps writing into them and never re-sends StartLogging).
 */
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { PendingBytes, StreamJournal } from '../src/journal.js';
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

/** What the stream's pending file gives the next reader. */
async function pendingOf(dir: string, fifo: string): Promise<{ bytes: Buffer; cutShort: boolean } | undefined> {
  return new StreamJournal(path.join(dir, 'state/streams')).takeCarry(fifo);
}

/** A pending file holding `bytes`, as a process killed after appending them leaves it. */
function leavePending(file: string, bytes: Buffer): void {
  new PendingBytes(file, pino({ level: 'silent' }), bytes).close();
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
    expect(await pendingOf(a.dir, fifo.file)).toEqual({ bytes: all.subarray(cut - 5, cut), cutShort: false }); // the half-read frame
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

  /** Streams `lines` frames into a first driver, leaves it with a frame read in part, and stops it. */
  async function firstRun(): Promise<{ a: Fixture; fifo: ReturnType<Fixture['makeFifo']>; all: Buffer; cut: number; frames: Buffer[]; pendingFile: string }> {
    const a = await fixture();
    const fifo = a.makeFifo();
    await a.post('/LogDriver.StartLogging', { File: fifo.file, Info: info() });
    const frames = Array.from({ length: 10 }, (_, i) => entryFrame(`line${i}`, i));
    const all = Buffer.concat(frames);
    const cut = frames.slice(0, 4).reduce((n, f) => n + f.length, 0) + 5;
    fifo.write(all.subarray(0, cut));
    await untilStored(a, 4);
    await a.driver.shutdown();
    open.splice(open.indexOf(a), 1);
    await a.close();
    return { a, fifo, all, cut, frames, pendingFile: path.join(a.dir, 'state/streams', `${path.basename(fifo.file)}.pending`) };
  }

  async function secondRun(dir: string, fifo: ReturnType<Fixture['makeFifo']>, expected: number): Promise<string[]> {
    const b = await fixture(dir);
    expect(await b.driver.reattach()).toBe(1);
    await untilStored(b, expected);
    const ended = b.driver.whenEnded(fifo.file);
    fifo.close();
    await ended;
    return readAll(b);
  }

  it('after a kill -9 between reading a chunk and storing it, the next start processes that chunk from the pending file: nothing lost', async () => {
    const { a, fifo, all, cut, frames, pendingFile } = await firstRun();
    // What a crash leaves when it strikes after a chunk was read (and appended to the pending file)
    // but before its frames reached the store: the pending file holds more than the half-read frame.
    const readBeforeCrash = cut + frames.slice(4, 7).reduce((n, f) => n + f.length, 0);
    leavePending(pendingFile, all.subarray(cut - 5, readBeforeCrash));
    fifo.write(all.subarray(readBeforeCrash)); // the pipe holds only what was not read
    expect(await secondRun(a.dir, fifo, 10)).toEqual(Array.from({ length: 10 }, (_, i) => `line${i}\n`));
    expect(fs.readdirSync(path.join(a.dir, 'state/streams'))).toEqual([]);
  });

  it('after a kill -9 that cut the write of a chunk short (a pending file of an older version), keeps the whole frames saved, drops the frame cut off and resyncs: nothing garbled', async () => {
    const { a, fifo, all, cut, frames, pendingFile } = await firstRun();
    // The killed process had read frames 4..7 as one chunk (the half-read frame 4 was already in the
    // file) and was stopped after writing part of it: frames 4 and 5 whole, frame 6 in part.
    const start = cut - 5;
    const chunkEnd = start + frames.slice(4, 8).reduce((n, f) => n + f.length, 0);
    const savedTo = start + frames[4]!.length + frames[5]!.length + 7;
    fs.writeFileSync(pendingFile, Buffer.concat([Buffer.of(2), all.subarray(start, savedTo)]));
    fifo.write(all.subarray(chunkEnd)); // the pipe holds only what follows the chunk
    expect(await secondRun(a.dir, fifo, 8)).toEqual(Array.from({ length: 10 }, (_, i) => `line${i}\n`).filter((l) => l !== 'line6\n' && l !== 'line7\n'));
  });

  it('without a pending file (an older version crashed, or it could not be written), skips to the next frame start and loses only that entry', async () => {
    const { a, fifo, all, cut, pendingFile } = await firstRun();
    fs.rmSync(pendingFile);
    fifo.write(all.subarray(cut));
    expect(await secondRun(a.dir, fifo, 9)).toEqual(Array.from({ length: 10 }, (_, i) => `line${i}\n`).filter((l) => l !== 'line4\n'));
  });

  it('continues from the raw .carry file an older version left on a clean stop', async () => {
    const { a, fifo, all, cut, pendingFile } = await firstRun();
    fs.writeFileSync(pendingFile.replace(/\.pending$/, '.carry'), (await pendingOf(a.dir, fifo.file))?.bytes ?? Buffer.alloc(0));
    fs.rmSync(pendingFile);
    fifo.write(all.subarray(cut));
    expect(await secondRun(a.dir, fifo, 10)).toEqual(Array.from({ length: 10 }, (_, i) => `line${i}\n`));
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
