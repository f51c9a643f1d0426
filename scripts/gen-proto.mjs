// Generates protobufjs static code for proto/entry.proto into src/generated/ (git-ignored).
// Static code decodes ~2x faster than reflection on short log lines (see BENCHMARKS.md).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, statSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const proto = join(root, 'proto/entry.proto');
const outDir = join(root, 'src/generated');
const js = join(outDir, 'entry.js');
const dts = join(outDir, 'entry.d.ts');
const bin = (name) => join(root, 'node_modules/.bin', name);

const upToDate = existsSync(js) && existsSync(dts) && statSync(js).mtimeMs >= statSync(proto).mtimeMs
  && statSync(js).mtimeMs >= statSync(fileURLToPath(import.meta.url)).mtimeMs;
if (!upToDate) {
  mkdirSync(outDir, { recursive: true });
  execFileSync(bin('pbjs'), ['-t', 'static-module', '-w', 'es6', '--no-create', '--no-verify',
    '--no-convert', '--no-delimited', '--no-beautify', '-o', js, proto], { stdio: 'inherit' });
  // Node's ESM resolver needs the file extension: protobufjs has no "exports" map.
  writeFileSync(js, readFileSync(js, 'utf8').replace('"protobufjs/minimal"', '"protobufjs/minimal.js"'));
  execFileSync(bin('pbts'), ['-o', dts, js], { stdio: 'inherit' });
  writeFileSync(dts, readFileSync(dts, 'utf8').replace('"protobufjs"', '"protobufjs/minimal.js"'));
}
