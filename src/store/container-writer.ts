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

  add(framed: Buffer, timeNano: Int64Parts): void {
    if (this.released || framed.length < 4) return;
    const bodyLength = framed.length - 4;
    if (bodyLength > MAX_RECORD_BODY) {
      // The reader would refuse it as corrupt; say so now instead.
      this.logger.warn({ container: this.container.id, bytes: bodyLength }, 'store: entry over 1 MB not stored');
      return;
    }
    const needed = this.pendingBytes + bodyLength + RECORD_OVERHEAD;
    if (needed > this.pending.length) this.grow(needed);
    const buf = this.pending;
    let at = this.pendingBytes;
    // Write the header ourselves so header and footer agree even if the FIFO's prefix were off.
    buf.writeUInt32BE(bodyLength, at);
    framed.copy(buf, at + 4, 4);
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
