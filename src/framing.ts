/**
 * Splits a byte stream of `[uint32 BE length][message]` frames, as dockerd writes them into the FIFO.
 * A frame that lies whole inside a chunk is handed out as that chunk and the frame's offsets in it (no
 * copy, and no Buffer view per frame: two of those per line were ~5 % of shiplog's CPU); only a frame
 * that straddles chunks is assembled into its own buffer. A length over `maxFrameBytes` cannot be a
 * real entry (dockerd splits lines at 16 KiB): the stream is out of step, and the splitter scans for
 * the next frame start instead of trusting the length (see startResync).
 */

export interface FrameSink {
  /**
   * One frame: `buf[start, end)`, its 4-byte length prefix included (the message is
   * `buf[start + 4, end)`). `buf` is the chunk being split (or the frame assembled across chunks):
   * valid only during the call.
   */
  onFrame(buf: Buffer, start: number, end: number): void;
  /** A frame whose declared length exceeds the cap; its bytes are skipped. */
  onOversize(declaredLength: number): void;
  /** Bytes skipped while looking for the next frame start after a resync (see startResync). */
  onResyncSkipped?(bytes: number): void;
}

/** `0a 06 "std"` + `out`/`err`: field 1 (source) always comes first in dockerd's entries. */
const SOURCE_STD = Buffer.from([0x0a, 0x06, 0x73, 0x74, 0x64]);
const OUT = Buffer.from('out');
const ERR = Buffer.from('err');
/** Bytes needed to recognise a frame start: 4 length + 2 tag/len + 6 "stdout"/"stderr". */
const FRAME_START_BYTES = 12;
/** How much unrecognisable input the resync scan keeps before discarding it (bounded memory). */
const RESYNC_WINDOW = 1 << 20;

export const DEFAULT_MAX_FRAME_BYTES = 1_000_000;

export class FrameSplitter {
  /** Bytes of an unfinished frame (header included) carried over from earlier chunks. */
  private pending: Buffer | undefined;
  private pendingFilled = 0;
  /** Header bytes collected when a chunk ends inside the 4-byte length. */
  private readonly header = Buffer.alloc(4);
  private headerFilled = 0;
  /** Set while looking for a frame start (the stream may begin inside a frame). */
  private resyncBuffer: Buffer | undefined;
  /** Set after expectJoin(): the bytes pushed since, held until the join is checked. */
  private joinBuffer: Buffer | undefined;

  constructor(private readonly sink: FrameSink, private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** True when the stream stopped exactly at a frame boundary. */
  get atBoundary(): boolean {
    return this.pending === undefined && this.headerFilled === 0 && this.resyncBuffer === undefined && this.joinBuffer === undefined;
  }

  /**
   * The bytes of an unfinished frame, for a later reader of the same stream to push first (the
   * journal's carry). Undefined when the state cannot be carried (skipping an oversize frame, or
   * still resyncing): that reader must resync instead.
   */
  carry(): Buffer | undefined {
    if (this.resyncBuffer !== undefined) return undefined;
    const partial = this.partialFrame();
    // Still checking a join: the next reader gets the unchecked bytes too, and checks its own join.
    return Buffer.concat(this.joinBuffer !== undefined ? [partial, this.joinBuffer] : [partial]);
  }

  /** The bytes of the frame read only in part (a view; empty at a boundary). */
  private partialFrame(): Buffer {
    return this.pending !== undefined ? this.pending.subarray(0, this.pendingFilled) : this.header.subarray(0, this.headerFilled);
  }

  /**
   * The next bytes continue a stream another reader left (journal.ts), which a crash may have cut:
   * the read it had taken from the pipe and not yet saved is gone, so they may not continue the
   * frame carried over (or, at a boundary, may start inside a frame). Joined blindly, the carried
   * head and unrelated bytes can decode as one entry (a line that was never written), so the join
   * is checked first: where the carried frame ends (at once, at a boundary) the next frame must
   * start, as dockerd's frames do (see looksLikeFrameStart). If it does not, the carried bytes are
   * dropped (reported as skipped) and the splitter resyncs on the new bytes. Bytes are held until
   * enough arrived to decide; endOfStream() lets them through unchecked.
   */
  expectJoin(): void {
    if (this.resyncBuffer === undefined) this.joinBuffer = Buffer.alloc(0);
  }

  /** The stream ended: bytes held for a join check are split as they are (nothing follows to check them by). */
  endOfStream(): void {
    const held = this.joinBuffer;
    if (held === undefined) return;
    this.joinBuffer = undefined;
    this.push(held);
  }

  /**
   * The next bytes may start inside a frame (a reader that crashed took part of it): skip to the
   * first position that looks like a dockerd frame start, reporting what was skipped.
   */
  startResync(): void {
    this.resyncBuffer = Buffer.alloc(0);
  }

  /**
   * The rest of the frame read only in part will never come (a crash lost the bytes after it):
   * drop it, reporting its bytes as skipped, and look for the next frame start.
   */
  abandonPartialFrame(): void {
    const dropped = this.pendingFilled + this.headerFilled;
    this.pending = undefined;
    this.pendingFilled = 0;
    this.headerFilled = 0;
    if (dropped > 0) this.sink.onResyncSkipped?.(dropped);
    if (this.resyncBuffer === undefined) this.resyncBuffer = Buffer.alloc(0);
  }

  /** Bytes held back waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.pendingFilled + this.headerFilled;
  }

  push(chunk: Buffer): void {
    if (this.joinBuffer !== undefined) {
      this.checkJoin(chunk);
      return;
    }
    if (this.resyncBuffer !== undefined) {
      this.scanForFrameStart(chunk);
      return;
    }
    let pos = 0;
    const end = chunk.length;
    while (pos < end) {
      if (this.pending !== undefined) {
        const n = Math.min(this.pending.length - this.pendingFilled, end - pos);
        chunk.copy(this.pending, this.pendingFilled, pos, pos + n);
        this.pendingFilled += n;
        pos += n;
        if (this.pendingFilled === this.pending.length) {
          const framed = this.pending;
          this.pending = undefined;
          this.pendingFilled = 0;
          this.sink.onFrame(framed, 0, framed.length);
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
        if (this.resyncBuffer !== undefined) return this.scanForFrameStart(chunk.subarray(pos));
        continue;
      }
      const length = chunk.readUInt32BE(pos);
      if (length > this.maxFrameBytes) {
        // Not a length dockerd writes: the stream is out of step. Look for the next frame start
        // rather than trusting the length (0xffffffff would otherwise swallow 4 GiB).
        this.sink.onOversize(length);
        this.resyncBuffer = Buffer.alloc(0);
        this.scanForFrameStart(chunk.subarray(pos + 4));
        return;
      }
      if (end - pos >= 4 + length) {
        const start = pos;
        pos += 4 + length;
        this.sink.onFrame(chunk, start, pos);
        if (this.resyncBuffer !== undefined) return this.scanForFrameStart(chunk.subarray(pos));
        continue;
      }
      this.pending = Buffer.allocUnsafe(4 + length);
      const n = end - pos;
      chunk.copy(this.pending, 0, pos, end);
      this.pendingFilled = n;
      pos = end;
    }
  }

  private checkJoin(chunk: Buffer): void {
    const next = this.joinBuffer!.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.joinBuffer!, chunk]);
    const carried = this.partialFrame();
    // Where in `next` the carried frame ends (0 at a boundary): a frame must start there.
    let end = 0;
    if (carried.length >= FRAME_START_BYTES) {
      end = this.pending!.length - this.pendingFilled;
    } else if (carried.length > 0) {
      // The carry holds less of its frame's start than that: its length and source are only as good
      // as the bytes that complete them.
      const head = Buffer.concat([carried, next.subarray(0, FRAME_START_BYTES - carried.length)]);
      if (head.length < FRAME_START_BYTES) {
        this.joinBuffer = next; // not enough yet to decide
        return;
      }
      if (!this.looksLikeFrameStart(head, 0)) {
        this.joinBuffer = undefined;
        this.abandonPartialFrame();
        this.push(next);
        return;
      }
      end = 4 + head.readUInt32BE(0) - carried.length;
    }
    if (next.length < end + FRAME_START_BYTES) {
      this.joinBuffer = next; // not enough yet to decide
      return;
    }
    this.joinBuffer = undefined;
    if (!this.looksLikeFrameStart(next, end)) this.abandonPartialFrame();
    this.push(next);
  }

  /** A dockerd frame starts at `at`: a plausible length, then field 1 (source) "stdout" or "stderr". */
  private looksLikeFrameStart(buf: Buffer, at: number): boolean {
    const length = buf.readUInt32BE(at);
    if (length < 8 || length > this.maxFrameBytes) return false;
    if (buf.compare(SOURCE_STD, 0, SOURCE_STD.length, at + 4, at + 9) !== 0) return false;
    const tail = buf.subarray(at + 9, at + 12);
    return tail.equals(OUT) || tail.equals(ERR);
  }

  private scanForFrameStart(chunk: Buffer): void {
    const buf = this.resyncBuffer!.length === 0 ? chunk : Buffer.concat([this.resyncBuffer!, chunk]);
    for (let at = buf.indexOf(SOURCE_STD, 4); at !== -1; at = buf.indexOf(SOURCE_STD, at + 1)) {
      if (at + 8 > buf.length) break;
      if (!this.looksLikeFrameStart(buf, at - 4)) continue;
      this.resyncBuffer = undefined;
      if (at - 4 > 0) this.sink.onResyncSkipped?.(at - 4);
      this.push(buf.subarray(at - 4));
      return;
    }
    // Keep a tail that might hold the start of a frame; discard (and report) the rest past the window.
    const keep = Math.min(buf.length, FRAME_START_BYTES - 1);
    if (buf.length > RESYNC_WINDOW) {
      this.sink.onResyncSkipped?.(buf.length - keep);
      this.resyncBuffer = Buffer.from(buf.subarray(buf.length - keep));
    } else {
      this.resyncBuffer = Buffer.from(buf);
    }
  }

  /**
   * Called from onFrame when a frame did not decode: its length was probably wrong, so the real next
   * frame may start inside it. Re-scan the frame's bytes (after its first byte), then what follows.
   */
  resyncWithin(message: Buffer): void {
    this.resyncBuffer = Buffer.from(message.subarray(1));
  }

  private startCarriedFrame(length: number): void {
    if (length > this.maxFrameBytes) {
      this.sink.onOversize(length);
      this.resyncBuffer = Buffer.alloc(0);
      return;
    }
    this.pending = Buffer.allocUnsafe(4 + length);
    this.pending.writeUInt32BE(length, 0);
    this.pendingFilled = 4;
    if (length === 0) {
      const framed = this.pending;
      this.pending = undefined;
      this.pendingFilled = 0;
      this.sink.onFrame(framed, 0, framed.length);
    }
  }
}
