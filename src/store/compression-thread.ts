/**
 * One background thread that gzips rotated store segments. On zlib's shared thread pool, as before,
 * a segment's compression went through a stream pipeline (1 MiB reads, 64 KiB deflate pieces, a
 * thread-pool trip each) whose buffers stayed in the process: one container writing 200 B lines
 * peaked at ~130 MiB instead of ~98 (BENCHMARKS.md), and each 20 MB segment held a pool thread that
 * the Elasticsearch sink's gzip and the spools' fsyncs wait for.
 *
 * The thread starts with the first rotated segment and stops when it has been idle for a while, so an
 * idle shiplog does not hold its memory (~9 MiB: an isolate). Jobs run one at a time, in order. It
 * runs at the process's priority: at nice 19 the containers ran no faster, and with 200 B lines 4–8 %
 * slower in three alternated series (BENCHMARKS.md), so background priority is not worth its risk.
 *
 * How a segment is compressed (one pass, synchronous, in the thread): each 1 MiB read is deflated on
 * its own with a sync flush (byte-aligned, not final), the pieces are written back to back, and an
 * empty final block and the gzip trailer (CRC-32 and size of the whole segment) close the member: one
 * valid gzip member, as pigz builds them, with memory bounded by the read size whatever max-size is.
 * zlib's streaming API would have sent every piece through the shared thread pool again.
 */
import { Worker } from 'node:worker_threads';

export interface CompressionJob {
  /** Open for reading (the caller's, closed by the caller): read from offset 0 to its end. */
  readonly sourceFd: number;
  /** Created or truncated, mode 0640. */
  readonly targetPath: string;
  /** The member's header (gzip-segment.ts builds it: Docker's lastTime in Extra). */
  readonly header: Uint8Array;
  /** zlib level. */
  readonly level: number;
}

/** What the thread is told. */
interface JobMessage extends CompressionJob {
  readonly id: number;
}

/** What the thread answers. */
type DoneMessage = { readonly id: number; readonly bytes: number } | { readonly id: number; readonly error: string };

/** Read (and deflate) size: a piece's deflate state and output stay ~1 MiB. */
const READ_BYTES = 1024 * 1024;
/** An idle thread is stopped after this long. */
const IDLE_STOP_MS = 5000;

/**
 * The thread's code. It runs from its source text (Worker eval), so it is the same from dist/ and from
 * the TypeScript sources the tests load, and needs no file path inside a plugin's rootfs; it must not
 * refer to anything outside itself.
 */
function compressionThreadMain(): void {
  // Not `require`: whether eval code is CommonJS is the Node version's call; this works in either.
  const fs = process.getBuiltinModule('node:fs');
  const zlib = process.getBuiltinModule('node:zlib');
  const { parentPort, workerData } = process.getBuiltinModule('node:worker_threads');
  const settings = workerData as { readBytes: number };
  const input = Buffer.allocUnsafe(settings.readBytes);
  const writeAll = (fd: number, bytes: Uint8Array): void => {
    let at = 0;
    while (at < bytes.length) at += fs.writeSync(fd, bytes, at, bytes.length - at);
  };
  parentPort?.on('message', (job: JobMessage) => {
    let target: number | undefined;
    try {
      target = fs.openSync(job.targetPath, 'w', 0o640);
      writeAll(target, job.header);
      let crc = 0;
      let size = 0;
      let position = 0;
      for (;;) {
        const n = fs.readSync(job.sourceFd, input, 0, input.length, position);
        if (n === 0) break;
        const piece = input.subarray(0, n);
        crc = zlib.crc32(piece, crc);
        size += n;
        position += n;
        writeAll(target, zlib.deflateRawSync(piece, { level: job.level, finishFlush: zlib.constants.Z_SYNC_FLUSH }));
      }
      const trailer = Buffer.alloc(10);
      // An empty final block with fixed codes (BFINAL 1, BTYPE 01, end-of-block): the member ends here.
      trailer[0] = 0x03;
      trailer[1] = 0x00;
      trailer.writeUInt32LE(crc >>> 0, 2);
      trailer.writeUInt32LE(size % 0x1_0000_0000, 6);
      writeAll(target, trailer);
      const bytes = fs.fstatSync(target).size;
      parentPort.postMessage({ id: job.id, bytes });
    } catch (err) {
      parentPort.postMessage({ id: job.id, error: err instanceof Error ? err.message : String(err) });
    } finally {
      if (target !== undefined) fs.closeSync(target);
    }
  });
}

interface Waiting {
  resolve(bytes: number): void;
  reject(err: Error): void;
}

/** A compression thread, started on demand (the process has one for every container's store). */
export class CompressionThread {
  private worker: Worker | undefined;
  private exit: Promise<void> = Promise.resolve();
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(private readonly idleStopMs = IDLE_STOP_MS) {}

  /** Compresses; resolves with the target's size. */
  run(job: CompressionJob): Promise<number> {
    const worker = this.started();
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const id = this.nextId++;
    return new Promise<number>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage({ id, ...job } satisfies JobMessage);
    });
  }

  /** Whether the thread is running (tests). */
  get running(): boolean {
    return this.worker !== undefined;
  }

  /** Stops the thread now (jobs still waiting are rejected). */
  async stop(): Promise<void> {
    const exited = this.exit;
    await this.worker?.terminate();
    await exited;
  }

  /** Resolves when the thread running now has exited (at once when none runs). */
  stopped(): Promise<void> {
    return this.exit;
  }

  private started(): Worker {
    if (this.worker !== undefined) return this.worker;
    const worker = new Worker(`(${compressionThreadMain.toString()})()`, {
      eval: true,
      workerData: { readBytes: READ_BYTES },
      // Its heap holds a job message at a time: a small young generation keeps its pages few.
      resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 32 },
      stdout: false,
      stderr: false,
    });
    worker.on('message', (m: DoneMessage) => this.settle(m));
    worker.on('error', (err) => this.failAll(err));
    this.exit = new Promise((resolve) => {
      worker.on('exit', (code) => {
        if (this.worker === worker) this.worker = undefined;
        this.failAll(new Error(`the compression thread exited (code ${code})`));
        resolve();
      });
    });
    this.worker = worker;
    return worker;
  }

  private settle(m: DoneMessage): void {
    const waiting = this.waiting.get(m.id);
    if (waiting === undefined) return;
    this.waiting.delete(m.id);
    if ('error' in m) waiting.reject(new Error(m.error));
    else waiting.resolve(m.bytes);
    if (this.waiting.size === 0) this.idle();
  }

  /** Nothing to do: the thread does not keep the process alive, and stops if nothing comes. */
  private idle(): void {
    const worker = this.worker;
    if (worker === undefined) return;
    worker.unref();
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.worker === worker && this.waiting.size === 0) {
        this.worker = undefined;
        void worker.terminate();
      }
    }, this.idleStopMs);
    this.idleTimer.unref();
  }

  private failAll(err: Error): void {
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    for (const w of waiting) w.reject(err);
  }
}

const processThread = new CompressionThread();

/** Runs `job` on the process's compression thread (started on demand). */
export function compressOnThread(job: CompressionJob): Promise<number> {
  return processThread.run(job);
}
