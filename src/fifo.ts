/**
 * Opens a dockerd FIFO for reading without the libuv threadpool: O_RDONLY|O_NONBLOCK and a net.Socket
 * on the fd (fs.createReadStream parks a threadpool thread on every idle FIFO; four idle ones stall
 * every fs and dns call in the process). dockerd holds the write end, so the open never blocks and
 * EOF arrives only when dockerd closes its end (after StopLogging, or when dockerd dies).
 */
import fs from 'node:fs';
import net from 'node:net';
import { promisify } from 'node:util';

const open = promisify(fs.open);
const fstat = promisify(fs.fstat);
const close = promisify(fs.close);

/** Opens `path` as a readable socket. The socket owns the fd and closes it when destroyed. */
export async function openFifo(path: string): Promise<net.Socket> {
  const fd = await open(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const st = await fstat(fd);
    if (!st.isFIFO()) throw new Error(`${path} is not a FIFO`);
  } catch (err) {
    await close(fd).catch(() => undefined);
    throw err;
  }
  return new net.Socket({ fd, readable: true, writable: false, allowHalfOpen: true });
}
