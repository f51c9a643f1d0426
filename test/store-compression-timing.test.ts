/**
 * When the store gzips rotated segments: once the container's log has been quiet for `quietMs`, at the
 * latest `latestMs` after the rotation, at once on close, and before the budget deletes anything.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ContainerLog, type CompressionDelays } from '../src/store/container-log.js';
import { encodeEntry, frame } from '../src/entry.js';
import { LogStore, type ContainerLogWriter } from '../src/store/store.js';
import { bigIntToParts } from '../src/time.js';

const ID = 'd'.repeat(64);
const ID_STOPPED = 'e'.repeat(64);
const T0 = 1_795_452_233_000_000_000n;
const roots: string[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
  for (const r of roots.splice(0)) fs.rmSync(r, { recursive: true, force: true });
});

function tempRoot(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'shiplog-compress-'));
  roots.push(root);
  return root;
}

/** One store record `[N][body][N]` of `size` body bytes (any bytes: ContainerLog does not parse them). */
function record(size: number, fill: 'text' | 'random'): Buffer {
  const out = Buffer.alloc(size + 8);
  out.writeUInt32BE(size, 0);
  if (fill === 'random') crypto.randomFillSync(out, 4, size);
  else out.fill('shiplog ', 4, 4 + size);
  out.writeUInt32BE(size, 4 + size);
  return out;
}

interface Watched {
  log: ContainerLog;
  /** performance.now() of each finished compression. */
  finished: number[];
  /** Resolves once `count` compressions have finished. */
  untilCompressed(count: number): Promise<void>;
}

function openLog(root: string, delays: CompressionDelays): Watched {
  const finished: number[] = [];
  let waiters: { count: number; resolve: () => void }[] = [];
  const log = ContainerLog.load(root, ID, pino({ level: 'silent' }), {
    onRotated: () => undefined,
    onAppendFailed: () => undefined,
    onCompressed: () => {
      finished.push(performance.now());
      waiters = waiters.filter((w) => (finished.length >= w.count ? (w.resolve(), false) : true));
    },
  }, delays);
  cleanups.push(async () => {
    log.close();
    await log.settled();
  });
  return {
    log,
    finished,
    untilCompressed: (count) => (finished.length >= count ? Promise.resolve() : new Promise((resolve) => waiters.push({ count, resolve }))),
  };
}

function files(root: string, id = ID): string[] {
  return fs.readdirSync(path.join(root, id)).sort();
}

describe('rotated segments are compressed when the log is quiet', () => {
  it('waits until the container has not appended for quietMs, then compresses every waiting segment', async () => {
    const root = tempRoot();
    const { log, finished, untilCompressed } = openLog(root, { quietMs: 150, latestMs: 60_000 });
    log.acquireWriter({ maxSize: 1, maxFile: 10, compress: true });
    for (let i = 0; i < 4; i++) log.append(record(4096, 'text'), T0 + BigInt(i)); // three rotations
    const lastAppend = performance.now();
    expect(files(root)).toEqual(['container.log', 'container.log.1', 'container.log.2', 'container.log.3']);
    expect(log.segmentsToCompress).toBe(3);
    await untilCompressed(3);
    for (const at of finished) expect(at - lastAppend).toBeGreaterThanOrEqual(145);
    expect(files(root)).toEqual(['container.log', 'container.log.1.gz', 'container.log.2.gz', 'container.log.3.gz']);
    expect(log.segmentsToCompress).toBe(0);
  });

  it('a log that never goes quiet still has its rotated segments compressed latestMs after their rotation', async () => {
    const root = tempRoot();
    // quietMs far past the test's timeout: only the deadline can start this compression.
    const { log, finished, untilCompressed } = openLog(root, { quietMs: 600_000, latestMs: 120 });
    log.acquireWriter({ maxSize: 1, maxFile: 10, compress: true });
    log.append(record(4096, 'text'), T0);
    log.append(record(4096, 'text'), T0 + 1n); // rotation
    const rotatedAt = performance.now();
    expect(files(root)).toEqual(['container.log', 'container.log.1']);
    await untilCompressed(1);
    expect((finished[0] as number) - rotatedAt).toBeGreaterThanOrEqual(115);
    expect(files(root)).toEqual(['container.log', 'container.log.1.gz']);
  });

  it('a segment rotated out (max-file) while it waits is not compressed, and nothing is left of it', async () => {
    const root = tempRoot();
    const { log, untilCompressed } = openLog(root, { quietMs: 100, latestMs: 60_000 });
    log.acquireWriter({ maxSize: 1, maxFile: 2, compress: true });
    for (let i = 0; i < 3; i++) log.append(record(1024, 'text'), T0 + BigInt(i)); // .1 is dropped by the second rotation
    expect(files(root)).toEqual(['container.log', 'container.log.1']);
    expect(log.segmentsToCompress).toBe(1);
    await untilCompressed(1);
    expect(files(root)).toEqual(['container.log', 'container.log.1.gz']);
  });

  it('settled() (the store closing) compresses waiting segments at once', async () => {
    const root = tempRoot();
    const { log } = openLog(root, { quietMs: 600_000, latestMs: 600_000 });
    log.acquireWriter({ maxSize: 1, maxFile: 10, compress: true });
    for (let i = 0; i < 3; i++) log.append(record(1024, 'text'), T0 + BigInt(i));
    expect(log.segmentsToCompress).toBe(2);
    log.close();
    await log.settled();
    expect(files(root)).toEqual(['container.log', 'container.log.1.gz', 'container.log.2.gz']);
  });
});

describe('the store budget and waiting compressions', () => {
  const LONG: CompressionDelays = { quietMs: 600_000, latestMs: 600_000 };

  /** A stopped container with two plain segments, and a store whose budget is `budget(segmentBytes)`. */
  async function storeWithHistory(budget: (stoppedBytes: number) => number): Promise<{ store: LogStore; root: string; logs: string[]; live: ContainerLogWriter; budgetBytes: number }> {
    const root = tempRoot();
    const first = new LogStore({ root, budgetBytes: 1024 ** 3, logger: pino({ level: 'silent' }) });
    await first.init();
    const stopped = first.openWriter(ID_STOPPED, { maxSize: 1, maxFile: 10, compress: false });
    addLines(stopped, 0, 2);
    stopped.release();
    await first.close();
    const stoppedBytes = files(root, ID_STOPPED).reduce((s, f) => s + fs.statSync(path.join(root, ID_STOPPED, f)).size, 0);
    const logs: string[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void logs.push(s) });
    const budgetBytes = budget(stoppedBytes);
    const store = new LogStore({ root, budgetBytes, logger, compressionDelays: LONG });
    await store.init();
    cleanups.push(() => store.close());
    const live = store.openWriter(ID, { maxSize: 1, maxFile: 10, compress: true });
    return { store, root, logs, live, budgetBytes };
  }

  /** `count` flushes of 200 entries of 300 bytes each: compressible text, or random bytes. */
  function addLines(w: ContainerLogWriter, first: number, count: number, fill: 'text' | 'random' = 'text'): void {
    for (let f = first; f < first + count; f++) {
      for (let i = 0; i < 200; i++) {
        const line = fill === 'random' ? crypto.randomBytes(150).toString('hex') : `flush ${f} line ${i} `.padEnd(300, 'x');
        const bytes = frame(encodeEntry('stdout', bigIntToParts(T0 + BigInt(f * 1000 + i)), Buffer.from(line)));
        w.add(bytes, 4, bytes.length, bigIntToParts(T0 + BigInt(f * 1000 + i)));
      }
      w.flush();
    }
  }

  it('over budget, compresses the waiting segments instead of deleting a stopped container\'s history', async () => {
    // Room for the stopped container's two segments and ~1.5 plain ones more: the live container's
    // three rotated plain segments do not fit, gzipped they do.
    const { store, root, logs, live, budgetBytes } = await storeWithHistory((stopped) => Math.round(stopped * 1.75));
    addLines(live, 10, 4, 'text'); // three rotations
    await store.compressionsDone();
    expect(files(root, ID_STOPPED)).toEqual(['container.log', 'container.log.1']);
    expect(files(root, ID)).toEqual(['container.log', 'container.log.1.gz', 'container.log.2.gz', 'container.log.3.gz']);
    expect(logs.filter((l) => l.includes('deleted'))).toEqual([]);
    expect(store.totalBytes).toBeLessThanOrEqual(budgetBytes);
  });

  it('when the compressed segments still do not fit, deletes the oldest once the compressions are done', async () => {
    const { store, root, logs, live, budgetBytes } = await storeWithHistory((stopped) => Math.round(stopped * 1.75));
    addLines(live, 10, 4, 'random'); // gzip cannot shrink these
    await store.compressionsDone();
    expect(fs.existsSync(path.join(root, ID_STOPPED))).toBe(false);
    expect(logs.filter((l) => l.includes('deleted')).length).toBeGreaterThan(0);
    expect(store.totalBytes).toBeLessThanOrEqual(budgetBytes);
  });
});
