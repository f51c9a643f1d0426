/**
 * The spool's acknowledgement point: everything before (segment, offset) was delivered (or
 * dead-lettered). Written after every acknowledged batch, so it must be cheap: one 48-byte pwrite into
 * one of two slots, alternately, each with a generation number and a CRC. A torn write spoils only
 * the slot being written; the reader takes the valid slot with the higher generation. Not fsynced per
 * write (a process crash keeps the page cache; after a power loss an older checkpoint means
 * re-delivery with the same ids, never loss); fsynced on close.
 *
 * `resume`: set only when a graceful stop put older records (held in memory) into a segment before the
 * acknowledged point: reading continues in `resume.seg` from `resume.off`, not from its start.
 */
import fs from 'node:fs';
import { crc32 } from './crc32.js';

export interface Position {
  /** Segment id. */
  readonly seg: number;
  /** Byte offset in that segment. */
  readonly off: number;
}

export interface Checkpoint {
  readonly pos: Position;
  readonly resume?: Position | undefined;
}

export function comparePositions(a: Position, b: Position): number {
  return a.seg !== b.seg ? a.seg - b.seg : a.off - b.off;
}

const SLOT_BYTES = 48;
const MAGIC = 0x5350_434b; // "SPCK"
const TWO_32 = 4294967296;

function writeU64(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_32), at);
  buf.writeUInt32BE(value >>> 0, at + 4);
}

function readU64(buf: Buffer, at: number): number {
  return buf.readUInt32BE(at) * TWO_32 + buf.readUInt32BE(at + 4);
}

function encodeSlot(cp: Checkpoint, generation: number): Buffer {
  const buf = Buffer.alloc(SLOT_BYTES);
  buf.writeUInt32BE(MAGIC, 0);
  writeU64(buf, generation, 8);
  writeU64(buf, cp.pos.seg, 16);
  writeU64(buf, cp.pos.off, 24);
  if (cp.resume !== undefined) {
    buf[32] = 1;
    writeU64(buf, cp.resume.seg, 33);
    buf.writeUInt32BE(cp.resume.off, 41);
  }
  buf.writeUInt32BE(crc32(buf, 8, SLOT_BYTES), 4);
  return buf;
}

function decodeSlot(buf: Buffer, at: number): { cp: Checkpoint; generation: number } | undefined {
  if (buf.length < at + SLOT_BYTES) return undefined;
  const slot = buf.subarray(at, at + SLOT_BYTES);
  if (slot.readUInt32BE(0) !== MAGIC || crc32(slot, 8, SLOT_BYTES) !== slot.readUInt32BE(4)) return undefined;
  const pos = { seg: readU64(slot, 16), off: readU64(slot, 24) };
  const resume = slot[32] === 1 ? { seg: readU64(slot, 33), off: slot.readUInt32BE(41) } : undefined;
  return { cp: resume !== undefined ? { pos, resume } : { pos }, generation: readU64(slot, 8) };
}

export class CheckpointFile {
  private fd: number | undefined;
  private generation = 0;

  constructor(readonly file: string) {}

  /** The last checkpoint written, or undefined when there is none (or both slots are damaged). */
  read(): Checkpoint | undefined {
    let buf: Buffer;
    try {
      buf = fs.readFileSync(this.file);
    } catch {
      return undefined;
    }
    const a = decodeSlot(buf, 0);
    const b = decodeSlot(buf, SLOT_BYTES);
    const best = a === undefined ? b : b === undefined ? a : a.generation >= b.generation ? a : b;
    if (best === undefined) return undefined;
    this.generation = best.generation;
    return best.cp;
  }

  /** Synchronous and small; throws on I/O errors (the caller logs: a stale checkpoint only means re-delivery). */
  write(cp: Checkpoint): void {
    if (this.fd === undefined) this.fd = fs.openSync(this.file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    this.generation++;
    fs.writeSync(this.fd, encodeSlot(cp, this.generation), 0, SLOT_BYTES, (this.generation % 2) * SLOT_BYTES);
  }

  sync(): void {
    if (this.fd !== undefined) fs.fdatasyncSync(this.fd);
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      fs.closeSync(fd);
    } catch {
      // already gone
    }
  }
}
