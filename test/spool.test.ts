/** The disk spool on its own: format round trip, damage, bounds, disk faults, checkpoints. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { type ContainerMeta, type LogRecord, recordId } from '../sinks/sink.js';
import { crc32, crc32Js } from '../src/spool/crc32.js';
import { nodeSpoolIo, Spool, type SpoolDropReason, type SpoolIo, type SpoolItem, type SpoolOptions, type SpoolReader } from '../src/spool/spool.js';
import { bigIntToParts, partsToBigInt } from '../src/time.js';
import { container, record } from './support/records.js';

const logger = pino({ level: 'silent' });

function tmpDir(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'spool-')), 'sp');
}

function openSpool(dir: string, o: Partial<Omit<SpoolOptions, 'onDrop'>> = {}) {
  const drops: Partial<Record<SpoolDropReason, number>> = {};
  const spool = new Spool({ dir, maxBytes: 1 << 30, logger, ...o, onDrop: (reason, n) => { drops[reason] = (drops[reason] ?? 0) + n; } });
  return { spool, drops };
}

/** Items that must all be records (not encoded bytes). */
function asRecords(items: readonly SpoolItem[]): LogRecord[] {
  return items.map((item) => {
    if (item instanceof Uint8Array) throw new Error('expected a record, got encoded bytes');
    return item;
  });
}

/** spool.read() into items of the test's own: the spool lends each record for one call, so they are copied. */
async function readItems(spool: Spool, maxRecords: number, maxBytes = 1 << 30, allowOversize = true) {
  const records: SpoolItem[] = [];
  const reader: SpoolReader = {
    record: (r) => records.push({ ...r, line: Buffer.from(r.line) }),
    encoded: (bytes) => records.push(Buffer.from(bytes)),
    discard: () => { records.length = 0; },
  };
  const r = await spool.read(reader, maxRecords, maxBytes, allowOversize);
  if (r.kind === 'batch') expect(records.length).toBe(r.batch.count);
  return r.kind === 'batch' ? { kind: r.kind, batch: { ...r.batch, records } } : r;
}

/** Reads everything there is, acknowledging each batch. */
async function drainItems(spool: Spool, maxRecords = 1000): Promise<SpoolItem[]> {
  const out: SpoolItem[] = [];
  for (;;) {
    const r = await readItems(spool, maxRecords);
    if (r.kind !== 'batch') return out;
    out.push(...r.batch.records);
    spool.ack(r.batch.end);
  }
}

async function drain(spool: Spool, maxRecords = 1000): Promise<LogRecord[]> {
  return asRecords(await drainItems(spool, maxRecords));
}

const lines = (rs: readonly LogRecord[]) => rs.map((r) => r.line.toString());
const segmentFiles = (dir: string) => fs.readdirSync(dir).filter((n) => n.endsWith('.seg')).sort();

describe('crc32', () => {
  it('matches the IEEE check value and a bytewise reference on random data', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
    const table = Array.from({ length: 256 }, (_, n) => {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      return c >>> 0;
    });
    const reference = (b: Uint8Array) => {
      let c = 0xffffffff;
      for (const x of b) c = (table[(c ^ x) & 0xff] as number) ^ (c >>> 8);
      return (c ^ 0xffffffff) >>> 0;
    };
    let seed = 7;
    for (const len of [1, 7, 8, 9, 15, 16, 17, 100, 511, 512, 513, 515, 1000, 4099, 70_000]) {
      const b = Buffer.alloc(len);
      for (let i = 0; i < len; i++) b[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
      expect(crc32(b)).toBe(reference(b));
      const cut = Math.min(3, len);
      expect(crc32(b, cut, len, crc32(b, 0, cut))).toBe(reference(b)); // continues across calls
      expect(crc32Js(b, 0, len, 0)).toBe(reference(b)); // the JS path alone, also where zlib is used
    }
  });
});

describe('Spool', () => {
  it('round-trips every record field exactly: time_nano beyond 2^53, binary lines, source, truncated, seq, metadata', async () => {
    const other: ContainerMeta = {
      id: 'ab'.repeat(32), name: 'wéb/1', imageName: 'nginx:1.27', imageId: `sha256:${'c'.repeat(64)}`, tag: 'tag {{x}}',
      attrs: { team: 'ops', 'k=v': 'a"b' }, labels: { 'com.example.a': 'x', 'ünï': '✓' }, hostname: 'host-2',
    };
    const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const records: LogRecord[] = [
      record('plain'),
      { container, source: 'stderr', timeNano: bigIntToParts((1n << 63n) - 1n), line: binary, truncated: true, seq: 0xffffffff },
      { container: other, source: 'stdout', timeNano: bigIntToParts(1795452233042059423n), line: Buffer.alloc(0), truncated: false, seq: 3 },
      { container: other, source: 'stderr', timeNano: bigIntToParts((1n << 53n) + 1n), line: Buffer.from([0xff, 0xfe, 0x00, 0x0a, 0xc3]), truncated: false, seq: 0 },
      { container, source: 'stdout', timeNano: bigIntToParts(0n), line: Buffer.from('x'.repeat(70_000)), truncated: true, seq: 1 },
    ];
    const dir = tmpDir();
    const { spool } = openSpool(dir);
    for (const r of records) spool.append(r);
    await spool.close();
    // A new process reads the files.
    const { spool: again, drops } = openSpool(dir);
    const back = await drain(again);
    expect(back).toEqual(records);
    expect(back.map(recordId)).toEqual(records.map(recordId));
    expect(back.map((r) => partsToBigInt(r.timeNano))).toEqual(records.map((r) => partsToBigInt(r.timeNano)));
    expect(drops).toEqual({});
    // Records of one container share one metadata object, and each metadata is stored once per segment.
    expect(back[0]?.container).toBe(back[1]?.container);
    const file = fs.readFileSync(path.join(dir, segmentFiles(dir)[0] as string));
    expect(file.toString('latin1').split(container.id).length - 1).toBe(1);
    expect(file.toString('latin1').split(other.id).length - 1).toBe(1);
  });

  it('stores a container once per segment also when each stream has its own (equal) metadata object', async () => {
    const dir = tmpDir();
    const { spool } = openSpool(dir);
    for (let i = 0; i < 50; i++) spool.append(record(`r${i}`, i, { container: { ...container } }));
    await spool.close();
    const file = fs.readFileSync(path.join(dir, segmentFiles(dir)[0] as string));
    expect(file.toString('latin1').split(container.id).length - 1).toBe(1);
    expect(lines(await drain(openSpool(dir).spool))).toEqual(Array.from({ length: 50 }, (_, i) => `r${i}`));
  });

  it('skips a record whose checksum fails, counts it, and reads on (also after a damaged length and a torn tail)', async () => {
    const dir = tmpDir();
    const { spool } = openSpool(dir);
    for (let i = 0; i < 10; i++) spool.append(record(`line-${i}-${'p'.repeat(20)}`, i));
    spool.flush();
    await spool.close();
    const file = path.join(dir, segmentFiles(dir)[0] as string);
    const bytes = fs.readFileSync(file);
    const at = (i: number) => bytes.indexOf(`line-${i}-`);
    bytes.writeUInt8((bytes.readUInt8(at(3) + 2) ^ 0x20), at(3) + 2); // a flipped bit in record 3's line
    bytes.writeUInt32BE(0x7fff, at(6) - 19 - 8); // record 6's length field
    // Torn tail: the file ends inside record 9 (its SEAL gone too, as after a crash mid-write).
    fs.writeFileSync(file, bytes.subarray(0, at(9) + 5));
    const { spool: again, drops } = openSpool(dir);
    const back = await drain(again);
    expect(lines(back)).toEqual([0, 1, 2, 4, 5, 7, 8].map((i) => `line-${i}-${'p'.repeat(20)}`));
    expect(drops).toEqual({ 'spool-corrupt': 3 });
    expect(again.hasUnread()).toBe(false);
  });

  it('when full, deletes whole oldest segments and counts their unread records as spool-full', async () => {
    const dir = tmpDir();
    const maxBytes = 20_000;
    const { spool, drops } = openSpool(dir, { maxBytes, segmentBytes: 4000 });
    const n = 500;
    for (let i = 0; i < n; i++) {
      spool.append(record(`rec-${i}`, i));
      expect(spool.bytes).toBeLessThanOrEqual(maxBytes);
    }
    spool.flush();
    const onDisk = segmentFiles(dir).reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0);
    expect(onDisk).toBeLessThanOrEqual(maxBytes);
    const back = await drain(spool);
    // What is left is the newest records, contiguous and in order; every other one is counted.
    expect(back.length).toBeGreaterThan(100);
    expect(lines(back)).toEqual(Array.from({ length: back.length }, (_, k) => `rec-${n - back.length + k}`));
    expect(drops).toEqual({ 'spool-full': n - back.length });
  });

  it('counts only unread records of a dropped segment: records already handed to the reader are not dropped', async () => {
    const dir = tmpDir();
    const { spool, drops } = openSpool(dir, { maxBytes: 6000, segmentBytes: 2000 });
    const pad = 'x'.repeat(50);
    for (let i = 0; i < 10; i++) spool.append(record(`a${i}${pad}`, i));
    const first = await readItems(spool, 4);
    expect(first.kind).toBe('batch');
    for (let i = 10; i < 100; i++) spool.append(record(`a${i}${pad}`, i));
    const rest = await drain(spool);
    expect(4 + rest.length + (drops['spool-full'] ?? 0)).toBe(100);
    expect(drops['spool-full']).toBeGreaterThan(0);
  });

  it('a segment dropped while a read is in it: the reader is told to forget what it was given, and those records count as dropped', async () => {
    const dir = tmpDir();
    const { spool, drops } = openSpool(dir, { maxBytes: 6000, segmentBytes: 2000 });
    const pad = 'x'.repeat(50);
    for (let i = 0; i < 10; i++) spool.append(record(`a${i}${pad}`, i));
    spool.flush();
    const given: string[] = [];
    let discarded = 0;
    let appended = 10;
    const reader: SpoolReader = {
      record: (r) => {
        given.push(r.line.toString());
        // While the reader holds two records of the oldest segment, new records fill the spool (in the
        // runner this happens while a read waits for the disk).
        if (given.length === 2) while (appended < 100) spool.append(record(`a${appended}${pad}`, appended++));
      },
      encoded: () => { throw new Error('no encoded entries were written'); },
      discard: () => {
        discarded += given.length;
        given.length = 0;
      },
    };
    const r = await spool.read(reader, 1000, 1 << 30, true);
    expect(discarded).toBe(2);
    expect(r.kind === 'batch' ? r.batch.count : 0).toBe(given.length);
    if (r.kind === 'batch') spool.ack(r.batch.end);
    const rest = await drain(spool);
    const delivered = [...given, ...lines(rest)];
    // Newest records, in order, nothing twice; the two discarded are among those counted as dropped.
    expect(new Set(delivered).size).toBe(delivered.length);
    expect(delivered).toEqual(Array.from({ length: delivered.length }, (_, k) => `a${100 - delivered.length + k}${pad}`));
    expect(drops).toEqual({ 'spool-full': 100 - delivered.length });
  });

  it('on ENOSPC drops the oldest segment to make room, retries, and counts disk-full; never throws', async () => {
    const dir = tmpDir();
    let full = false;
    const io: SpoolIo = {
      ...nodeSpoolIo,
      writeSync: (fd, buf, off, len, pos) => {
        if (full) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        return nodeSpoolIo.writeSync(fd, buf, off, len, pos);
      },
    };
    const { spool, drops } = openSpool(dir, { segmentBytes: 2000, io });
    for (let i = 0; i < 60; i++) spool.append(record(`old-${i}`, i));
    spool.flush();
    const segmentsBefore = segmentFiles(dir).length;
    expect(segmentsBefore).toBeGreaterThan(1);
    full = true;
    expect(() => { for (let i = 0; i < 5; i++) spool.append(record(`lost-${i}`, 100 + i)); spool.flush(); }).not.toThrow();
    // The oldest segment was deleted to make room (its records counted), the write still failed (counted).
    expect(segmentFiles(dir).length).toBe(segmentsBefore - 1);
    expect(drops['disk-full']).toBeGreaterThanOrEqual(5 + 1);
    full = false;
    for (let i = 0; i < 3; i++) spool.append(record(`new-${i}`, 200 + i));
    const back = lines(await drain(spool));
    expect(back.filter((l) => l.startsWith('lost-'))).toEqual([]);
    expect(back.slice(-3)).toEqual(['new-0', 'new-1', 'new-2']);
    expect(back.length + (drops['disk-full'] ?? 0)).toBe(60 + 5 + 3);
  });

  it('a spool directory that cannot be created (a file in its path) counts spool-error and never throws', () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-'));
    fs.writeFileSync(path.join(base, 'file'), 'x');
    const { spool, drops } = openSpool(path.join(base, 'file', 'sp'));
    expect(() => { for (let i = 0; i < 3; i++) spool.append(record(`r${i}`)); spool.flush(); }).not.toThrow();
    expect(drops).toEqual({ 'spool-error': 3 });
  });

  it('keeps the acknowledged point across a crash: only the batch read but not acknowledged comes back, with the same ids', async () => {
    const dir = tmpDir();
    const { spool } = openSpool(dir, { segmentBytes: 3000 });
    const all = Array.from({ length: 100 }, (_, i) => record(`c${i}`, i));
    for (const r of all) spool.append(r);
    const acked: LogRecord[] = [];
    for (let b = 0; b < 5; b++) {
      const r = await readItems(spool, 10);
      if (r.kind !== 'batch') throw new Error('expected a batch');
      acked.push(...asRecords(r.batch.records));
      spool.ack(r.batch.end);
    }
    const inFlight = await readItems(spool, 10);
    if (inFlight.kind !== 'batch') throw new Error('expected a batch');
    spool.abandon(); // crash: no close, no sync
    const { spool: again } = openSpool(dir);
    const back = await drain(again, 10);
    expect(back.map(recordId)).toEqual(all.slice(acked.length).map(recordId));
    expect(back.slice(0, inFlight.batch.records.length).map(recordId)).toEqual(asRecords(inFlight.batch.records).map(recordId));
  });

  it('storeBefore puts records ahead of everything not yet acknowledged, also across a restart', async () => {
    const dir = tmpDir();
    const { spool } = openSpool(dir);
    for (let i = 0; i < 6; i++) spool.append(record(`s${i}`, 10 + i));
    const first = await readItems(spool, 2);
    if (first.kind !== 'batch') throw new Error('expected a batch');
    spool.ack(first.batch.end); // s0, s1 delivered
    await readItems(spool, 2); // s2, s3 in flight, never acknowledged
    spool.storeBefore([record('m0', 0), record('m1', 1)]);
    await spool.close();
    const { spool: again } = openSpool(dir);
    expect(lines(await drain(again))).toEqual(['m0', 'm1', 's2', 's3', 's4', 's5']);
    await again.close();
    expect(fs.existsSync(dir)).toBe(false); // all delivered: nothing left behind
  });

  it('held records (write-through): the reader skips them, also mid-segment and across segments; after a crash they come back from the checkpoint on', async () => {
    const dir = tmpDir();
    const { spool, drops } = openSpool(dir, { segmentBytes: 600, flushPerTask: true });
    const other: ContainerMeta = { ...container, id: 'cd'.repeat(32), name: 'other' };
    // The reader is at the end of what it was given…
    for (let i = 0; i < 3; i++) spool.append(record(`u${i}`, i));
    expect(lines(await drain(spool))).toEqual(['u0', 'u1', 'u2']);
    // …then records held by the caller (a new container among them: its META entry is in the skipped part)…
    const ends = [];
    for (let i = 0; i < 12; i++) ends.push(spool.append(record(`h${i}`, 10 + i, i % 2 === 0 ? { container: other } : {}), true));
    expect(ends.every((e) => e !== undefined)).toBe(true);
    expect(spool.hasUnread()).toBe(false);
    // …then records only the spool has.
    for (let i = 0; i < 12; i++) spool.append(record(`n${i}`, 30 + i, i % 2 === 0 ? { container: other } : {}));
    expect(segmentFiles(dir).length).toBeGreaterThan(2);
    const back: LogRecord[] = [];
    for (let r = await readItems(spool, 5); r.kind === 'batch'; r = await readItems(spool, 5)) back.push(...asRecords(r.batch.records));
    expect(lines(back)).toEqual(Array.from({ length: 12 }, (_, i) => `n${i}`));
    expect(back[0]?.container.id).toBe(other.id);
    expect(drops).toEqual({});
    // Acknowledge the first five held ones only (the caller acknowledges in order), then crash:
    // everything after them comes back, held or not.
    spool.ack(ends[4] as NonNullable<(typeof ends)[number]>);
    spool.abandon();
    const { spool: again } = openSpool(dir);
    expect(lines(await drain(again))).toEqual([...Array.from({ length: 7 }, (_, i) => `h${5 + i}`), ...Array.from({ length: 12 }, (_, i) => `n${i}`)]);
  });

  it('stores a record as the sink encoded it (bytes) beside records, in order: read back as the same bytes, counted alike, across a restart, a SEAL and storeBefore', async () => {
    const dir = tmpDir();
    const { spool, drops } = openSpool(dir, { segmentBytes: 400 });
    const wire = (i: number) => Buffer.from(`{"id":"e${i}","message":"line ${i} é"}\n`);
    const written: SpoolItem[] = [];
    for (let i = 0; i < 20; i++) {
      const item = i % 3 === 0 ? record(`r${i}`, i) : wire(i);
      written.push(item);
      expect(spool.append(item)).toBeDefined();
    }
    expect(spool.append(Buffer.alloc(0))).toBeDefined(); // an empty encoding is still a record
    written.push(Buffer.alloc(0));
    expect(segmentFiles(dir).length).toBeGreaterThan(2); // sealed segments in between
    const text = (items: readonly SpoolItem[]) => items.map((x) => (x instanceof Uint8Array ? `bytes:${Buffer.from(x).toString()}` : `record:${x.line.toString()}`));
    const first = await readItems(spool, 4);
    if (first.kind !== 'batch') throw new Error('expected a batch');
    spool.ack(first.batch.end);
    spool.abandon(); // crash: the rest comes back after a restart (segments scanned and SEALs counted alike)
    const { spool: again } = openSpool(dir);
    expect(again.hasUnread()).toBe(true);
    again.storeBefore([wire(100), record('m', 101)]); // memory at a stop goes first
    await again.close();
    const { spool: third } = openSpool(dir);
    const back = await drainItems(third);
    expect(text(back)).toEqual(text([wire(100), record('m', 101), ...written.slice(first.batch.records.length)]));
    expect(text(first.batch.records)).toEqual(text(written.slice(0, first.batch.records.length)));
    expect(first.batch.records.length).toBeGreaterThan(1);
    expect(drops).toEqual({});
    await third.close();
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('held records in the segment the reader is in: skipped from where the reader stands', async () => {
    const dir = tmpDir();
    const { spool } = openSpool(dir);
    const other: ContainerMeta = { ...container, id: 'cd'.repeat(32), name: 'other' };
    spool.append(record('u0'));
    expect(lines(await drain(spool))).toEqual(['u0']);
    spool.append(record('h0', 1, { container: other }), true);
    spool.append(record('h1', 2), true);
    spool.append(record('n0', 3, { container: other }));
    spool.append(record('n1', 4));
    const back = await drain(spool);
    expect(lines(back)).toEqual(['n0', 'n1']);
    expect(back[0]?.container.id).toBe(other.id); // its META entry was among the skipped bytes
    expect(segmentFiles(dir).length).toBe(1);
  });

  it('with flushPerTask, appended records are in the file at the end of the task, before the next event-loop turn', async () => {
    const dir = tmpDir();
    const { spool } = openSpool(dir, { flushPerTask: true });
    spool.append(record('a'), true);
    spool.append(record('b'), true);
    const file = () => path.join(dir, segmentFiles(dir)[0] as string);
    expect(fs.statSync(file()).size).toBe(8); // staged: only the header so far
    await Promise.resolve();
    expect(fs.readFileSync(file()).includes('b')).toBe(true);
    spool.abandon();
  });

  it('a held record that cannot be stored is not counted as dropped (its caller still has it)', () => {
    const dir = tmpDir();
    const { spool, drops } = openSpool(dir, { maxBytes: 200 });
    expect(spool.append(record('x'.repeat(500)), true)).toBeUndefined();
    expect(spool.append(record('x'.repeat(500)))).toBeUndefined();
    expect(drops).toEqual({ 'spool-full': 1 });
  });

  it('reset() after everything was delivered removes the segments; reopening an empty spool removes its directory', async () => {
    const dir = tmpDir();
    const { spool } = openSpool(dir, { segmentBytes: 2000 });
    for (let i = 0; i < 50; i++) spool.append(record(`r${i}`, i));
    await drain(spool);
    expect(spool.hasUnread()).toBe(false);
    spool.reset();
    expect(segmentFiles(dir)).toEqual([]);
    expect(spool.bytes).toBe(0);
    spool.abandon();
    openSpool(dir);
    expect(fs.existsSync(dir)).toBe(false);
  });
});
