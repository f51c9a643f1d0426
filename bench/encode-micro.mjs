#!/usr/bin/env node
/**
 * How long a sink's encode() takes per line, without docker: the file sink's two line formats
 * (file-format=json and json-file) and the Elasticsearch sink's action + document (default target,
 * a data stream), gathered into sealed batches as the core does (BatchBuilder, 10,000 lines per
 * batch). Needs a built dist/ (`npm run build`). Prints ns per line (median of 7 passes of 1M
 * lines, after a warm-up pass) and bytes per line.
 *
 *   node bench/encode-micro.mjs
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { JsonLinesEncoder } = await import(path.join(root, 'dist/sinks/file/json-lines.js'));
const { JsonFileEncoder } = await import(path.join(root, 'dist/sinks/file/json-file-lines.js'));
const { BatchBuilder } = await import(path.join(root, 'dist/sinks/encoded-batch.js'));
const { DocumentBuilder } = await import(path.join(root, 'dist/sinks/elasticsearch/document.js'));
const { resolveTarget } = await import(path.join(root, 'dist/sinks/elasticsearch/target.js'));

/** The Elasticsearch sink's encode(): one bulk action line and one ECS document per record. */
class EsEntryEncoder {
  documents = new DocumentBuilder({ target: resolveTarget('logs-docker-default', 'auto'), eventOriginal: false });
  write(record, out) {
    this.documents.writeEntry(record, 'normalised', out);
  }
}

const container = {
  id: 'e882a436c6b317a6ecf0bfdb77cdf7b2c3dc27dc1f80ad9b6159a3769e94cb10', name: 'bench-container-1',
  imageName: 'shiplog-test/busybox', imageId: `sha256:${'4'.repeat(64)}`, tag: 'e882a436c6b3', attrs: {}, labels: {}, hostname: 'host1',
};
const LINES = 1_000_000;
const BATCH = 10_000;
// seq's lines, 1 µs apart: the time's date part changes once per second, as in a real stream.
const records = Array.from({ length: 1000 }, (_, i) => ({ container, source: 'stdout', timeNano: { low: 0, high: 0 }, line: Buffer.from(String(i + 1)), truncated: false, seq: 0 }));
const T0 = 1_795_452_233_000_000_000n;
const times = Array.from({ length: LINES }, (_, i) => {
  const t = T0 + BigInt(i) * 1000n;
  return { low: Number(t & 0xffffffffn) | 0, high: Number(t >> 32n) | 0 };
});

function pass(encoder) {
  const b = new BatchBuilder();
  let bytes = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < LINES; i++) {
    const r = records[i % 1000];
    r.timeNano = times[i];
    encoder.write(r, b);
    b.endEntry();
    if (b.count === BATCH) bytes += b.seal().bytes.length;
  }
  const ns = Number(process.hrtime.bigint() - t0);
  return { nsPerLine: ns / LINES, bytesPerLine: bytes / (LINES - (LINES % BATCH)) };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log('| encoder | ns per line (median of 7) | bytes per line |\n| --- | ---: | ---: |');
for (const [label, make] of [['file sink, file-format=json', () => new JsonLinesEncoder()], ['file sink, file-format=json-file', () => new JsonFileEncoder()], ['elasticsearch sink (action + document)', () => new EsEntryEncoder()]]) {
  const encoder = make();
  pass(encoder);
  const runs = Array.from({ length: 7 }, () => pass(encoder));
  console.log(`| ${label} | ${median(runs.map((r) => r.nsPerLine)).toFixed(0)} | ${runs[0].bytesPerLine.toFixed(0)} |`);
}
