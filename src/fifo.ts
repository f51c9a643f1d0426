/**
 * Opens a dockerd FIFO for reading without the libuv threadpool: O_RDONLY|O_NONBLOCK and a net.Socket
 * on the fd (fs.createReadStream parks a threadpool thread on every idle FIFO; four idle ones stall
 * every fs and dns call in the process). dockerd holds the write end, so the open never blocks and
 * EOF arrives only when dockerd closes its end (after StopLogging, or when dockerd dies).
 */
import fs from 'node:fs';
import net from 'node:net';
import { promisify } from 'node:util';
import { type PipeSizeResult, setPipeSize } from './pipe-size.js';

const open = promisify(fs.open);
const fstat = promisify(fs.fstat);
const close = promisify(fs.close);

export interface OpenedFifo {
  /** Reads the rest of the stream; owns the fd and closes it when destroyed. Undefined when `writerGone`. */
  readonly socket: net.Socket | undefined;
  /** Bytes already waiting in the pipe when it was opened (read before the socket took over). */
  readonly initial: Buffer | undefined;
  /**
   * Nobody holds the write end any more (dockerd died, or closed it before this reader came): the
   * stream is over. epoll reports no hang-up to a reader that opened after the last writer left, so
   * this is found out by one non-blocking read at open.
   */
  readonly writerGone: boolean;
  /** The pipe's buffer after the requested resize (undefined: none was asked for, or the stream is over). */
  readonly pipe: PipeSizeResult | undefined;
}

/**
 * `pipeBytes`: the kernel buffer to ask for (pipe-size.ts); 0 keeps what the pipe has. The resize
 * is a request, not a condition: a refusal is reported in `pipe` and the FIFO is read as it is.
 */
export async function openFifo(path: string, pipeBytes = 0): Promise<OpenedFifo> {
  const fd = await open(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const st = await fstat(fd);
    if (!st.isFIFO()) throw new Error(`${path} is not a FIFO`);
    const probe = Buffer.allocUnsafe(65536);
    let n: number;
    try {
      n = fs.readSync(fd, probe, 0, probe.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      n = -1; // a writer is there, nothing to read yet
    }
    if (n === 0) {
      await close(fd);
      return { socket: undefined, initial: undefined, writerGone: true, pipe: undefined };
    }
    const pipe = pipeBytes > 0 ? setPipeSize(fd, pipeBytes) : undefined;
    const socket = new net.Socket({ fd, readable: true, writable: false, allowHalfOpen: true });
    return { socket, initial: n > 0 ? probe.subarray(0, n) : undefined, writerGone: false, pipe };
  } catch (err) {
    await close(fd).catch(() => undefined);
    throw err;
  }
}
