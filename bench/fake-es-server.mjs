/**
 * Runs test/support/fake-es.ts in its own process for the benchmark (so its CPU is not shiplog's and
 * not the benchmark's). Node 20 cannot load .ts, so the file is transpiled with the project's own
 * TypeScript (types stripped, nothing else changed) into the work dir given as argv[2]. Talks to its
 * parent over IPC: sends {url} once listening; answers 'stats' with {stats} (fake-es's counters).
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';

const root = path.resolve(import.meta.dirname, '..');
const workDir = process.argv[2] ?? fs.mkdtempSync('/tmp/sl-bench-fake-es-');
fs.mkdirSync(workDir, { recursive: true });
const source = fs.readFileSync(path.join(root, 'test/support/fake-es.ts'), 'utf8');
const js = ts.transpileModule(source, {
  compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
}).outputText;
const out = path.join(workDir, 'fake-es.mjs');
fs.writeFileSync(out, js);
const { startFakeEs } = await import(pathToFileURL(out).href);

// Documents counted, not parsed or kept (FakeEsOptions.countOnly): the server shares the cores with shiplog.
const es = await startFakeEs({ host: '127.0.0.1', countOnly: true });
process.send?.({ url: es.url });
process.on('message', (m) => {
  if (m === 'stats') process.send?.({ stats: es.stats() });
});
process.on('SIGTERM', () => { void es.close().finally(() => process.exit(0)); });
process.on('disconnect', () => { void es.close().finally(() => process.exit(0)); });
