import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { PendingBytes, StreamJournal } from '../src/journal.js';

const silent = pino({ level: 'silent' });
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'pending-'));

async function journalIn(dir: string): Promise<{ journal: StreamJournal; fifo: string; file: string }> {
  const journal = new StreamJournal(dir);
  await journal.init();
  return { journal, fifo: '/run/docker/logging/abc', file: path.join(dir, 'abc.pending') };
}

/** What the next reader would continue with, as text. */
async function carried(journal: StreamJournal, fifo: string): Promise<string | undefined> {
  return (await journal.takeCarry(fifo))?.bytes.toString('latin1');
}

describe('PendingBytes', () => {
  it('holds exactly the bytes read and not yet processed: appended chunks, then the carry', async () => {
    const { journal, fifo, file } = await journalIn(tmp());
    const p = journal.openPending(fifo, silent, Buffer.alloc(0));
    expect(await journal.takeCarry(fifo)).toEqual({ bytes: Buffer.alloc(0), cutShort: false });
    p.append(Buffer.from('abc'));
    p.append(Buffer.from('defg'));
    expect(await carried(journal, fifo)).toBe('abcdefg');
    p.processed(Buffer.from('fg'));
    expect(await carried(journal, fifo)).toBe('fg');
    p.append(Buffer.from('hi'));
    expect(await carried(journal, fifo)).toBe('fghi');
    p.processed(Buffer.alloc(0));
    expect(await carried(journal, fifo)).toBe('');
    p.append(Buffer.from('jk'));
    p.processed(undefined); // resyncing: nothing exact to continue with
    expect(await journal.takeCarry(fifo)).toBeUndefined();
    expect(fs.existsSync(file)).toBe(true);
    p.close();
  });

  it('takes a carry longer than the bytes it holds (a frame start found across a resync) as given', async () => {
    const { journal, fifo } = await journalIn(tmp());
    const p = journal.openPending(fifo, silent, undefined);
    p.append(Buffer.from('..ab'));
    p.processed(undefined);
    p.append(Buffer.from('cd'));
    p.processed(Buffer.from('abcd'));
    expect(await carried(journal, fifo)).toBe('abcd');
    p.append(Buffer.from('ef'));
    p.processed(Buffer.from('def'));
    expect(await carried(journal, fifo)).toBe('def');
    p.close();
  });

  it('stays about 256 KiB on disk however much goes through it, never truncated (moves the carry back to the start)', async () => {
    const { journal, fifo, file } = await journalIn(tmp());
    const p = journal.openPending(fifo, silent, Buffer.alloc(0));
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let largest = 0;
    for (let i = 0; i < 100; i++) {
      chunk.writeUInt32BE(i, chunk.length - 4);
      p.append(chunk);
      const carry = Buffer.from(chunk.subarray(chunk.length - 10 - (i % 7)));
      p.processed(carry);
      expect((await journal.takeCarry(fifo))?.bytes).toEqual(carry);
      largest = Math.max(largest, fs.statSync(file).size);
    }
    expect(largest).toBeLessThanOrEqual(9 + 256 * 1024 + 64 * 1024);
    p.close();
  });

  it('a kill after any single write, or part-way through one, leaves the state before or after the change', async () => {
    const { journal, fifo, file } = await journalIn(tmp());
    const p = journal.openPending(fifo, silent, Buffer.from('start'));
    let logical = 'start';
    const outcomes = new Set<string>();
    /**
     * Every file content a kill could leave: after each write, and with only half of a data write's
     * bytes (a fatal signal can stop a write between pages; the 9-byte header, in one page, is
     * written whole or not at all).
     */
    const snapshots: Buffer[] = [];
    const write = fs.writeSync;
    const spy = (fd: number, buf: NodeJS.ArrayBufferView, offset: number, length: number, position: number): number => {
      if (length > 9) {
        const before = fs.readFileSync(file);
        const half = Buffer.alloc(Math.max(before.length, position + Math.floor(length / 2)));
        before.copy(half);
        Buffer.from(buf.buffer, buf.byteOffset + offset, Math.floor(length / 2)).copy(half, position);
        snapshots.push(half);
      }
      const written = write(fd, buf, offset, length, position);
      snapshots.push(fs.readFileSync(file));
      return written;
    };
    const check = async (change: () => void, after: string): Promise<void> => {
      snapshots.length = 0;
      (fs as { writeSync: unknown }).writeSync = spy;
      try {
        change();
      } finally {
        (fs as { writeSync: unknown }).writeSync = write;
      }
      for (const snapshot of snapshots) {
        fs.writeFileSync(file.replace(/\.pending$/, ".kill.pending"), snapshot);
        const left = await journal.takeCarry(`${fifo}.kill`);
        const text = left === undefined ? 'resync' : left.bytes.toString('latin1');
        outcomes.add(text === logical ? 'before' : text === after ? 'after' : `other: ${text.slice(0, 40)}`);
      }
      logical = after;
    };
    const big = `${'x'.repeat(200 * 1024)}tail`; // the carry is always the last bytes appended
    await check(() => p.append(Buffer.from('chunk1')), 'startchunk1');
    await check(() => p.processed(Buffer.from('nk1')), 'nk1');
    await check(() => p.append(Buffer.from(big)), `nk1${big}`);
    await check(() => p.append(Buffer.from(big)), `nk1${big}${big}`);
    await check(() => p.processed(Buffer.from('tail')), 'tail'); // past 256 KiB: the carry moves to the start
    await check(() => p.append(Buffer.from('more')), 'tailmore');
    await check(() => p.processed(Buffer.alloc(0)), '');
    await check(() => p.append(Buffer.from(big)), big);
    await check(() => p.append(Buffer.from(big)), `${big}${big}`);
    await check(() => p.processed(Buffer.from('tail')), 'tail'); // moved over bytes the header covered until then
    expect([...outcomes].sort()).toEqual(['after', 'before']);
    p.close();
  });

  it('reads the files of versions before the header: exact bytes, an append cut short, a resync', async () => {
    const { journal, fifo, file } = await journalIn(tmp());
    fs.writeFileSync(file, Buffer.from('\x01abc', 'latin1'));
    expect(await journal.takeCarry(fifo)).toEqual({ bytes: Buffer.from('abc'), cutShort: false });
    fs.writeFileSync(file, Buffer.from('\x02ab', 'latin1'));
    expect(await journal.takeCarry(fifo)).toEqual({ bytes: Buffer.from('ab'), cutShort: true });
    fs.writeFileSync(file, Buffer.from('\x00abc', 'latin1'));
    expect(await journal.takeCarry(fifo)).toBeUndefined();
  });

  it('a header that points past the end of the file means resync, not bytes made up', async () => {
    const { journal, fifo, file } = await journalIn(tmp());
    const p = journal.openPending(fifo, silent, Buffer.from('abcdef'));
    p.close();
    fs.truncateSync(file, 12);
    expect(await journal.takeCarry(fifo)).toBeUndefined();
  });

  it('the journal gives back exact bytes, and nothing (resync) for a resyncing reader or no file', async () => {
    const dir = tmp();
    const journal = new StreamJournal(dir);
    await journal.init();
    const p = journal.openPending('/run/docker/logging/abc', silent, Buffer.from('carry'));
    expect(await journal.takeCarry('/run/docker/logging/abc')).toEqual({ bytes: Buffer.from('carry'), cutShort: false });
    p.processed(undefined);
    expect(await journal.takeCarry('/run/docker/logging/abc')).toBeUndefined();
    p.close();
    expect(await journal.takeCarry('/run/docker/logging/none')).toBeUndefined();
    const resyncing = journal.openPending('/run/docker/logging/def', silent, undefined);
    expect(await journal.takeCarry('/run/docker/logging/def')).toBeUndefined();
    resyncing.close();
  });

  it('a file that cannot be written is removed (a stale one would be replayed wrongly) and the error logged', () => {
    const file = path.join(tmp(), 'y.pending');
    const lines: string[] = [];
    const logger = pino({ level: 'error' }, { write: (l: string) => lines.push(l) });
    const p = new PendingBytes(file, logger, Buffer.from('start'));
    // Make the next write fail (EBADF), as a disk error would.
    fs.closeSync((p as unknown as { fd: number }).fd);
    p.append(Buffer.from('more'));
    expect(lines.join('')).toMatch(/cannot keep the bytes read from the FIFO on disk/);
    expect(fs.existsSync(file)).toBe(false);
    p.processed(Buffer.alloc(0)); // a no-op from now on: the next reader resyncs
    expect(fs.existsSync(file)).toBe(false);
  });
});
