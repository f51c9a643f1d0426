/**
 * Splits a byte stream of `[uint32 BE length][message]` frames, as dockerd writes them into the FIFO.
 * A frame that lies whole inside a chunk is handed out as a view of that chunk (no copy); only a frame
 * that straddles chunks is assembled into its own buffer. A length over `maxFrameBytes` cannot be a
 * real entry (dockerd splits lines at 16 KiB): its bytes are discarded as they pass, never buffered.
 */

export interface FrameSink {
  /** `message` is the protobuf bytes (length prefix stripped); `framed` includes the 4-byte prefix. */
  onFrame(message: Buffer, framed: Buffer): void;
  /** A frame whose declared length exceeds the cap; its bytes are skipped. */
  onOversize(declaredLength: number): void;
}

export const DEFAULT_MAX_FRAME_BYTES = 1_000_000;

export class FrameSplitter {
  /** Bytes of an unfinished frame (header included) carried over from earlier chunks. */
  private pending: Buffer | undefined;
  private pendingFilled = 0;
  /** Header bytes collected when a chunk ends inside the 4-byte length. */
  private readonly header = Buffer.alloc(4);
  private headerFilled = 0;
  /** Bytes still to discard from an oversize frame. */
  private skipRemaining = 0;

  constructor(private readonly sink: FrameSink, private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** True when the stream stopped exactly at a frame boundary. */
  get atBoundary(): boolean {
    return this.pending === undefined && this.headerFilled === 0 && this.skipRemaining === 0;
  }

  /** Bytes held back waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.pendingFilled + this.headerFilled;
  }

  push(chunk: Buffer): void {
    let pos = 0;
    const end = chunk.length;
    while (pos < end) {
      if (this.skipRemaining > 0) {
        const n = Math.min(this.skipRemaining, end - pos);
        this.skipRemaining -= n;
        pos += n;
        continue;
      }
      if (this.pending !== undefined) {
        const n = Math.min(this.pending.length - this.pendingFilled, end - pos);
        chunk.copy(this.pending, this.pendingFilled, pos, pos + n);
        this.pendingFilled += n;
        pos += n;
        if (this.pendingFilled === this.pending.length) {
          const framed = this.pending;
          this.pending = undefined;
          this.pendingFilled = 0;
          this.sink.onFrame(framed.subarray(4), framed);
        }
        continue;
      }
      if (this.headerFilled > 0 || end - pos < 4) {
        const n = Math.min(4 - this.headerFilled, end - pos);
        chunk.copy(this.header, this.headerFilled, pos, pos + n);
        this.headerFilled += n;
        pos += n;
        if (this.headerFilled < 4) continue;
        this.headerFilled = 0;
        this.startCarriedFrame(this.header.readUInt32BE(0));
        continue;
      }
      const length = chunk.readUInt32BE(pos);
      if (length > this.maxFrameBytes) {
        this.sink.onOversize(length);
        pos += 4;
        this.skipRemaining = length;
        continue;
      }
      if (end - pos >= 4 + length) {
        const framed = chunk.subarray(pos, pos + 4 + length);
        pos += 4 + length;
        this.sink.onFrame(framed.subarray(4), framed);
        continue;
      }
      this.pending = Buffer.allocUnsafe(4 + length);
      const n = end - pos;
      chunk.copy(this.pending, 0, pos, end);
      this.pendingFilled = n;
      pos = end;
    }
  }

  private startCarriedFrame(length: number): void {
    if (length > this.maxFrameBytes) {
      this.sink.onOversize(length);
      this.skipRemaining = length;
      return;
    }
    this.pending = Buffer.allocUnsafe(4 + length);
    this.pending.writeUInt32BE(length, 0);
    this.pendingFilled = 4;
    if (length === 0) {
      const framed = this.pending;
      this.pending = undefined;
      this.pendingFilled = 0;
      this.sink.onFrame(framed.subarray(4), framed);
    }
  }
}
