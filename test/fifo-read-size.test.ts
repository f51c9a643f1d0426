/**
 * How much each FIFO read asks for (fifo.ts ReadSizer): bigger while reads come back full and hold
 * few entries (long lines), 64 KiB while they hold many (short lines) or come back mostly empty.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openFifo, ReadSizer } from '../src/fifo.js';
import { setPipeSize } from '../src/pipe-size.js';

const KIB = 1024;
const MIB = 1024 * KIB;

describe('ReadSizer', () => {
  /** Feeds reads that fill their buffer, each holding `entries` entries; returns the sizes asked for. */
  function fullReads(sizer: ReadSizer, count: number, entries: number): number[] {
    const sizes: number[] = [];
    for (let i = 0; i < count; i++) {
      const b = sizer.next();
      sizes.push(b.length);
      sizer.read(b.length, b.length, entries);
    }
    return sizes;
  }

  it('starts at 64 KiB and doubles after full reads of few entries, up to its maximum', () => {
    expect(fullReads(new ReadSizer(MIB), 6, 60)).toEqual([64 * KIB, 128 * KIB, 256 * KIB, 512 * KIB, MIB, MIB]);
  });

  it('stays at 64 KiB for full reads of many entries (short lines)', () => {
    expect(fullReads(new ReadSizer(MIB), 4, 2000)).toEqual([64 * KIB, 64 * KIB, 64 * KIB, 64 * KIB]);
  });

  it('keeps its size for full reads of 1,024 to 4,096 entries, and halves past that, down to 64 KiB', () => {
    const sizer = new ReadSizer(MIB);
    fullReads(sizer, 2, 10);
    expect(fullReads(sizer, 2, 1024)).toEqual([256 * KIB, 256 * KIB]);
    expect(fullReads(sizer, 2, 4096)).toEqual([256 * KIB, 256 * KIB]);
    expect(fullReads(sizer, 4, 5000)).toEqual([256 * KIB, 128 * KIB, 64 * KIB, 64 * KIB]);
  });

  it('halves after a read that used less than a quarter of its buffer, never below 64 KiB', () => {
    const sizer = new ReadSizer(MIB);
    fullReads(sizer, 4, 1); // 1 MiB
    sizer.read(MIB / 4, MIB, 1); // a quarter: kept
    expect(sizer.bytes).toBe(MIB);
    sizer.read(MIB / 4 - 1, MIB, 1);
    expect(sizer.bytes).toBe(512 * KIB);
    for (let i = 0; i < 10; i++) sizer.read(100, sizer.bytes, 1);
    expect(sizer.bytes).toBe(64 * KIB);
  });

  it('never grows past its maximum (a pipe the kernel kept at 64 KiB)', () => {
    expect(fullReads(new ReadSizer(64 * KIB), 3, 1)).toEqual([64 * KIB, 64 * KIB, 64 * KIB]);
  });

  it('hands on a full buffer as it is; copies a partial read out and gives its buffer to the next read', () => {
    const sizer = new ReadSizer(MIB);
    const full = sizer.next();
    full.fill(1);
    const whole = sizer.take(full, full.length);
    expect(whole.buffer).toBe(full.buffer);
    sizer.read(full.length, full.length, 2000);
    const second = sizer.next();
    expect(second.buffer).not.toBe(full.buffer);
    second.fill(2, 0, 100);
    const part = sizer.take(second, 100);
    expect(part.buffer).not.toBe(second.buffer);
    expect([...part]).toEqual(new Array(100).fill(2));
    sizer.read(100, second.length, 1); // already the least size: kept, and so is the buffer
    expect(sizer.next().buffer).toBe(second.buffer);
    fullReads(sizer, 1, 1); // 128 KiB
    const third = sizer.next();
    third.fill(3, 0, 100);
    sizer.take(third, 100);
    sizer.read(100, third.length, 1); // halves: a new size, a new buffer
    expect(sizer.next().buffer).not.toBe(third.buffer);
  });
});

describe('openFifo read sizes', () => {
  let dir: string;
  const fds: number[] = [];
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shiplog-readsize-')); });
  afterEach(() => {
    for (const fd of fds.splice(0)) fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A FIFO with a mebibyte buffer, filled: dockerd ahead of a busy shiplog. Returns its path. */
  function fullFifo(): string {
    const file = path.join(dir, 'f');
    execFileSync('mkfifo', [file]);
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    fds.push(fd);
    expect(setPipeSize(fd, MIB)).toEqual({ bytes: MIB });
    const bytes = Buffer.alloc(MIB, 0x61);
    let at = 0;
    while (at < bytes.length) at += fs.writeSync(fd, bytes, at, Math.min(64 * KIB, bytes.length - at));
    return file;
  }

  /** The sizes of the reads after the first (openFifo's probe), until the mebibyte is read. */
  async function readSizes(entriesPerRead: number): Promise<number[]> {
    const sizes: number[] = [];
    let total = 0;
    let done!: () => void;
    const all = new Promise<void>((resolve) => { done = resolve; });
    const opened = await openFifo(fullFifo(), MIB, (chunk) => {
      sizes.push(chunk.length);
      total += chunk.length;
      if (total === MIB - 64 * KIB) done();
      return entriesPerRead;
    });
    expect(opened.initial?.length).toBe(64 * KIB);
    await all;
    opened.socket?.destroy();
    return sizes;
  }

  it('reads a full pipe of long-line entries in growing reads: 64, 128, 256 and 512 KiB', async () => {
    expect(await readSizes(4)).toEqual([64 * KIB, 128 * KIB, 256 * KIB, 512 * KIB]);
  });

  it('reads a full pipe of short-line entries 64 KiB at a time', async () => {
    const sizes = await readSizes(2000);
    expect(sizes).toHaveLength(15);
    expect(new Set(sizes)).toEqual(new Set([64 * KIB]));
  });
});
