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
  /**
   * Reads the rest of the stream into the `onChunk` given to openFifo (no 'data' events); owns the fd
   * and closes it when destroyed. Undefined when `writerGone`.
   */
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
 * Node's own read size for a stream, and the least a read asks for: smaller reads of a stream that
 * keeps up with its container (most reads come back part-full) would only take more of them.
 */
const NODE_READ_BYTES = 64 * 1024;
/**
 * Entries per read from which a bigger read saves nothing worth its memory: the per-read work is
 * then spread over that many entries already, while what the sinks write per read grows with it.
 */
const ENTRIES_PER_READ = 1024;

/**
 * How much each read asks for. Node reads a stream 64 KiB at a time whatever is waiting, and every
 * read costs a turn through the stream machinery and the per-chunk work after it (the pending file's
 * two writes, a store write, the sinks' hand-off): for lines of 16 KiB and more, four dockerd entries
 * per read. Here a read that came back full with fewer than ENTRIES_PER_READ entries doubles the next
 * one, up to the pipe's size; one that held four times that many, or used less than a quarter of its
 * buffer, halves it, down to 64 KiB. So short lines keep Node's 64 KiB reads (2,000 entries each),
 * 200 B lines settle at 256 KiB, long ones at the pipe's mebibyte. A full buffer is handed on as it
 * is (entries are views into it until processed) and the next read gets a fresh one; the bytes of a
 * read that did not fill its buffer are copied out, and the buffer serves the next read (take()).
 * Unlike Node's reads, which allocate when data arrives, a stream always holds its next read's
 * buffer: 64 KiB for an idle one (pages it has not written are not resident).
 */
export class ReadSizer {
  private size = NODE_READ_BYTES;
  /** The last buffer, when its bytes were copied out (a small read): the next read reuses it. */
  private spare: Buffer | undefined;

  constructor(private readonly maxBytes: number) {}

  next(): Buffer {
    const spare = this.spare;
    this.spare = undefined;
    return spare !== undefined && spare.length === this.size ? spare : Buffer.allocUnsafeSlow(this.size);
  }

  /**
   * The bytes of a read of `n` into `buffer`, for the reader to keep: the buffer itself (a view) when
   * the read filled it, else a copy of just those bytes, and the buffer serves the next read. So a
   * read that did not fill its buffer keeps only what it read alive, as Node's own reads do (they
   * shrink their buffer to it), and a trickle of small reads does not allocate a buffer per read.
   */
  take(buffer: Uint8Array, n: number): Buffer {
    if (n === buffer.length) return Buffer.from(buffer.buffer, buffer.byteOffset, n);
    this.spare = Buffer.from(buffer.buffer, buffer.byteOffset, buffer.length);
    return Buffer.from(this.spare.subarray(0, n));
  }

  /** A read returned `n` bytes into a buffer of `capacity`, which held `entries` entries. */
  read(n: number, capacity: number, entries: number): void {
    if (n >= capacity && entries < ENTRIES_PER_READ) this.size = Math.min(this.maxBytes, this.size * 2);
    else if (n < capacity / 4 || entries > 4 * ENTRIES_PER_READ) this.size = Math.max(NODE_READ_BYTES, this.size / 2);
  }

  get bytes(): number {
    return this.size;
  }
}

/**
 * `pipeBytes`: the kernel buffer to ask for (pipe-size.ts); 0 keeps what the pipe has. The resize
 * is a request, not a condition: a refusal is reported in `pipe` and the FIFO is read as it is.
 * `onChunk` gets each read's bytes, in order (a view of a buffer of the read's own), and returns how
 * many entries they held (ReadSizer).
 */
export async function openFifo(path: string, pipeBytes: number, onChunk: (chunk: Buffer) => number): Promise<OpenedFifo> {
  const fd = await open(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const st = await fstat(fd);
    if (!st.isFIFO()) throw new Error(`${path} is not a FIFO`);
    const probe = Buffer.allocUnsafe(NODE_READ_BYTES);
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
    const sizer = new ReadSizer(pipe !== undefined && 'bytes' in pipe ? Math.max(NODE_READ_BYTES, pipe.bytes) : NODE_READ_BYTES);
    const onread: net.OnReadOpts = {
      buffer: () => sizer.next(),
      callback: (n, buf) => {
        const entries = onChunk(sizer.take(buf, n));
        sizer.read(n, buf.length, entries);
        return true;
      },
    };
    // Node's Socket constructor takes `onread` as connect() does; @types/node lists it for connect() only.
    const socket = new net.Socket({ fd, readable: true, writable: false, allowHalfOpen: true, onread } as net.SocketConstructorOpts);
    return { socket, initial: n > 0 ? probe.subarray(0, n) : undefined, writerGone: false, pipe };
  } catch (err) {
    await close(fd).catch(() => undefined);
    throw err;
  }
}
