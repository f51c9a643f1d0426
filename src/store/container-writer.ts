/**
 * The write handle the driver holds per FIFO stream. add() copies each frame into one growing buffer
 * as a store record (`[N][entry][N]`), flush() hands that buffer to the container in one write.
 */
import type { Logger } from 'pino';
import { partsToBigInt, type Int64Parts } from '../time.js';
import type { ContainerLog } from './container-log.js';
import { MAX_RECORD_BODY, RECORD_OVERHEAD } from './record-format.js';
import type { ContainerLogWriter } from './store.js';

const INITIAL_BUFFER_BYTES = 64 * 1024;
/** A buffer grown past this for one huge chunk is dropped after the flush, not kept per stream. */
const RETAINED_BUFFER_BYTES = 1024 * 1024;

export class StoreWriter implements ContainerLogWriter {
  private pending = Buffer.allocUnsafe(INITIAL_BUFFER_BYTES);
  private pendingBytes = 0;
  private lastTime: Int64Parts | undefined;
  private released = false;

  constructor(
    private readonly container: ContainerLog,
    private readonly logger: Logger,
    private readonly onRelease: (writer: StoreWriter) => void,
  ) {}

  add(source: Buffer, start: number, end: number, timeNano: Int64Parts): void {
    if (this.released || end < start) return;
    const bodyLength = end - start;
    if (bodyLength > MAX_RECORD_BODY) {
      // The reader would refuse it as corrupt; say so now instead.
      this.logger.warn({ container: this.container.id, bytes: bodyLength }, 'store: entry over 1 MB not stored');
      return;
    }
    const needed = this.pendingBytes + bodyLength + RECORD_OVERHEAD;
    if (needed > this.pending.length) this.grow(needed);
    const buf = this.pending;
    let at = this.pendingBytes;
    // Our own header: header and footer agree whatever the FIFO's prefix said.
    buf.writeUInt32BE(bodyLength, at);
    source.copy(buf, at + 4, start, end);
    at += 4 + bodyLength;
    buf.writeUInt32BE(bodyLength, at);
    this.pendingBytes = at + 4;
    this.lastTime = timeNano;
  }

  flush(): void {
    if (this.pendingBytes === 0 || this.lastTime === undefined) return;
    const records = this.pending.subarray(0, this.pendingBytes);
    const lastTime = partsToBigInt(this.lastTime);
    this.pendingBytes = 0;
    this.lastTime = undefined;
    // append() writes synchronously, so the buffer is free for reuse as soon as it returns.
    this.container.append(records, lastTime);
    if (this.pending.length > RETAINED_BUFFER_BYTES) this.pending = Buffer.allocUnsafe(INITIAL_BUFFER_BYTES);
  }

  /**
   * For a stream re-attached after a crash: the records queued so far replay the chunk the earlier
   * process had not finished, and it may have stored some or all of them before it was killed (its
   * store write came before its pending-file update). Drops the longest queued prefix that is exactly
   * the end of the store, so `docker logs` shows those entries once. Returns how many were dropped.
   * Byte-exact comparison of whole records (nanosecond time included), so entries are never dropped
   * by mistake; a prefix that went into a rotated file is not found and is stored again.
   */
  dropStoredPrefix(): number {
    if (this.pendingBytes === 0) return 0;
    const tail = this.container.readTail(this.pendingBytes);
    if (tail.length < RECORD_OVERHEAD) return 0;
    const ends: number[] = [];
    for (let at = 0; at < this.pendingBytes;) {
      at += this.pending.readUInt32BE(at) + RECORD_OVERHEAD;
      ends.push(at);
    }
    for (let i = ends.length - 1; i >= 0; i--) {
      const length = ends[i] as number;
      if (length > tail.length) continue;
      if (!tail.subarray(tail.length - length).equals(this.pending.subarray(0, length))) continue;
      this.pending.copy(this.pending, 0, length, this.pendingBytes);
      this.pendingBytes -= length;
      if (this.pendingBytes === 0) this.lastTime = undefined;
      return i + 1;
    }
    return 0;
  }

  release(): void {
    if (this.released) return;
    this.flush();
    this.released = true;
    this.container.releaseWriter();
    this.onRelease(this);
  }

  private grow(needed: number): void {
    const bigger = Buffer.allocUnsafe(Math.max(needed, this.pending.length * 2));
    this.pending.copy(bigger, 0, 0, this.pendingBytes);
    this.pending = bigger;
  }
}
