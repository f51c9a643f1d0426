/**
 * One micro-benchmark variant, in its own process (so one variant's JIT state cannot help or hurt the
 * next). argv[2] is JSON: { variant, file, app, passes, chunk }. Prints JSON: { ms: [per pass], frames, bytes }.
 *
 * Variants:
 *  - fifo-read: `cat file > fifo`, read with a net.Socket on an O_NONBLOCK fd, bytes discarded (the floor).
 *  - fifo-decode: the same read, each chunk through shiplog's FrameSplitter + decodeEntryAt.
 *  - split: in memory, FrameSplitter only (a sink that does nothing).
 *  - decode-at: in memory, FrameSplitter + decodeEntryAt (src/entry.ts, the FIFO reader's path: the
 *    frame's offsets in the chunk, no view; whole lines decoded by hand, anything else by protobufjs).
 *  - decode-static: the same with protobufjs' static code for every frame (decodeWithProtobufAt; trees
 *    from before the hand-decoded path have only decodeEntryAt, which was that).
 *  - decode-reflect: in memory, FrameSplitter + protobufjs reflection (loadSync('proto/entry.proto')).
 * `chunk`: bytes per chunk handed to the splitter (65536 = a full pipe read), or 0 = one frame per
 * chunk (what a reader mostly gets from dockerd, which writes each frame with its own write()).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const cfg = JSON.parse(process.argv[2]);
const { FrameSplitter } = await import(pathToFileURL(path.join(cfg.app, 'dist/src/framing.js')).href);
const { decodeEntryAt, decodeWithProtobufAt } = await import(pathToFileURL(path.join(cfg.app, 'dist/src/entry.js')).href);
const protobuf = (await import(pathToFileURL(path.join(cfg.app, 'node_modules/protobufjs/index.js')).href)).default;

let checksum = 0;
let frames = 0;

function decodeReflectFactory() {
  const T = protobuf.loadSync(path.join(cfg.app, 'proto/entry.proto')).lookupType('LogEntry');
  const EMPTY = new Uint8Array(0);
  // The same fields decodeEntryAt returns, from the reflection-generated decoder.
  return (buf, start, end) => {
    const e = T.decode(buf.subarray(start, end));
    const t = e.timeNano;
    const meta = e.partialLogMetadata;
    return {
      source: e.source,
      timeNano: typeof t === 'number' ? { low: t >>> 0, high: Math.floor(t / 4294967296) } : (t ?? { low: 0, high: 0 }),
      line: e.line ?? EMPTY,
      partial: e.partial === true,
      partialId: meta?.id ?? '',
      partialOrdinal: meta?.ordinal ?? 0,
      partialLast: meta?.last === true,
    };
  };
}

function makeSink(decode) {
  return {
    onFrame(buf, start, end) {
      frames++;
      if (decode !== undefined) {
        const e = decode(buf, start + 4, end);
        checksum = (checksum + e.line.length + (e.timeNano.low & 0xff) + e.source.length) | 0;
      }
    },
    onOversize() { throw new Error('oversize frame in a recorded stream'); },
  };
}

function chunksOf(data, chunk) {
  const out = [];
  if (chunk > 0) {
    for (let at = 0; at < data.length; at += chunk) out.push(data.subarray(at, Math.min(data.length, at + chunk)));
    return out;
  }
  for (let at = 0; at < data.length;) {
    const len = 4 + data.readUInt32BE(at);
    out.push(data.subarray(at, at + len));
    at += len;
  }
  return out;
}

async function memPass(chunks, decode) {
  const splitter = new FrameSplitter(makeSink(decode));
  const t0 = performance.now();
  for (const c of chunks) splitter.push(c);
  return performance.now() - t0;
}

/** One pass through a FIFO: the writer is `cat`, a separate process, as dockerd is. */
function fifoPass(file, decode) {
  return new Promise((resolve, reject) => {
    const fifo = path.join(path.dirname(file), `micro-${process.pid}.fifo`);
    fs.rmSync(fifo, { force: true });
    const mk = spawn('mkfifo', [fifo]);
    mk.on('exit', () => {
      const fd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      // Our own write end keeps the pipe from reading as EOF before cat has opened it; closed when cat exits.
      const keeper = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
      const splitter = decode !== undefined ? new FrameSplitter(makeSink(decode)) : undefined;
      let bytes = 0;
      const socket = new net.Socket({ fd, readable: true, writable: false, allowHalfOpen: true });
      const t0 = performance.now();
      socket.on('data', (chunk) => {
        bytes += chunk.length;
        splitter?.push(chunk);
      });
      socket.on('end', () => {
        const ms = performance.now() - t0;
        socket.destroy();
        fs.rmSync(fifo, { force: true });
        resolve({ ms, bytes });
      });
      socket.on('error', reject);
      const cat = spawn('sh', ['-c', 'exec cat "$1" > "$2"', 'sh', file, fifo], { stdio: 'ignore' });
      cat.on('exit', () => fs.closeSync(keeper));
    });
  });
}

const data = fs.readFileSync(cfg.file);
const decodeReflect = cfg.variant === 'decode-reflect' ? decodeReflectFactory() : undefined;
const ms = [];
let framesPerPass = 0;
const passes = cfg.passes + 1; // the first one warms up and is not reported
for (let i = 0; i < passes; i++) {
  frames = 0;
  let t;
  switch (cfg.variant) {
    case 'fifo-read': t = (await fifoPass(cfg.file, undefined)).ms; break;
    case 'fifo-decode': t = (await fifoPass(cfg.file, decodeEntryAt)).ms; break;
    case 'split': t = await memPass(chunksOf(data, cfg.chunk), undefined); break;
    case 'decode-at': t = await memPass(chunksOf(data, cfg.chunk), decodeEntryAt); break;
    case 'decode-static': t = await memPass(chunksOf(data, cfg.chunk), decodeWithProtobufAt ?? decodeEntryAt); break;
    case 'decode-reflect': t = await memPass(chunksOf(data, cfg.chunk), decodeReflect); break;
    default: throw new Error(`unknown variant ${cfg.variant}`);
  }
  if (i > 0) ms.push(t);
  if (cfg.variant !== 'fifo-read') framesPerPass = frames;
}
process.stdout.write(`${JSON.stringify({ ms, frames: framesPerPass, bytes: data.length, checksum })}\n`);
