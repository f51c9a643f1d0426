import { describe, expect, it } from 'vitest';
import { encodeEntry, frame } from '../src/entry.js';
import { FrameSplitter } from '../src/framing.js';
import { bigIntToParts } from '../src/time.js';

function recordedStream(): { bytes: Buffer; messages: Buffer[] } {
  const messages: Buffer[] = [];
  const lines = ['line1', '', 'x'.repeat(300), 'ünïcødé', 'y'.repeat(5000), 'z'];
  lines.forEach((l, i) => messages.push(Buffer.from(encodeEntry(i % 2 ? 'stderr' : 'stdout', bigIntToParts(1795452233042059423n + BigInt(i)), Buffer.from(l)))));
  // A zero-length frame is a valid (all-default) LogEntry.
  messages.push(Buffer.alloc(0));
  return { bytes: Buffer.concat(messages.map(frame)), messages };
}

// Compared as one string: deep-equality of thousands of Buffers is slow.
const hex = (bufs: Buffer[]) => bufs.map((b) => b.toString('hex')).join('|');

function split(chunks: Buffer[], max?: number) {
  const got: Buffer[] = [];
  const framed: Buffer[] = [];
  const oversize: number[] = [];
  const s = new FrameSplitter({
    onFrame: (buf, start, end) => { got.push(Buffer.from(buf.subarray(start + 4, end))); framed.push(Buffer.from(buf.subarray(start, end))); },
    onOversize: (n) => oversize.push(n),
  }, max);
  for (const c of chunks) s.push(c);
  return { got, framed, oversize, s };
}

describe('FrameSplitter', () => {
  const { bytes, messages } = recordedStream();

  it('yields every frame for every single split point of a recorded stream', () => {
    const want = hex(messages);
    const failures: number[] = [];
    for (let cut = 0; cut <= bytes.length; cut++) {
      const { got, s } = split([bytes.subarray(0, cut), bytes.subarray(cut)]);
      if (hex(got) !== want || !s.atBoundary) failures.push(cut);
    }
    expect(failures).toEqual([]);
  });

  it('yields every frame when fed one byte at a time and in random chunk sizes', () => {
    expect(hex(split([...bytes].map((b) => Buffer.from([b]))).got)).toBe(hex(messages));
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 97) + 1;
    for (let round = 0; round < 50; round++) {
      const chunks: Buffer[] = [];
      for (let p = 0; p < bytes.length;) { const n = rnd(); chunks.push(bytes.subarray(p, p + n)); p += n; }
      expect(hex(split(chunks).got)).toBe(hex(messages));
    }
  });

  it('hands out frames that fit in a chunk as the chunk and their offsets in it, without copying', () => {
    const handed: { buf: Buffer; start: number; end: number }[] = [];
    const s = new FrameSplitter({ onFrame: (buf, start, end) => handed.push({ buf, start, end }), onOversize: () => undefined });
    s.push(bytes);
    expect(handed.every((h) => h.buf === bytes)).toBe(true);
    expect(hex(handed.map((h) => h.buf.subarray(h.start + 4, h.end)))).toBe(hex(messages));
    expect(handed[handed.length - 1]?.end).toBe(bytes.length);
  });

  it('passes the framed bytes (with the length prefix) alongside the message', () => {
    const { framed } = split([bytes.subarray(0, 10), bytes.subarray(10)]);
    expect(Buffer.concat(framed).equals(bytes)).toBe(true);
  });

  it('reports a length no dockerd frame has, and goes on from the next frame start', () => {
    const big = Buffer.alloc(2000, 1);
    const head = Buffer.alloc(4); head.writeUInt32BE(big.length);
    const stream = Buffer.concat([frame(messages[0] as Buffer), head, big, frame(messages[2] as Buffer)]);
    for (const cut of [2, 6, 100, 2004, stream.length - 3]) {
      const { got, oversize, s } = split([stream.subarray(0, cut), stream.subarray(cut)], 1000);
      expect(oversize).toEqual([2000]);
      expect(got).toEqual([messages[0], messages[2]]);
      expect(s.atBoundary).toBe(true);
    }
  });

  it('does not trust or buffer a huge declared length (it would swallow 4 GiB of stream)', () => {
    const head = Buffer.alloc(4); head.writeUInt32BE(0xfffffff0);
    const { oversize, s } = split([head, Buffer.alloc(65536)]);
    expect(oversize).toEqual([0xfffffff0]);
    expect(s.bufferedBytes).toBe(0);
    expect(s.atBoundary).toBe(false);
  });

  it('reports a stream that stops mid-frame', () => {
    const { s } = split([bytes.subarray(0, bytes.length - 1)]);
    expect(s.atBoundary).toBe(false);
    expect(s.bufferedBytes).toBeGreaterThan(0);
  });
});

describe('FrameSplitter resync and carry', () => {
  const lines = Array.from({ length: 50 }, (_, i) => `line ${i} ${'x'.repeat(i * 7)}`);
  const frames = lines.map((l, i) => frame(encodeEntry(i % 3 ? 'stdout' : 'stderr', bigIntToParts(1795452233042059423n + BigInt(i)), Buffer.from(l))));
  const stream = Buffer.concat(frames);

  function run(setup: (s: FrameSplitter) => void, chunks: Buffer[]) {
    const got: string[] = [];
    let skipped = 0;
    const s = new FrameSplitter({ onFrame: (buf, start, end) => got.push(buf.toString('latin1', start + 4, end)), onOversize: () => undefined, onResyncSkipped: (n) => { skipped += n; } });
    setup(s);
    for (const c of chunks) s.push(c);
    return { got, skipped, s };
  }

  it('after starting inside a frame, skips to the next frame start and loses only that frame', () => {
    const offsets = frames.map((_, i) => frames.slice(0, i).reduce((n, f) => n + f.length, 0));
    for (const k of [1, 5, 17, 30]) {
      const cutInside = (offsets[k] as number) + 3 + (k % 5);
      const { got, skipped } = run((s) => s.startResync(), [stream.subarray(cutInside, cutInside + 7), stream.subarray(cutInside + 7)]);
      expect(got).toHaveLength(frames.length - k - 1);
      expect(skipped).toBe((offsets[k + 1] as number) - cutInside);
    }
  });

  it('at a frame boundary, resync skips nothing', () => {
    const { got, skipped } = run((s) => s.startResync(), [stream]);
    expect(got).toHaveLength(frames.length);
    expect(skipped).toBe(0);
  });

  it('a carry handed to the next reader continues the stream exactly', () => {
    for (const cut of [3, 10, 200, stream.length - 5]) {
      const first = run(() => undefined, [stream.subarray(0, cut)]);
      const carry = first.s.carry();
      expect(carry).toBeDefined();
      const second = run((s) => s.push(carry as Buffer), [stream.subarray(cut)]);
      expect([...first.got, ...second.got]).toHaveLength(frames.length);
      expect(second.s.atBoundary).toBe(true);
    }
  });

  const offsets = frames.map((_, i) => frames.slice(0, i).reduce((n, f) => n + f.length, 0));
  const textOf = (i: number) => Buffer.from(encodeEntry(i % 3 ? 'stdout' : 'stderr', bigIntToParts(1795452233042059423n + BigInt(i)), Buffer.from(lines[i] as string))).toString('latin1');

  /** A reader that read `stream[0, cut)` stopped; the next one gets its carry, checks the join, and reads `stream[from, …)`. */
  function rejoin(cut: number, from: number, chunk = 4096) {
    const first = run(() => undefined, [stream.subarray(0, cut)]);
    const carry = first.s.carry() as Buffer;
    const rest: Buffer[] = [];
    for (let p = from; p < stream.length; p += chunk) rest.push(stream.subarray(p, Math.min(p + chunk, stream.length)));
    const second = run((s) => { s.push(carry); s.expectJoin(); }, rest);
    second.s.endOfStream();
    return { first, second };
  }

  it('after expectJoin, a carry continued by the right bytes yields every frame, for every cut point and chunking', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const { first, second } = rejoin(cut, cut, cut % 2 ? 1 : 4096);
      expect([...first.got, ...second.got], `cut ${cut}`).toEqual(frames.map((_, i) => textOf(i)));
      expect(second.skipped).toBe(0);
      expect(second.s.atBoundary).toBe(true);
    }
  });

  it('after expectJoin, when a read was lost between the carry and the next bytes, no entry is made of both: the carry is dropped and the splitter resyncs', () => {
    for (let cut = 0; cut < stream.length; cut += 7) {
      for (const lost of [1, 4, 13, 100, 777, 3000]) {
        if (cut + lost >= stream.length) continue;
        const { first, second } = rejoin(cut, cut + lost);
        const whole = first.got.length;
        // Exactly the frames that start at or after the first byte read again: nothing made up, nothing else lost.
        const expected = frames.map((_, i) => i).filter((i) => (offsets[i] as number) >= cut + lost).map(textOf);
        expect(first.got, `cut ${cut}`).toEqual(frames.slice(0, whole).map((_, i) => textOf(i)));
        expect(second.got, `cut ${cut} lost ${lost}`).toEqual(expected);
      }
    }
  });

  it('holds the bytes of an unchecked join until enough arrived, hands them on in carry(), and lets them through at the end of the stream', () => {
    const cut = (offsets[10] as number) + 5;
    const end = offsets[11] as number; // the carried frame's end: nothing follows yet to check it by
    const held = run((s) => { s.push(stream.subarray(0, cut)); s.expectJoin(); }, [stream.subarray(cut, end)]);
    expect(held.got).toHaveLength(10);
    const carry = held.s.carry() as Buffer;
    expect(carry.equals(stream.subarray(offsets[10] as number, end))).toBe(true);
    held.s.endOfStream();
    expect(held.got).toHaveLength(11);
    expect(held.s.atBoundary).toBe(true);
  });

  it('keeps memory bounded while no frame start appears', () => {
    let skipped = 0;
    const s = new FrameSplitter({ onFrame: () => undefined, onOversize: () => undefined, onResyncSkipped: (n) => { skipped += n; } });
    s.startResync();
    for (let i = 0; i < 40; i++) s.push(Buffer.alloc(65536, 0x41));
    expect(skipped).toBeGreaterThan(0);
    expect(s.carry()).toBeUndefined();
  });
});
