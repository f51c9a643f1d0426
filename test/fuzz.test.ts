/**
 * Fuzz: random and mutated frames through the splitter and decoder, and malformed bodies through the
 * plugin API. Seeded, so a failure reproduces. Nothing may throw out, hang, or grow without bound;
 * every input is either processed or counted.
 */
import { describe, expect, it } from 'vitest';
import { decodeEntryAt, encodeEntry, frame } from '../src/entry.js';
import { FrameSplitter } from '../src/framing.js';
import { bigIntToParts } from '../src/time.js';
import { driverFixture, info } from './support/driver-fixture.js';

/** xorshift32: small, seeded, fast. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
  return { next, int: (n: number) => next() % n, bytes: (n: number) => Buffer.from(Array.from({ length: n }, () => next() & 0xff)) };
}

describe('decoder fuzz', () => {
  it('1M random and mutated frames: no throw escapes, every frame decoded or counted, memory flat', () => {
    const r = rng(20261124);
    const valid = Array.from({ length: 64 }, (_, i) => Buffer.from(encodeEntry(i % 2 ? 'stdout' : 'stderr', bigIntToParts(1795452233042059423n + BigInt(i)), r.bytes(r.int(300)))));
    let decoded = 0;
    let corrupt = 0;
    let oversize = 0;
    let framesSeen = 0;
    let resyncSkipped = 0;
    // Wired as LogStream wires it: a frame that does not decode makes the splitter look for the next frame start.
    const splitter: FrameSplitter = new FrameSplitter({
      onFrame: (buf, start, end) => {
        framesSeen++;
        try { decodeEntryAt(buf, start + 4, end); decoded++; } catch { corrupt++; splitter.resyncWithin(buf.subarray(start + 4, end)); }
      },
      onOversize: () => { oversize++; },
      onResyncSkipped: (n) => { resyncSkipped += n; },
    }, 1_000_000);
    const heapBefore = process.memoryUsage().heapUsed;
    const total = 1_000_000;
    let batch: Buffer[] = [];
    let validFed = 0;
    for (let i = 0; i < total; i++) {
      const base = valid[r.int(valid.length)] as Buffer;
      let msg: Buffer;
      switch (r.int(4)) {
        case 0: msg = base; validFed++; break;
        case 1: { msg = Buffer.from(base); for (let k = 0; k < 3; k++) if (msg.length) msg[r.int(msg.length)] = r.next() & 0xff; break; }
        case 2: msg = Buffer.from(base.subarray(0, r.int(base.length + 1))); break;
        default: msg = r.bytes(r.int(64)); break;
      }
      const f = frame(msg);
      // Occasionally corrupt the length itself (mostly to something small; rarely huge).
      if (r.int(5000) === 0) f.writeUInt32BE(r.int(8) === 0 ? 0xfffffff0 : r.int(2_000_000), 0);
      batch.push(f);
      if (batch.length === 512) {
        const stream = Buffer.concat(batch);
        // Feed in random chunk sizes, as a FIFO delivers.
        for (let p = 0; p < stream.length;) { const n = 1 + r.int(65536); splitter.push(stream.subarray(p, p + n)); p += n; }
        batch = [];
      }
    }
    const heapAfter = process.memoryUsage().heapUsed;
    console.log(`[fuzz] fed=${total} intact=${validFed} frames=${framesSeen} decoded=${decoded} corrupt=${corrupt} oversize=${oversize} resync-skipped-bytes=${resyncSkipped}`);
    expect(decoded + corrupt).toBe(framesSeen);
    // A wrong length costs only the frames around it: the splitter finds its way back, so nearly
    // every intact frame is still decoded.
    expect(decoded).toBeGreaterThan(validFed * 0.9);
    expect(corrupt).toBeGreaterThan(0);
    expect(splitter.bufferedBytes).toBeLessThanOrEqual(1_000_004);
    expect(heapAfter - heapBefore).toBeLessThan(200 * 1024 * 1024);
  });
});

describe('API fuzz', () => {
  it('10k malformed bodies: every one answered with JSON carrying Err, the server stays up', async () => {
    const fx = await driverFixture();
    try {
      const r = rng(7);
      const urls = ['/LogDriver.StartLogging', '/LogDriver.StopLogging', '/LogDriver.ReadLogs', '/Plugin.Activate', '/LogDriver.Capabilities', '/LogDriver.Nope'];
      const shapes: (() => string)[] = [
        () => r.bytes(r.int(200)).toString('latin1'),
        () => JSON.stringify({ File: r.int(2) ? r.bytes(10).toString('hex') : r.int(100), Info: r.int(2) ? null : { ContainerID: r.bytes(r.int(40)).toString('hex'), Config: { [r.bytes(3).toString('hex')]: 'x' } } }),
        () => JSON.stringify({ Info: info(), Config: { Since: r.bytes(8).toString('hex'), Tail: r.int(3) ? 'x' : -1, Follow: 'yes' } }),
        () => JSON.stringify({ File: `/run/docker/logging/${r.bytes(32).toString('hex')}`, Info: { ...info(), Config: { 'max-size': r.bytes(4).toString('hex') } } }),
        () => JSON.stringify([1, 2, 3]),
        () => `{"File": "${'\\u0000'.repeat(r.int(5))}"`,
        () => JSON.stringify({ File: '../../etc/passwd', Info: info() }),
      ];
      let answered = 0;
      for (let i = 0; i < 10_000; i++) {
        const url = urls[r.int(urls.length)] as string;
        const body = (shapes[r.int(shapes.length)] as () => string)();
        const res = await fx.app.inject({ method: 'POST', url, payload: body });
        const json = res.json() as Record<string, unknown>;
        const ok = url === '/LogDriver.ReadLogs' && res.statusCode === 200
          || (typeof json.Err === 'string')
          || (url === '/Plugin.Activate' && Array.isArray(json.Implements))
          || (url === '/LogDriver.Capabilities' && typeof json.Cap === 'object');
        if (!ok) throw new Error(`unexpected answer ${res.statusCode} ${res.body} to ${url} ${body}`);
        answered++;
      }
      expect(answered).toBe(10_000);
      expect(fx.driver.liveStreams).toBe(0);
      expect((await fx.post('/Plugin.Activate')).json()).toEqual({ Implements: ['LogDriver'] });
    } finally {
      await fx.close();
    }
  });
});
