import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { CompressionThread } from '../src/store/compression-thread.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shiplog-compression-thread-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A gzip header without Extra (magic, deflate, no flags, no mtime, fastest, unknown OS). */
const PLAIN_HEADER = Uint8Array.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);

/** Log-like text (compresses well, like a real segment) of about `bytes`. */
function logText(bytes: number, seed: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const line = `2026-12-07T18:00:${String(i % 60).padStart(2, '0')}Z req ${seed}-${i} GET /api/${(i * 7919) % 1000} 200 ${crypto.randomInt(1e6)}\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join(''));
}

function sourceFile(name: string, content: Buffer): number {
  const file = path.join(dir, name);
  fs.writeFileSync(file, content);
  return fs.openSync(file, 'r');
}

/** This process's thread ids. */
function threadIds(): Set<number> {
  return new Set(fs.readdirSync('/proc/self/task').map(Number));
}

describe('CompressionThread', () => {
  it('writes one gzip member that gunzips to the source, across many 1 MiB pieces, with the size in the trailer', async () => {
    const thread = new CompressionThread();
    const content = logText(5 * 1024 * 1024 + 333, 1);
    const fd = sourceFile('pieces', content);
    const target = path.join(dir, 'pieces.gz');
    const bytes = await thread.run({ sourceFd: fd, targetPath: target, header: PLAIN_HEADER, level: 1 });
    fs.closeSync(fd);
    const gz = fs.readFileSync(target);
    expect(bytes).toBe(gz.length);
    expect(gz.length).toBeLessThan(content.length / 3);
    expect(zlib.gunzipSync(gz).equals(content)).toBe(true);
    // One member whose trailer ends the file: CRC-32 and size of the whole source.
    expect(gz.readUInt32LE(gz.length - 8)).toBe(zlib.crc32(content));
    expect(gz.readUInt32LE(gz.length - 4)).toBe(content.length);
    expect(gz.subarray(0, 10).equals(Buffer.from(PLAIN_HEADER))).toBe(true);
  });

  it('runs on one thread of its own, which stop() ends', async () => {
    const thread = new CompressionThread(60_000);
    const before = threadIds();
    const fd = sourceFile('own-thread', logText(64 * 1024, 2));
    await thread.run({ sourceFd: fd, targetPath: path.join(dir, 'own-thread.gz'), header: PLAIN_HEADER, level: 1 });
    fs.closeSync(fd);
    expect(thread.running).toBe(true);
    const started = [...threadIds()].filter((tid) => !before.has(tid));
    expect(started.length).toBeGreaterThanOrEqual(1);
    await thread.stop();
    expect(thread.running).toBe(false);
    // Its thread is gone (other threads may have started meanwhile; none of them is checked).
    const after = threadIds();
    expect(started.some((tid) => !after.has(tid))).toBe(true);
  });

  it('runs jobs given at once one after another, each right, and keeps serving after a job that fails', async () => {
    const thread = new CompressionThread();
    const contents = [logText(300_000, 3), Buffer.alloc(0), logText(2_500_000, 4)];
    const fds = contents.map((c, i) => sourceFile(`many-${i}`, c));
    const failed = thread.run({ sourceFd: fds[0] as number, targetPath: path.join(dir, 'no-such-dir', 'x.gz'), header: PLAIN_HEADER, level: 1 });
    const runs = contents.map((_, i) => thread.run({ sourceFd: fds[i] as number, targetPath: path.join(dir, `many-${i}.gz`), header: PLAIN_HEADER, level: 1 }));
    await expect(failed).rejects.toThrow(/ENOENT/);
    const sizes = await Promise.all(runs);
    for (const fd of fds) fs.closeSync(fd);
    contents.forEach((content, i) => {
      const gz = fs.readFileSync(path.join(dir, `many-${i}.gz`));
      expect(sizes[i]).toBe(gz.length);
      expect(zlib.gunzipSync(gz).equals(content)).toBe(true);
    });
  });

  it('stops once idle, and starts again for the next job', async () => {
    const thread = new CompressionThread(20);
    const content = logText(10_000, 5);
    const fd = sourceFile('idle', content);
    await thread.run({ sourceFd: fd, targetPath: path.join(dir, 'idle-1.gz'), header: PLAIN_HEADER, level: 1 });
    expect(thread.running).toBe(true);
    await thread.stopped();
    expect(thread.running).toBe(false);
    await thread.run({ sourceFd: fd, targetPath: path.join(dir, 'idle-2.gz'), header: PLAIN_HEADER, level: 1 });
    fs.closeSync(fd);
    expect(zlib.gunzipSync(fs.readFileSync(path.join(dir, 'idle-2.gz'))).equals(content)).toBe(true);
    await thread.stopped();
    expect(thread.running).toBe(false);
  });
});
