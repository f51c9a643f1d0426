/**
 * Micro benchmarks without docker: a recorded FIFO stream (made with src/entry.ts encodeEntry + frame,
 * as dockerd writes it) through shiplog's framing + decode, against just reading the same bytes
 * through a FIFO, and protobufjs static code against reflection. Each variant runs in its own process
 * (bench/micro-worker.mjs): one warm-up pass, then the median of `passes`.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { LINE_200 } from './e2e.mjs';
import { log, median, ROOT } from './lib.mjs';

/** Writes `count` frames of `lineOf(i)` to `file` with shiplog's own encoder; returns bytes written. */
async function record(app, file, count, lineOf) {
  const { encodeEntry, frame } = await import(pathToFileURL(path.join(app, 'dist/src/entry.js')).href);
  const fd = fs.openSync(file, 'w');
  const parts = [];
  let pending = 0;
  let bytes = 0;
  // A realistic time_nano (2026, 19 decimal digits) advancing ~1 µs per line.
  let low = 0x5a000000;
  const high = 0x18a00000;
  for (let i = 1; i <= count; i++) {
    low = (low + 997) >>> 0;
    const f = frame(encodeEntry(i % 7 === 0 ? 'stderr' : 'stdout', { low, high }, Buffer.from(lineOf(i))));
    parts.push(f);
    pending += f.length;
    if (pending >= 1 << 20) { fs.writeSync(fd, Buffer.concat(parts)); bytes += pending; parts.length = 0; pending = 0; }
  }
  fs.writeSync(fd, Buffer.concat(parts));
  fs.closeSync(fd);
  return bytes + pending;
}

const VARIANTS = [
  { key: 'fifo-read', chunk: 65536, label: 'FIFO read only (net.Socket, discard)' },
  { key: 'fifo-decode', chunk: 65536, label: 'FIFO read + FrameSplitter + decodeEntryAt' },
  { key: 'split', chunk: 65536, label: 'in memory: FrameSplitter only, 64 KiB chunks' },
  { key: 'decode-at', chunk: 65536, label: 'in memory: split + decodeEntryAt (whole lines by hand), 64 KiB chunks' },
  { key: 'decode-static', chunk: 65536, label: 'in memory: split + decode, protobufjs static code, 64 KiB chunks' },
  { key: 'decode-reflect', chunk: 65536, label: 'in memory: split + decode, reflection, 64 KiB chunks' },
  { key: 'decode-at', chunk: 0, label: 'in memory: split + decodeEntryAt (whole lines by hand), one frame per chunk' },
  { key: 'decode-static', chunk: 0, label: 'in memory: split + decode, protobufjs static code, one frame per chunk' },
  { key: 'decode-reflect', chunk: 0, label: 'in memory: split + decode, reflection, one frame per chunk' },
];

export async function runMicro({ app, work, scale }) {
  const dir = path.join(work, 'micro');
  fs.mkdirSync(dir, { recursive: true });
  const shortCount = Math.max(1000, Math.round(1_000_000 * scale));
  const longCount = Math.max(1000, Math.round(500_000 * scale));
  const streams = {
    short: { label: `${shortCount.toLocaleString('en')} short lines (seq)`, file: path.join(dir, 'short.frames'), count: shortCount, lineOf: (i) => String(i) },
    '200b': { label: `${longCount.toLocaleString('en')} lines of 199 B`, file: path.join(dir, '200b.frames'), count: longCount, lineOf: () => LINE_200 },
  };
  const out = { streams: {}, variants: VARIANTS.map((v) => ({ key: v.key, chunk: v.chunk, label: v.label })), results: [] };
  for (const [key, s] of Object.entries(streams)) {
    const bytes = await record(app, s.file, s.count, s.lineOf);
    out.streams[key] = { label: s.label, frames: s.count, bytes };
    for (const v of VARIANTS) {
      const passes = v.key.startsWith('fifo') ? 3 : 5;
      const stdout = execFileSync(process.execPath, [path.join(ROOT, 'bench/micro-worker.mjs'), JSON.stringify({ variant: v.key, file: s.file, app, passes, chunk: v.chunk })], { encoding: 'utf8', maxBuffer: 1 << 20 });
      const r = JSON.parse(stdout);
      if (v.key !== 'fifo-read' && r.frames !== s.count) throw new Error(`micro ${v.key}: ${r.frames} frames of ${s.count}`);
      const ms = median(r.ms);
      const res = { stream: key, variant: v.key, chunk: v.chunk, label: v.label, ms, passes: r.ms, framesPerSec: (s.count / ms) * 1000, mbPerSec: (bytes / 1e6 / ms) * 1000 };
      out.results.push(res);
      log(`  micro ${key} ${v.label}: ${ms.toFixed(0)} ms, ${(res.framesPerSec / 1e6).toFixed(2)} M frames/s, ${res.mbPerSec.toFixed(0)} MB/s`);
    }
    fs.rmSync(s.file, { force: true });
  }
  return out;
}
