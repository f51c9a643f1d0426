/**
 * LogStream and the sinks' write-through spools: the stream's pending file may let go of a chunk only
 * once every record the chunk brought is delivered or in a spool (SinkRunner.secure).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';
import type { BatchLimits, EncodedBatch, EntryWriter, Sink } from '../sinks/sink.js';
import { DeadLetterFile } from '../src/dead-letters.js';
import type { PendingBytesLog } from '../src/journal.js';
import { LogStream } from '../src/log-stream.js';
import { SinkRunner } from '../src/sink-runner.js';
import type { ContainerLogWriter } from '../src/store/store.js';
import { entryFrame, fifoMaker } from './support/driver-fixture.js';
import { RecordCodec } from './support/record-codec.js';
import { container } from './support/records.js';

const logger = pino({ level: 'silent' });

/** A sink that acknowledges at once (`gate` undefined) or only when its gate opens. */
function sink(name: string, gate?: Promise<void>): Sink & { written: number } {
  const codec = new RecordCodec();
  return {
    name,
    written: 0,
    encode: (r, out: EntryWriter) => codec.encode(r, out),
    async write(batch: EncodedBatch) {
      if (gate !== undefined) await gate;
      this.written += batch.count;
    },
    async close() {},
  };
}

function runner(s: Sink, dir: string, limits: Partial<BatchLimits>): SinkRunner {
  return new SinkRunner(
    s, { maxRecords: 10_000, maxBytes: 1 << 20, maxLatencyMs: 60_000, concurrency: 1, maxRetries: 3, backoffMaxMs: 5, ...limits },
    new DeadLetterFile(path.join(dir, `${s.name}.dead`), logger), logger, 1 << 20,
    { dir: path.join(dir, s.name), maxBytes: 1 << 30, logger, writeThrough: true },
  );
}

const store: ContainerLogWriter = { add: () => undefined, flush: () => undefined, dropStoredPrefix: () => 0, release: () => undefined };

describe('LogStream', () => {
  it('lets go of a chunk in its pending file only after every sink secured its records: a waiting sink has them in its spool, one that acknowledged at once wrote nothing there', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'log-stream-'));
    fs.mkdirSync(path.join(dir, 'fifos'));
    const fifo = fifoMaker(path.join(dir, 'fifos'))();
    let open = (): void => undefined;
    const waitingSink = sink('waiting', new Promise<void>((resolve) => { open = resolve; }));
    const promptSink = sink('prompt');
    // Both write through at the end of the turn (promptBytes); the waiting one's batch is never sealed early.
    const waiting = runner(waitingSink, dir, { promptBytes: Number.MAX_SAFE_INTEGER, maxRecords: 20 });
    const prompt = runner(promptSink, dir, { promptBytes: 0 }); // sealed at the end of the read, written at once
    const promptAppends = vi.spyOn(prompt.spool as NonNullable<typeof prompt.spool>, 'append');
    const seen: { waitingSpooled: boolean; promptWritten: number }[] = [];
    let processed = (): void => undefined;
    const firstProcessed = new Promise<void>((resolve) => { processed = resolve; });
    const pending: PendingBytesLog = {
      append: () => undefined,
      processed: () => {
        seen.push({ waitingSpooled: !(waiting.spool as NonNullable<typeof waiting.spool>).isEmpty(), promptWritten: promptSink.written });
        processed();
      },
      close: () => undefined,
    };
    const stream = new LogStream({ file: fifo.file, container, store, runners: [waiting, prompt], reassembly: { maxBytes: 1 << 20, holdMs: 1000 }, logger, pending });
    await stream.open();
    fifo.write(Buffer.concat(Array.from({ length: 50 }, (_, i) => entryFrame(`line${i}`, i))));
    await firstProcessed;
    expect(seen[0]).toEqual({ waitingSpooled: true, promptWritten: 50 });
    expect(promptAppends).not.toHaveBeenCalled();
    open();
    fifo.close();
    await stream.ended;
    await waiting.idle();
    expect(waitingSink.written).toBe(50);
    await Promise.all([waiting.close(1000), prompt.close(1000)]);
  });
});
