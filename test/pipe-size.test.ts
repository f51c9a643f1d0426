/**
 * The FIFO's kernel buffer: pipe-size.ts asks for it, openFifo requests it for every stream, and
 * the driver applies PIPE_SIZE, counting and reporting refusals while the stream goes on.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openFifo } from '../src/fifo.js';
import { pipeSize, setPipeSize } from '../src/pipe-size.js';
import { driverFixture, entryFrame, info } from './support/driver-fixture.js';

const KERNEL_DEFAULT = 65536;
const MIB = 1 << 20;

let dir: string;
const fds: number[] = [];
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shiplog-pipe-')); });
afterEach(() => {
  for (const fd of fds.splice(0)) fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A FIFO held open read-write (as dockerd holds its FIFOs): returns that fd. */
function fifo(name = 'f'): { file: string; fd: number } {
  const file = path.join(dir, name);
  execFileSync('mkfifo', [file]);
  const fd = fs.openSync(file, fs.constants.O_RDWR);
  fds.push(fd);
  return { file, fd };
}

/**
 * Frames of `line`s written non-blocking in writes of at most PIPE_BUF (each all or nothing) until
 * the pipe is full: the bytes that fit. The writing fd is closed after (a writer left open would
 * keep the reader from its EOF).
 */
function fillWithFrames(file: string): { bytes: number; lines: number } {
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  try {
    return fillPipe(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function fillPipe(fd: number): { bytes: number; lines: number } {
  let bytes = 0;
  let lines = 0;
  for (;;) {
    const frames: Buffer[] = [];
    let size = 0;
    for (;;) {
      const f = entryFrame(`line ${lines + frames.length}`, lines + frames.length);
      if (size + f.length > 4096) break;
      frames.push(f);
      size += f.length;
    }
    try {
      fs.writeSync(fd, Buffer.concat(frames));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return { bytes, lines };
      throw err;
    }
    bytes += size;
    lines += frames.length;
  }
}

describe('setPipeSize / pipeSize', () => {
  it('enlarges a FIFO to the size asked, rounded up to a power of two pages, for every fd on it', () => {
    const { file, fd } = fifo();
    expect(pipeSize(fd)).toEqual({ bytes: KERNEL_DEFAULT });
    expect(setPipeSize(fd, MIB)).toEqual({ bytes: MIB });
    const reader = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    fds.push(reader);
    expect(pipeSize(reader)).toEqual({ bytes: MIB });
    expect(setPipeSize(fd, 100_000)).toEqual({ bytes: 131072 });
  });

  it('says why the kernel refused, and refuses a size that is not one itself', () => {
    const { fd } = fifo();
    fs.writeSync(fd, Buffer.alloc(32768));
    expect(setPipeSize(fd, 4096)).toEqual({ error: expect.stringMatching(/^EBUSY: the pipe holds more bytes than that/) });
    expect(pipeSize(fd)).toEqual({ bytes: KERNEL_DEFAULT });
    const file = fs.openSync(path.join(dir, 'plain'), 'w');
    fds.push(file);
    expect(setPipeSize(file, MIB)).toEqual({ error: expect.stringMatching(/^EBADF: not a pipe/) });
    expect(setPipeSize(fd, 0)).toEqual({ error: 'not a pipe size: 0' });
    expect(setPipeSize(fd, 1.5)).toEqual({ error: 'not a pipe size: 1.5' });
  });
});

describe('openFifo', () => {
  it('asks for the buffer it is given and reports the result; 0 leaves the kernel default', async () => {
    const a = fifo('a');
    const opened = await openFifo(a.file, MIB, () => 0);
    expect(opened.pipe).toEqual({ bytes: MIB });
    expect(pipeSize(a.fd)).toEqual({ bytes: MIB });
    opened.socket?.destroy();
    const b = fifo('b');
    const plain = await openFifo(b.file, 0, () => 0);
    expect(plain.pipe).toBeUndefined();
    expect(pipeSize(b.fd)).toEqual({ bytes: KERNEL_DEFAULT });
    plain.socket?.destroy();
  });
});

describe('PIPE_SIZE in the driver', () => {
  let fx: Awaited<ReturnType<typeof driverFixture>> | undefined;
  afterEach(async () => { await fx?.close(); fx = undefined; });

  async function linesRead(f: { file: string }): Promise<number> {
    await fx!.post('/LogDriver.StopLogging', { File: f.file });
    const ended = fx!.driver.whenEnded(f.file);
    return ended.then(async () => {
      const r = await fx!.post('/LogDriver.ReadLogs', { Info: info(), Config: { Tail: -1, Follow: false } });
      let n = 0;
      for (let p = 0; p < r.rawPayload.length; p += 4 + r.rawPayload.readUInt32BE(p)) n++;
      return n;
    });
  }

  it('lets dockerd write a mebibyte ahead of shiplog by default (64 KiB with PIPE_SIZE=0), and every line is read', async () => {
    for (const [env, capacity] of [[{}, MIB], [{ PIPE_SIZE: '0' }, KERNEL_DEFAULT]] as const) {
      fx = await driverFixture(env);
      const f = fx.makeFifo();
      expect((await fx.post('/LogDriver.StartLogging', { File: f.file, Info: info() })).json()).toEqual({ Err: '' });
      // Written without yielding, so shiplog (this process) reads nothing meanwhile: what fits is the pipe.
      const written = fillWithFrames(f.file);
      expect(written.bytes).toBeGreaterThan(capacity - 4096);
      expect(written.bytes).toBeLessThanOrEqual(capacity);
      const read = linesRead(f);
      f.close();
      expect(await read).toBe(written.lines);
      expect(fx.driver.pipeResizeRefusals).toBe(0);
      await fx.close();
      fx = undefined;
    }
  });

  it('goes on with the kernel default when the resize is refused, and counts the refusal', async () => {
    // 1 GiB: above fs.pipe-max-size (EPERM without CAP_SYS_RESOURCE), and with it more slots than
    // the kernel allocates for one pipe (ENOMEM).
    fx = await driverFixture({ PIPE_SIZE: '1g' });
    const f = fx.makeFifo();
    expect((await fx.post('/LogDriver.StartLogging', { File: f.file, Info: info() })).json()).toEqual({ Err: '' });
    expect(fx.driver.pipeResizeRefusals).toBe(1);
    const written = fillWithFrames(f.file);
    expect(written.bytes).toBeLessThanOrEqual(KERNEL_DEFAULT);
    const read = linesRead(f);
    f.close();
    expect(await read).toBe(written.lines);
  });
});
