/**
 * One ReadLogs request: choose where to start (Tail, Since, Until), stream the stored records as
 * ReadLogs frames, and with Follow keep streaming what flush() appends until the container's last
 * writer is released.
 *
 * Everything is read from the files, the backlog and the live part alike: a follower keeps a
 * (segment, offset) position, reads up to the end the container reports, and waits for a wake-up
 * when it is caught up. So a slow reader costs one read batch of memory, not a queue: it simply
 * falls behind on disk. If rotation or the budget deletes segments it has not reached, it continues
 * with the oldest remaining one and logs a warning once (as Docker's follow.go does).
 */
import fs from 'node:fs';
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { decodeEntry, decodeEntryAt, type DecodedEntry } from '../entry.js';
import { partsToBigInt } from '../time.js';
import { comparePositions, type ContainerLog, type Follower, type Position, type SegmentState } from './container-log.js';
import { CorruptRecordError, RecordCursor } from './record-format.js';
import { isReadableSource, readLogsFrameLength, writeReadLogsFrame } from './readlogs-frame.js';
import { BackwardRecordScanner, GzipSegmentReader, PlainSegmentReader, type ForwardSegmentReader } from './segment-readers.js';
import type { ReadRequest } from './store.js';

interface StreamPlan {
  start: Position;
  /** Stop before this position (end of the backlog without follow, or the first entry after Until). */
  stopAt: Position | undefined;
  /** Skip entries before Since until the first one at or after it (Docker's forwarder). */
  sinceActive: boolean;
  /** End at the first entry after Until. */
  untilActive: boolean;
}

type BatchOutcome = 'more' | 'done' | 'corrupt';

export class ReadSession implements Follower {
  private stopped = false;
  private wakeWaiter: (() => void) | undefined;
  private drainWaiter: (() => void) | undefined;
  private corruptionLogged = false;
  private skipLogged = false;
  private readonly cursor = new RecordCursor();
  private sinceActive = false;
  private untilActive = false;
  private readonly since: bigint | undefined;
  private readonly until: bigint | undefined;

  constructor(
    private readonly container: ContainerLog,
    private readonly request: ReadRequest,
    private readonly out: Writable,
    private readonly logger: Logger,
  ) {
    this.since = request.since;
    this.until = request.until;
  }

  /** Streams into `out`; resolves when done. Never rejects for data problems; they are logged. */
  async run(): Promise<void> {
    const out = this.out;
    if (out.destroyed || out.writableEnded) return;
    const onGone = (): void => this.stop();
    out.on('close', onGone);
    out.on('error', onGone);
    // Same tick: the end of the backlog and the follow registration see the same state.
    const end = this.container.endPosition();
    const follow = this.request.follow && this.container.writerCount > 0;
    if (follow) this.container.addFollower(this);
    try {
      const plan = await this.plan(end, follow);
      this.sinceActive = plan.sinceActive;
      this.untilActive = plan.untilActive;
      if (!this.stopped) await this.stream(plan, follow);
    } catch (err) {
      this.logger.error({ container: this.container.id, err }, 'store: reading logs failed');
    } finally {
      this.container.removeFollower(this);
      out.off('close', onGone);
      out.off('error', onGone);
    }
  }

  wake(): void {
    const waiter = this.wakeWaiter;
    this.wakeWaiter = undefined;
    waiter?.();
  }

  /** The reader is gone or the store is closing: stop at the next step. */
  stop(): void {
    this.stopped = true;
    this.wake();
    this.drainWaiter?.();
  }

  // ---- where to start -------------------------------------------------------------------------

  private async plan(end: Position, follow: boolean): Promise<StreamPlan> {
    const { tail } = this.request;
    const since = this.since;
    const until = this.until;
    const stopAtEnd = follow ? undefined : end;
    const hasSince = since !== undefined;
    const hasUntil = until !== undefined;
    if (tail === 0) return { start: end, stopAt: stopAtEnd, sinceActive: hasSince, untilActive: hasUntil };
    if (tail < 0) {
      const start = hasSince ? this.firstSegmentNotOlderThan(since, end) : this.oldestPosition(end);
      return { start, stopAt: stopAtEnd, sinceActive: hasSince, untilActive: hasUntil };
    }
    // Tail over the window Docker's forwarder would show: [first entry >= Since, first entry after Until).
    let windowStart = this.oldestPosition(end);
    if (hasSince) {
      const first = await this.findRecord(this.firstSegmentNotOlderThan(since, end), end,
        (s) => s.lastTime !== undefined && s.lastTime < since, (t) => t >= since);
      if (first === undefined) return { start: end, stopAt: stopAtEnd, sinceActive: true, untilActive: hasUntil };
      windowStart = first;
    }
    let windowEnd: Position | undefined;
    if (hasUntil) {
      windowEnd = await this.findRecord(windowStart, end,
        (s) => s.lastTime !== undefined && s.lastTime <= until, (t) => t > until);
    }
    const start = await this.tailStart(windowStart, windowEnd ?? end, tail);
    if (windowEnd !== undefined) return { start, stopAt: windowEnd, sinceActive: false, untilActive: false };
    return { start, stopAt: stopAtEnd, sinceActive: false, untilActive: hasUntil };
  }

  private oldestPosition(end: Position): Position {
    const oldest = this.container.segments[0];
    return oldest !== undefined && oldest.seq <= end.seq ? { seq: oldest.seq, offset: 0 } : end;
  }

  /** Docker skips whole files whose last entry is older than Since; so do we, for every segment. */
  private firstSegmentNotOlderThan(since: bigint, end: Position): Position {
    for (const s of this.container.segments) {
      if (s.seq > end.seq) break;
      if (s.lastTime === undefined || s.lastTime >= since) return { seq: s.seq, offset: 0 };
    }
    return end;
  }

  /** Position of the first record at or after `from` (and before `end`) whose time matches. */
  private async findRecord(
    from: Position,
    end: Position,
    skipSegment: (s: SegmentState) => boolean,
    matches: (timeNs: bigint) => boolean,
  ): Promise<Position | undefined> {
    for (const segment of this.segmentsBetween(from.seq, end.seq)) {
      if (this.stopped) return undefined;
      if (skipSegment(segment)) continue;
      const reader = this.openForward(segment, segment.seq === from.seq ? from.offset : 0);
      if (reader === undefined) continue;
      const limit = segment.seq === end.seq ? end.offset : Number.POSITIVE_INFINITY;
      try {
        for (let batch = await reader.read(limit); batch !== null && !this.stopped; batch = await reader.read(limit)) {
          this.cursor.reset(batch, reader.offset - batch.length);
          while (this.cursor.next()) {
            if (this.cursor.start >= limit) break;
            const entry = this.decode();
            if (entry !== undefined && matches(partsToBigInt(entry.timeNano))) return { seq: segment.seq, offset: this.cursor.start };
          }
        }
      } catch (err) {
        this.reportCorruption(err);
      } finally {
        reader.close();
      }
    }
    return undefined;
  }

  /** Where the last `count` readable entries of [windowStart, windowEnd) begin, newest segment first. */
  private async tailStart(windowStart: Position, windowEnd: Position, count: number): Promise<Position> {
    let remaining = count;
    const segments = this.segmentsBetween(windowStart.seq, windowEnd.seq).reverse();
    for (const segment of segments) {
      if (this.stopped) return windowEnd;
      const from = segment.seq === windowStart.seq ? windowStart.offset : 0;
      const to = segment.seq === windowEnd.seq ? windowEnd.offset : Number.POSITIVE_INFINITY;
      const opened = this.container.openFd(segment);
      if (opened === undefined) continue;
      const found = opened.compressed
        ? await this.lastEntriesForward(new GzipSegmentReader(opened.fd, from), to, remaining)
        : await this.lastEntriesBackward(opened.fd, from, Math.min(to, opened.size), remaining);
      if (found.start !== undefined) return { seq: segment.seq, offset: found.start };
      remaining -= found.count;
    }
    return windowStart;
  }

  /** Plain segment: walk back through the footers; reads only what the tail needs. */
  private async lastEntriesBackward(fd: number, from: number, to: number, wanted: number): Promise<{ count: number; start?: number }> {
    const scanner = new BackwardRecordScanner(fd, from, to);
    let count = 0;
    let earliest = to;
    try {
      while (await scanner.previous()) {
        earliest = scanner.start;
        if (!this.isCountable(scanner.body)) continue;
        count++;
        if (count === wanted) return { count, start: scanner.start };
      }
      return { count };
    } catch (err) {
      // Older records cannot be reached backwards past a broken one: the tail starts after it.
      this.reportCorruption(err);
      return { count, start: earliest };
    } finally {
      closeFd(fd);
    }
  }

  /** Compressed segment: decompress forwards, remembering where the last `wanted` entries start. */
  private async lastEntriesForward(reader: ForwardSegmentReader, to: number, wanted: number): Promise<{ count: number; start?: number }> {
    const starts: number[] = [];
    let count = 0;
    try {
      for (let batch = await reader.read(to); batch !== null && !this.stopped; batch = await reader.read(to)) {
        this.cursor.reset(batch, reader.offset - batch.length);
        while (this.cursor.next()) {
          if (this.cursor.start >= to) break;
          if (!this.isCountable(this.cursor.body)) continue;
          starts[count % wanted] = this.cursor.start;
          count++;
        }
      }
    } catch (err) {
      this.reportCorruption(err);
    } finally {
      reader.close();
    }
    return count >= wanted ? { count, start: starts[count % wanted] } : { count };
  }

  /** Tail counts what the reader would be sent: decodable stdout/stderr entries. */
  private isCountable(body: Buffer): boolean {
    try {
      return isReadableSource(decodeEntry(body).source);
    } catch {
      return false;
    }
  }

  private segmentsBetween(fromSeq: number, toSeq: number): SegmentState[] {
    return this.container.segments.filter((s) => s.seq >= fromSeq && s.seq <= toSeq);
  }

  private openForward(segment: SegmentState, offset: number): ForwardSegmentReader | undefined {
    const opened = this.container.openFd(segment);
    if (opened === undefined) return undefined;
    return opened.compressed ? new GzipSegmentReader(opened.fd, offset) : new PlainSegmentReader(opened.fd, offset);
  }

  // ---- streaming ------------------------------------------------------------------------------

  private async stream(plan: StreamPlan, follow: boolean): Promise<void> {
    const container = this.container;
    const { stopAt } = plan;
    let pos = plan.start;
    let reader: ForwardSegmentReader | undefined;
    let readerSeq = -1;
    try {
      while (!this.stopped) {
        if (stopAt !== undefined && comparePositions(pos, stopAt) >= 0) return;
        if (reader === undefined) {
          const segment = container.segmentAtOrAfter(pos.seq);
          if (segment === undefined) {
            // Past everything stored: only a writer can add more.
            if (!follow || container.writerCount === 0) return;
            await this.waitForData();
            continue;
          }
          if (segment.seq !== pos.seq) {
            this.reportSkipped();
            pos = { seq: segment.seq, offset: 0 };
            continue; // re-check stopAt for the new position
          }
          reader = this.openForward(segment, pos.offset);
          if (reader === undefined) {
            this.reportSkipped();
            pos = { seq: pos.seq + 1, offset: 0 };
            continue;
          }
          readerSeq = segment.seq;
        }
        const active: ForwardSegmentReader = reader;
        const finalized = readerSeq < container.currentSeq;
        let limit = finalized ? Number.POSITIVE_INFINITY : container.currentSize;
        if (stopAt !== undefined && stopAt.seq === readerSeq) limit = Math.min(limit, stopAt.offset);
        let outcome: BatchOutcome;
        try {
          const batch = await active.read(limit);
          if (this.stopped) return;
          if (batch === null) {
            pos = { seq: readerSeq, offset: active.offset };
            if (stopAt !== undefined && comparePositions(pos, stopAt) >= 0) return;
            if (finalized) {
              if (active.trailingBytes > 0) this.reportCorruption(new CorruptRecordError(active.offset, 'segment ends inside a record'));
              active.close();
              reader = undefined;
              pos = { seq: readerSeq + 1, offset: 0 };
              continue;
            }
            // Rotated, or appended to, while we read: read on.
            if (readerSeq < container.currentSeq || container.currentSize > active.offset) continue;
            if (!follow || container.writerCount === 0) return;
            await this.waitForData();
            continue;
          }
          outcome = await this.emitBatch(batch, active.offset - batch.length, readerSeq, stopAt);
        } catch (err) {
          this.reportCorruption(err);
          outcome = 'corrupt';
        }
        if (outcome === 'done') return;
        pos = { seq: readerSeq, offset: active.offset };
        if (outcome === 'corrupt') {
          // Nothing after a broken record in this segment can be trusted; go on with the next one.
          active.close();
          reader = undefined;
          if (readerSeq >= container.currentSeq) return;
          pos = { seq: readerSeq + 1, offset: 0 };
        }
      }
    } finally {
      reader?.close();
    }
  }

  private async emitBatch(batch: Buffer, baseOffset: number, seq: number, stopAt: Position | undefined): Promise<BatchOutcome> {
    const cursor = this.cursor;
    cursor.reset(batch, baseOffset);
    // Frames are written straight into one buffer: a frame is never longer than its record
    // (readlogs-frame.ts), so the batch's size holds them all; growing is only a safeguard.
    let out: Buffer = Buffer.allocUnsafe(batch.length);
    let at = 0;
    let outcome: BatchOutcome = 'more';
    try {
      while (cursor.next()) {
        if (stopAt !== undefined && seq === stopAt.seq && cursor.start >= stopAt.offset) {
          outcome = 'done';
          break;
        }
        const entry = this.decode();
        if (entry === undefined) continue;
        if (this.sinceActive || this.untilActive) {
          const t = partsToBigInt(entry.timeNano);
          if (this.sinceActive) {
            if (t < (this.since as bigint)) continue;
            // Timestamps of stdout and stderr interleave: after the first match, take everything.
            this.sinceActive = false;
          }
          if (this.untilActive && t > (this.until as bigint)) {
            outcome = 'done';
            break;
          }
        }
        if (!isReadableSource(entry.source)) continue;
        let end = writeReadLogsFrame(out, at, entry);
        if (end < 0) {
          out = grown(out, at, at + readLogsFrameLength(entry));
          end = writeReadLogsFrame(out, at, entry);
        }
        at = end;
      }
    } catch (err) {
      if (!(err instanceof CorruptRecordError)) throw err;
      this.reportCorruption(err);
      outcome = 'corrupt';
    }
    if (at > 0 && !this.stopped) {
      if (!this.out.write(out.subarray(0, at))) await this.waitForDrain();
    }
    return outcome;
  }

  /** The current record's entry, or undefined (reported) when it does not decode. */
  private decode(): DecodedEntry | undefined {
    const cursor = this.cursor;
    try {
      return decodeEntryAt(cursor.batch, cursor.bodyStart, cursor.bodyEnd);
    } catch (err) {
      this.reportCorruption(new CorruptRecordError(cursor.start, `entry does not decode: ${(err as Error).message}`));
      return undefined;
    }
  }

  private waitForData(): Promise<void> {
    return new Promise((resolve) => {
      this.wakeWaiter = resolve;
    });
  }

  private waitForDrain(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.out.off('drain', done);
        this.drainWaiter = undefined;
        resolve();
      };
      this.drainWaiter = done;
      this.out.on('drain', done);
    });
  }

  /** Broken framing, an entry that does not decode, a bad gzip stream, an unreadable file: once per read. */
  private reportCorruption(err: unknown): void {
    if (this.corruptionLogged) return;
    this.corruptionLogged = true;
    const reason = err instanceof Error ? err.message : String(err);
    this.logger.warn({ container: this.container.id, reason }, 'store: corrupt or unreadable log data skipped while reading');
  }

  private reportSkipped(): void {
    if (this.skipLogged) return;
    this.skipLogged = true;
    this.logger.warn({ container: this.container.id }, 'store: log segments were deleted before this reader reached them; entries skipped');
  }
}

/** A copy of `buffer`'s first `used` bytes in a buffer of at least `needed` bytes. */
function grown(buffer: Buffer, used: number, needed: number): Buffer {
  const bigger = Buffer.allocUnsafe(Math.max(needed, buffer.length * 2));
  buffer.copy(bigger, 0, 0, used);
  return bigger;
}

function closeFd(fd: number): void {
  fs.close(fd, () => undefined);
}
