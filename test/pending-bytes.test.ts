import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { PendingBytes, StreamJournal } from '../src/journal.js';

const silent = pino({ level: 'silent' });
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'pending-'));

describe('PendingBytes', () => {
  it('holds exactly the bytes read and not yet processed: appended chunks, then the carry', () => {
    const file = path.join(tmp(), 'x.pending');
    const p = new PendingBytes(file, silent, Buffer.alloc(0));
    expect(fs.readFileSync(file)).toEqual(Buffer.of(1));
    p.append(Buffer.from('abc'));
    p.append(Buffer.from('defg'));
    expect(fs.readFileSync(file)).toEqual(Buffer.from('\x01abcdefg', 'latin1'));
    p.processed(Buffer.from('fg'));
    expect(fs.readFileSync(file)).toEqual(Buffer.from('\x01fg', 'latin1'));
    p.append(Buffer.from('hi'));
    p.processed(Buffer.alloc(0));
    expect(fs.readFileSync(file)).toEqual(Buffer.of(1));
    p.processed(undefined); // resyncing: nothing exact to continue with
    expect(fs.readFileSync(file)).toEqual(Buffer.of(0));
    p.close();
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

  it('marks an append under way, so a write a kill cut short is known as such', async () => {
    const dir = tmp();
    const journal = new StreamJournal(dir);
    await journal.init();
    const fifo = '/run/docker/logging/ghi';
    const p = journal.openPending(fifo, silent, Buffer.alloc(0));
    const seen: number[] = [];
    const file = path.join(dir, 'ghi.pending');
    // The state byte as the chunk's own write finds it.
    const write = fs.writeSync;
    const spy = (fd: number, buf: NodeJS.ArrayBufferView, ...rest: unknown[]): number => {
      if ((buf as Buffer).length > 1) seen.push(fs.readFileSync(file)[0] as number);
      return (write as (...a: unknown[]) => number)(fd, buf, ...rest);
    };
    (fs as { writeSync: unknown }).writeSync = spy;
    try {
      p.append(Buffer.from('chunk-1'));
    } finally {
      (fs as { writeSync: unknown }).writeSync = write;
    }
    expect(seen).toEqual([2]);
    expect(fs.readFileSync(file)).toEqual(Buffer.from('\x01chunk-1', 'latin1')); // exact again once written
    p.close();
    // What a kill during that write leaves: the marker and part of the chunk.
    fs.writeFileSync(file, Buffer.from('\x02chu', 'latin1'));
    expect(await journal.takeCarry(fifo)).toEqual({ bytes: Buffer.from('chu'), cutShort: true });
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
