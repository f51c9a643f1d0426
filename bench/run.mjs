#!/usr/bin/env node
/**
 * shiplog's benchmark suite (issue 6). Needs root (dockerd's FIFOs, /run/docker/plugins) and a built
 * dist/ (`npm run bench` builds first). Starts a private dockerd in /tmp/sl-bench-dockerd, runs the
 * phases, stops what it started, and writes the results into BENCHMARKS.md (between its generated-
 * section markers; the hand-written analysis around them is kept) and bench/results/last-run.json.
 *
 *   npm run bench                          # the full suite (about 25 minutes on 2 cores)
 *   node bench/run.mjs --quick             # 1 repetition, 1/10 sizes, 64 MiB store: for development
 *   node bench/run.mjs --only micro,e2e --reps 3 --scale 0.5 --workloads short,many --drivers null,shiplog
 *
 * Flags: --quick, --reps N, --scale F (e2e sizes), --store-mb N (docker logs store), --only LIST
 * (e2e,logs,micro,profile), --workloads LIST (short,200b,40k,many), --drivers LIST
 * (none,local,json-file,null,null-1m,shiplog-store,shiplog,shiplog-jsonfile,shiplog-es; and
 * shiplog-nocompress, an experiment run only when named), --out FILE (default BENCHMARKS.md; quick runs
 * default to /tmp/sl-bench/BENCHMARKS.quick.md), --keep-dockerd (leave the private dockerd running),
 * --cold (measure each plugin process from its start, without the warm-up run that otherwise goes
 * first: the numbers then include its JIT compilation and lazy initialisation),
 * --shiplog-node-args "ARGS" and --shiplog-env K=V,K=V (shiplog's node flags and environment in the
 * end-to-end runs, for before/after experiments such as a V8 heap flag or SINK_QUEUE_SIZE), --app DIR
 * (measure that tree, laid out like the snapshot in /tmp/sl-bench/app, instead of a fresh snapshot of
 * dist/: for trying a patch to the built JavaScript without touching the shared checkout).
 * BENCH_KEEP_RUNS=1 in the environment keeps each end-to-end run's directory (the plugin's log,
 * state and files) under the work directory instead of removing it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { summariseProfile } from './cpuprofile-top.mjs';
import { runDockerLogs } from './docker-logs.mjs';
import { DRIVERS, runE2e, runProfiled, workloads } from './e2e.mjs';
import { describeMachine, dockerdDown, dockerdUp, loadAverage, log, removeAllContainers, ROOT, snapshotDist } from './lib.mjs';
import { runMicro } from './micro.mjs';
import { writeReport } from './report.mjs';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    cold: { type: 'boolean', default: false },
    reps: { type: 'string' },
    scale: { type: 'string' },
    'store-mb': { type: 'string' },
    only: { type: 'string' },
    workloads: { type: 'string' },
    drivers: { type: 'string' },
    out: { type: 'string' },
    'keep-dockerd': { type: 'boolean', default: false },
    'shiplog-node-args': { type: 'string' },
    'shiplog-env': { type: 'string' },
    app: { type: 'string' },
  },
});

const list = (s, all) => {
  if (s === undefined) return all;
  const want = s.split(',').map((x) => x.trim()).filter((x) => x !== '');
  for (const w of want) if (!all.includes(w)) throw new Error(`unknown value ${w}; known: ${all.join(', ')}`);
  return want;
};

const quick = flags.quick;
const opts = {
  reps: Number(flags.reps ?? (quick ? 1 : 5)),
  scale: Number(flags.scale ?? (quick ? 0.1 : 1)),
  storeMiB: Number(flags['store-mb'] ?? (quick ? 64 : 1024)),
  phases: list(flags.only, ['micro', 'e2e', 'logs', 'profile']),
  workloadKeys: list(flags.workloads, Object.keys(workloads(1))),
  // Drivers marked `experiment` run only when named in --drivers.
  drivers: flags.drivers === undefined ? Object.keys(DRIVERS).filter((k) => DRIVERS[k].experiment !== true) : list(flags.drivers, Object.keys(DRIVERS)),
  out: flags.out ?? (quick ? '/tmp/sl-bench/BENCHMARKS.quick.md' : path.join(ROOT, 'BENCHMARKS.md')),
  // Experiments: node flags and environment for shiplog in the end-to-end runs (e.g. a V8 heap setting).
  shiplogNodeArgs: (flags['shiplog-node-args'] ?? '').split(' ').filter((a) => a !== ''),
  shiplogEnv: Object.fromEntries((flags['shiplog-env'] ?? '').split(',').filter((kv) => kv.includes('=')).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
};
if (!(opts.reps >= 1) || !(opts.scale > 0) || !(opts.storeMiB > 0)) throw new Error('--reps, --scale and --store-mb must be positive');
if (process.getuid?.() !== 0) throw new Error('the benchmark needs root: dockerd FIFOs and /run/docker/plugins are root-only');
if (!fs.existsSync(path.join(ROOT, 'dist/src/main.js'))) throw new Error('dist/ is missing: run `npm run build` (or `npm run bench`)');

const work = '/tmp/sl-bench';
fs.mkdirSync(work, { recursive: true });
const started = Date.now();
// --app DIR: measure an existing tree (dist/, proto/, package.json, node_modules) instead, e.g. a patched copy.
const app = flags.app !== undefined ? path.resolve(flags.app) : snapshotDist(work);
log(`phases ${opts.phases.join(',')}, reps ${opts.reps}, scale ${opts.scale}, store ${opts.storeMiB} MiB; code under test: snapshot of dist/ in ${app}`);

dockerdUp();
const machine = await describeMachine();
const results = { started: new Date(started).toISOString(), quick, options: opts, machine, load: { start: loadAverage() } };
let failure;
try {
  const phaseStart = Date.now();
  const phaseDone = (name) => { results.phaseMinutes[name] = (Date.now() - phaseStart - Object.values(results.phaseMinutes).reduce((a, b) => a + b, 0) * 60_000) / 60_000; };
  results.phaseMinutes = {};
  if (opts.phases.includes('micro')) {
    log('micro: framing + decode without docker');
    results.micro = await runMicro({ app, work, scale: 1 }); // cheap: always the full sizes
    phaseDone('micro');
  }
  if (opts.phases.includes('e2e')) {
    results.e2e = await runE2e({
      app, work, scale: opts.scale, reps: opts.reps, drivers: opts.drivers, workloadKeys: opts.workloadKeys, nodeArgs: opts.shiplogNodeArgs, env: opts.shiplogEnv,
      warmFirst: !flags.cold,
    });
    results.e2e.warmUp = !flags.cold;
    results.load.afterE2e = loadAverage();
    phaseDone('e2e');
  }
  if (opts.phases.includes('logs')) {
    results.logs = await runDockerLogs({ app, work, storeMiB: opts.storeMiB, reps: Math.max(opts.reps, quick ? 1 : 5) });
    results.load.afterLogs = loadAverage();
    phaseDone('logs');
  }
  if (opts.phases.includes('profile')) {
    log('profile: shiplog under --cpu-prof');
    const profiles = {};
    for (const es of [false, true]) {
      const profDir = path.join(work, es ? 'cpuprof-es' : 'cpuprof-file');
      fs.rmSync(profDir, { recursive: true, force: true });
      // The report's profiles are short (+ many for the file sink); --workloads profiles those instead.
      const keys = flags.workloads !== undefined ? opts.workloadKeys : es ? ['short'] : ['short', 'many'];
      const { results: runs } = await runProfiled({ app, work, scale: opts.scale, workloadKeys: keys, es, nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profDir] });
      const file = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
      if (file === undefined) throw new Error(`no .cpuprofile written in ${profDir}`);
      const dest = path.join(work, `shiplog-${es ? 'es' : 'file'}.cpuprofile`);
      fs.copyFileSync(path.join(profDir, file), dest);
      profiles[es ? 'es' : 'file'] = { workloads: keys, runs, file: dest, ...summariseProfile(JSON.parse(fs.readFileSync(dest, "utf8")), 15) };
    }
    results.profiles = profiles;
    phaseDone('profile');
  }
} catch (err) {
  failure = err;
  log(`FAILED: ${err?.stack ?? err}`);
} finally {
  await removeAllContainers().catch(() => undefined);
  if (!flags['keep-dockerd']) dockerdDown();
}
results.load.end = loadAverage();
results.minutes = (Date.now() - started) / 60_000;
const json = path.join(quick || flags.out !== undefined ? work : path.join(ROOT, 'bench/results'), 'last-run.json');
fs.mkdirSync(path.dirname(json), { recursive: true });
fs.writeFileSync(json, `${JSON.stringify(results, null, 1)}\n`);
writeReport(opts.out, results);
log(`wrote ${opts.out} and ${json} after ${results.minutes.toFixed(1)} min`);
if (failure !== undefined) process.exit(1);
