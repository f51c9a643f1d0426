/**
 * Checks the prototypes against the code they would replace, from the built dist/:
 *   node bench/prototypes/verify.mjs      (after npm run build)
 * decodeEntryFast vs decodeEntry (protobufjs static code) on random entries, partial metadata
 * included, and on truncated input (both must throw); readLogsFrameDirect vs readLogsFrame bytes.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { decodeEntryFast } from './decode-entry.mjs';
import { readLogsFrameDirect } from './readlogs-frame.mjs';

const dist = path.resolve(import.meta.dirname, '../../dist/src');
const imp = (p) => import(pathToFileURL(path.join(dist, p)).href);
const { decodeEntry } = await imp('entry.js');
const { LogEntry } = await imp('generated/entry.js');
const { readLogsFrame } = await imp('store/readlogs-frame.js');
const rnd = (k) => Math.floor(Math.random() * k);
const same = (a, b) => a.source === b.source && (a.timeNano.low | 0) === (b.timeNano.low | 0) && (a.timeNano.high | 0) === (b.timeNano.high | 0)
  && Buffer.compare(Buffer.from(a.line), Buffer.from(b.line)) === 0 && a.partial === b.partial && a.partialId === b.partialId
  && a.partialOrdinal === b.partialOrdinal && a.partialLast === b.partialLast;

let decoded = 0;
for (let i = 0; i < 200_000; i++) {
  const obj = {
    source: ['stdout', 'stderr', '', 'other', 'stdoüt'][rnd(5)],
    timeNano: { low: rnd(2 ** 32) | 0, high: [0, 1, rnd(2 ** 31), -1, 0x18a00000][rnd(5)], unsigned: false },
    line: Buffer.alloc(rnd(300), 'x'),
  };
  if (rnd(3) === 0) { obj.partial = true; obj.partialLogMetadata = { last: rnd(2) === 1, id: ['', 'abc', 'ïd'][rnd(3)], ordinal: [0, 1, 300, -5, 2 ** 31 - 1][rnd(5)] }; }
  const bytes = LogEntry.encode(obj).finish();
  const a = decodeEntryFast(bytes);
  const b = decodeEntry(bytes);
  if (!same(a, b)) throw new Error(`decode differs: ${JSON.stringify({ obj, a, b })}`);
  decoded++;
}
let bothThrew = 0;
for (let i = 0; i < 20_000; i++) {
  const bytes = LogEntry.encode({ source: 'stdout', timeNano: { low: rnd(2 ** 32) | 0, high: 0x18a00000, unsigned: false }, line: Buffer.alloc(50, 'y') }).finish();
  const cut = bytes.subarray(0, rnd(bytes.length));
  let ta = false;
  let tb = false;
  try { decodeEntryFast(cut); } catch { ta = true; }
  try { decodeEntry(cut); } catch { tb = true; }
  if (ta !== tb) throw new Error(`truncated input: fast ${ta ? 'threw' : 'did not throw'}, protobufjs ${tb ? 'threw' : 'did not'}`);
  if (ta) bothThrew++;
}
let frames = 0;
for (let i = 0; i < 200_000; i++) {
  const e = {
    source: ['stdout', 'stderr'][rnd(2)], timeNano: rnd(50) === 0 ? { low: 0, high: 0 } : { low: rnd(2 ** 32) | 0, high: [0, 1, 0x18a00000, rnd(2 ** 31)][rnd(4)] },
    line: Buffer.alloc(rnd(400), 'z'), partial: rnd(3) === 0, partialLast: rnd(2) === 0, partialId: '', partialOrdinal: 0,
  };
  if (Buffer.compare(readLogsFrame(e), readLogsFrameDirect(e)) !== 0) throw new Error(`frame differs for ${JSON.stringify(e)}`);
  frames++;
}
console.log(`decodeEntryFast = decodeEntry on ${decoded} entries, both threw on ${bothThrew} truncated ones; readLogsFrameDirect = readLogsFrame on ${frames} entries`);
