/**
 * End to end on the private dockerd: the same container workloads through each log driver, in paired,
 * alternating runs (forward order on odd repetitions, reverse on even ones).
 *
 * Per run: `docker run -d` + `docker wait` for every container of the workload (all started at once);
 * "done" = from the first run to the last wait returning; "delivered" = until the plugin has processed
 * everything (null plugin: every FIFO at EOF; shiplog + file sink: the file sink holds every line;
 * shiplog + ES: fake-es stored every document). The store is written synchronously per FIFO chunk
 * before records reach a sink, so a delivered line is also in the store. Every plugin process (and
 * fake-es) is started fresh per run and, unless --cold, warmed with a tenth of the workload (see
 * warmUp()) before its CPU seconds are read and its peak RSS (VmHWM) is reset: both belong to the
 * measured run alone.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  IMAGE, LineCounter, bounded, diffThreadCpu, drainFifos, threadCpu, NULL_NAME, SHIPLOG_NAME, cpuSeconds, docker, dockerOk, dockerdPid, loadAverage, log, machineJiffies,
  httpGetUnix, memoryKiB, metricValue, nullPluginStats, removeAllContainers, resetPeakRss, settle, startFakeEs, startPlugin, storeCompressed, waitFor,
} from './lib.mjs';

/** A 199-character log-like line (200 bytes with its newline); no quotes, so it sits in sh -c '…'. */
export const LINE_200 = (() => {
  const base = '2026-01-01T12:00:00.000Z INFO http request handled method=GET path=/api/v1/items/12345 status=200 duration_ms=12.345 user=alice trace=4bf92f3577b34da6a3ce929d0e0e4736 span=00f067aa0ba902b7 ';
  return (base + 'x'.repeat(199)).slice(0, 199);
})();

function seqBytes(n) {
  let bytes = 0;
  for (let digits = 1, lo = 1; lo <= n; digits++, lo *= 10) bytes += (Math.min(n, lo * 10 - 1) - lo + 1) * (digits + 1);
  return bytes;
}

/** The workloads, scaled by `scale` (1 = the sizes of issue 6). */
export function workloads(scale) {
  const n = (x) => Math.max(1, Math.round(x * scale));
  const short = n(1_000_000);
  const w200 = n(500_000);
  const big = n(2_000);
  const each = n(50_000);
  return {
    short: { label: `${short.toLocaleString('en')} short lines (seq)`, containers: 1, linesEach: short, bytes: seqBytes(short), cmd: ['seq', '1', String(short)] },
    '200b': { label: `${w200.toLocaleString('en')} lines of 200 B`, containers: 1, linesEach: w200, bytes: w200 * 200, cmd: ['sh', '-c', `yes '${LINE_200}' | head -n ${w200}`] },
    '40k': {
      label: `${big.toLocaleString('en')} lines of 40 KiB (3 partial entries each)`, containers: 1, linesEach: big, bytes: big * 40960,
      cmd: ['awk', `BEGIN{s="a";while(length(s)<40959)s=s s;s=substr(s,1,40959);for(i=0;i<${big};i++)print s}`],
    },
    many: { label: `20 containers × ${each.toLocaleString('en')} short lines`, containers: 20, linesEach: each, bytes: 20 * seqBytes(each), cmd: ['seq', '1', String(each)] },
  };
}

// cache-disabled: without it dockerd also writes a `local` copy for `docker logs` (dual logging, since
// 20.10) for a driver without ReadLogs, about doubling its CPU; shiplog has ReadLogs, so it never gets
// that cache. The floor is dockerd → FIFO → a reader that discards.
const NULL_ARGS = ['--log-driver', NULL_NAME, '--log-opt', 'cache-disabled=true'];

/** Log drivers compared. `plugin`: which process serves it; `args`: the docker run options. */
export const DRIVERS = {
  none: { label: 'none', args: ['--log-driver', 'none'] },
  local: { label: 'local', args: ['--log-driver', 'local'] },
  'json-file': { label: 'json-file', args: ['--log-driver', 'json-file'] },
  null: { label: 'null plugin', plugin: 'null', args: NULL_ARGS },
  // The same floor with the FIFO buffer shiplog asks for by default (PIPE_SIZE): what the larger pipe
  // alone gives a reader that does nothing. The targets stay against the null plugin above.
  'null-1m': { label: 'null plugin, 1 MiB FIFO buffer', plugin: 'null', pluginEnv: { PIPE_SIZE: String(1 << 20) }, args: NULL_ARGS },
  // The core alone (FIFO → decode → local store, no sink): separates the core's cost from the sinks'.
  'shiplog-store': { label: 'shiplog (store only, sinks=none)', plugin: 'shiplog', storeOnly: true, args: ['--log-driver', SHIPLOG_NAME, '--log-opt', 'sinks=none'] },
  shiplog: { label: 'shiplog (file sink)', plugin: 'shiplog', args: ['--log-driver', SHIPLOG_NAME] },
  // The file sink writing Docker's json-file lines (no container fields per line): what bytes per line cost.
  'shiplog-jsonfile': { label: 'shiplog (file sink, file-format=json-file)', plugin: 'shiplog', args: ['--log-driver', SHIPLOG_NAME, '--log-opt', 'file-format=json-file'] },
  // An experiment (run only when named): what the store's segment compression costs.
  'shiplog-nocompress': { label: 'shiplog (file sink, compress=false)', plugin: 'shiplog', experiment: true, args: ['--log-driver', SHIPLOG_NAME, '--log-opt', 'compress=false'] },
  'shiplog-es': { label: 'shiplog (ES sink, fake-es)', plugin: 'shiplog', es: true, args: ['--log-driver', SHIPLOG_NAME, '--log-opt', 'sinks=elasticsearch'] },
};

let runCounter = 0;
/** Longest a run's containers may take before the run counts as failed (a healthy one takes seconds). */
const RUN_TIMEOUT_MS = 300_000;

/** With shiplog's file sink: a line counter on each container's file (delivery is counted by newlines). */
function fileSinkCounters(plugin, driver, names) {
  return plugin?.name === SHIPLOG_NAME && !driver.es && !driver.storeOnly ? names.map((n) => new LineCounter(path.join(plugin.filesDir, `${n}.log`))) : undefined;
}

/** What the plugin has taken in so far (its counters are cumulative over a process's life). */
async function pluginTotals({ plugin, driver, es, runDir }) {
  if (plugin === undefined) return { ended: 0, bytes: 0, lines: 0, stored: 0 };
  if (plugin.name === NULL_NAME) {
    const s = await nullPluginStats(plugin.socket);
    return { ended: s.ended, bytes: s.bytes, lines: 0, stored: 0 };
  }
  if (driver.storeOnly) return { ended: 0, bytes: 0, lines: metricValue(await httpGetUnix(path.join(runDir, 'metrics.sock'), '/metrics'), 'shiplog_lines_total'), stored: 0 };
  if (es !== undefined) return { ended: 0, bytes: 0, lines: 0, stored: (await es.stats()).stored };
  return { ended: 0, bytes: 0, lines: 0, stored: 0 };
}

/**
 * Runs the containers `names` of workload `wl` to their end, then waits until the plugin has
 * everything (`base`: its totals before; `counters`: the file sink's line counters for these names).
 * Returns when the containers were done and when everything was delivered (performance.now()).
 */
async function pushThrough({ plugin, driver, es, runDir, names, args, wl, base, counters }) {
  const expected = wl.linesEach * names.length;
  const t0 = performance.now();
  await bounded(Promise.all(names.map(async (name) => {
    // --network none: on a dockerd with --bridge=none, a container left on the default network leaves
    // a network sandbox behind when removed (moby/moby#46583), which dockerd's next start removes one
    // by one (~60 ms each; a full run left ~2,000).
    await dockerOk(['run', '-d', '--network', 'none', '--name', name, ...args, IMAGE, ...wl.cmd]);
    const w = await dockerOk(['wait', name]);
    if (w.stdout.trim() !== '0') throw new Error(`${name} exited ${w.stdout.trim()}`);
  })), { plugin, ms: RUN_TIMEOUT_MS, what: 'the containers' });
  const done = performance.now();
  if (plugin === undefined) return { done, delivered: done };
  const timeoutMs = Math.max(120_000, (done - t0) * 20);
  let probe;
  if (plugin.name === NULL_NAME) probe = waitFor('null plugin EOF', async () => (await nullPluginStats(plugin.socket)).ended >= base.ended + names.length, timeoutMs);
  else if (driver.storeOnly) {
    // Every stream ended (EOF read, store flushed) and every line counted.
    probe = waitFor('store-only streams ended', async () => {
      const m = await httpGetUnix(path.join(runDir, 'metrics.sock'), '/metrics');
      return metricValue(m, 'shiplog_streams') === 0 && metricValue(m, 'shiplog_lines_total') >= base.lines + expected ? m : undefined;
    }, timeoutMs, 100);
  }
  else if (es !== undefined) probe = waitFor('fake-es documents', async () => (await es.stats()).stored >= base.stored + expected, timeoutMs);
  else probe = waitFor('file sink lines', () => counters.reduce((s, c) => s + c.poll(), 0) >= expected, timeoutMs);
  await bounded(probe, { plugin, ms: timeoutMs + 1000, what: 'delivery' });
  return { done, delivered: performance.now() };
}

/**
 * Warms a freshly started plugin with `warm` (the workload at a tenth of its size, same container
 * count) and removes those containers: the measured run then sees a process in its steady state, as
 * a plugin that has served containers since boot is, instead of paying its JIT compilation and lazy
 * loading (for shiplog's ES sink, the client library: ~0.4 CPU s) inside the run. dockerd, serving
 * the built-in drivers, is long-running too. Returns the warm-up's plugin CPU seconds.
 */
async function warmUp({ plugin, driver, es, runDir, args, warm, tag }) {
  const names = Array.from({ length: warm.containers }, (_, i) => `w-${tag}-${i}`);
  const cpu0 = cpuSeconds(plugin.pid);
  try {
    const base = await pluginTotals({ plugin, driver, es, runDir });
    const counters = fileSinkCounters(plugin, driver, names);
    await pushThrough({ plugin, driver, es, runDir, names, args, wl: warm, base, counters });
  } finally {
    const rm = await docker(['rm', '-f', ...names], { timeoutMs: 120_000 });
    if (rm.code !== 0) log(`  ! docker rm -f (warm-up) failed: ${rm.stderr.trim()}`);
  }
  return cpuSeconds(plugin.pid) - cpu0;
}

async function runOne({ app, work, driverKey, wlKey, wl, warm, rep, nodeArgs = [], env = {}, keepPlugin }) {
  const driver = DRIVERS[driverKey];
  const dockerd = dockerdPid();
  const runDir = path.join(work, `run-${++runCounter}`);
  fs.rmSync(runDir, { recursive: true, force: true });
  const es = driver.es ? await startFakeEs(path.join(runDir, 'es')) : undefined;
  const plugin = keepPlugin ?? (driver.plugin !== undefined ? await startPlugin({
    kind: driver.plugin, app, workDir: runDir,
    // Store only: "delivered" is read from shiplog's metrics (on a unix socket, polled only after the containers ended).
    // Metrics on a unix socket, polled only after the containers ended: store-only delivery, and the
    // store's deferred compressions, whose CPU belongs to the run.
    ...(driver.plugin === 'shiplog' ? { nodeArgs, env: { ...env, METRICS_ADDRESS: path.join(runDir, 'metrics.sock') } } : { env: driver.pluginEnv ?? {} }),
  }) : undefined);
  const names = Array.from({ length: wl.containers }, (_, i) => `b-${wlKey}-${driverKey}-${rep}-${runCounter}-${i}`);
  const args = [...driver.args, ...(es !== undefined ? ['--log-opt', `es-url=${es.url}`] : [])];
  const expected = wl.linesEach * wl.containers;
  const result = { workload: wlKey, driver: driverKey, rep, lines: expected, bytes: wl.bytes };
  try {
    if (plugin !== undefined && warm !== undefined && keepPlugin === undefined) {
      result.warmupPluginCpu = await warmUp({ plugin, driver, es, runDir, args, warm, tag: `${wlKey}-${driverKey}-${rep}-${runCounter}` });
    }
    await settle([dockerd, ...(plugin ? [plugin.pid] : [])]);
    const base = await pluginTotals({ plugin, driver, es, runDir });
    const counters = fileSinkCounters(plugin, driver, names);
    if (plugin !== undefined) resetPeakRss(plugin.pid);
    const cpu0 = { dockerd: cpuSeconds(dockerd), plugin: plugin ? cpuSeconds(plugin.pid) : 0, es: es ? cpuSeconds(es.pid) : 0 };
    const threads0 = plugin ? threadCpu(plugin.pid) : undefined;
    const mach0 = machineJiffies();
    result.loadBefore = loadAverage()[0];
    const t0 = performance.now();
    const { done: tDone, delivered } = await pushThrough({ plugin, driver, es, runDir, names, args, wl, base, counters });
    result.doneMs = tDone - t0;
    if (plugin?.name === NULL_NAME) result.pluginBytes = (await nullPluginStats(plugin.socket)).bytes - base.bytes;
    result.deliveredMs = delivered - t0;
    const mach1 = machineJiffies();
    if (driver.plugin === 'shiplog' && keepPlugin === undefined) result.compressedMs = await storeCompressed(path.join(runDir, 'metrics.sock')) - t0;
    result.cpu = {
      dockerd: cpuSeconds(dockerd) - cpu0.dockerd,
      plugin: plugin ? cpuSeconds(plugin.pid) - cpu0.plugin : 0,
      es: es ? cpuSeconds(es.pid) - cpu0.es : 0,
    };
    if (plugin) result.pluginThreads = diffThreadCpu(threads0, threadCpu(plugin.pid), plugin.pid);
    result.machineBusyShare = (mach1.busy - mach0.busy) / Math.max(1, mach1.total - mach0.total);
    result.loadAfter = loadAverage()[0];
    if (plugin) result.pluginHwmKiB = memoryKiB(plugin.pid).hwm;
    if (es) result.esHwmKiB = memoryKiB(es.pid).hwm;
    // Exactness: nothing lost, nothing doubled (checked after delivery, so late duplicates show too).
    if (driver.storeOnly && keepPlugin === undefined) {
      result.deliveredCount = metricValue(await httpGetUnix(path.join(runDir, 'metrics.sock'), '/metrics'), 'shiplog_lines_total') - base.lines;
    } else if (counters !== undefined) {
      await new Promise((r) => setTimeout(r, 300));
      result.deliveredCount = counters.reduce((s, c) => s + c.poll(), 0);
    } else if (es !== undefined) {
      result.deliveredCount = (await es.stats()).stored - base.stored;
    }
    if (result.deliveredCount !== undefined && result.deliveredCount !== expected) {
      result.error = `delivered ${result.deliveredCount} of ${expected}`;
    }
  } catch (err) {
    result.error = String(err?.message ?? err);
    log(`  ! ${driverKey} ${wlKey} rep ${rep}: ${result.error}`);
    // What the containers and the plugin were doing: a run once hung with every container "Created"
    // (runc create waiting on runc init, before any logging), and its directory was gone with the
    // plugin's output. A failed run's directory is kept.
    const states = await docker(['ps', '-a', '--filter', `name=-${wlKey}-${driverKey}-${rep}-${runCounter}-`, '--format', '{{.Status}}'], { timeoutMs: 20_000 });
    log(`  ! container states: ${[...new Set(states.stdout.split('\n').filter((l) => l !== ''))].join(', ') || '(none)'}`);
    if (plugin !== undefined) log(`  ! ${plugin.name}'s last output (${runDir} is kept):\n${plugin.output().slice(-1500)}`);
  } finally {
    // A plugin that died leaves dockerd blocking the containers on full pipes: read them empty first.
    const stopDrain = result.error !== undefined && plugin !== undefined ? drainFifos(plugin.fifos()) : undefined;
    const rm = await docker(['rm', '-f', ...names], { timeoutMs: 120_000 });
    stopDrain?.();
    if (rm.code !== 0) log(`  ! docker rm -f failed: ${rm.stderr.trim()}`);
    if (keepPlugin === undefined) await plugin?.stop();
    await es?.stop();
    if (keepPlugin === undefined && process.env.BENCH_KEEP_RUNS !== '1' && result.error === undefined) fs.rmSync(runDir, { recursive: true, force: true });
  }
  return result;
}

/** The warm-up before a measured run pushes this share of the workload's lines through the fresh plugin. */
export const WARM_UP_SHARE = 0.1;

export async function runE2e({ app, work, scale, reps, drivers, workloadKeys, nodeArgs = [], env = {}, warmFirst = true }) {
  const all = workloads(scale);
  const warmSizes = workloads(scale * WARM_UP_SHARE);
  const results = [];
  await removeAllContainers();
  for (const wlKey of workloadKeys) {
    const wl = all[wlKey];
    log(`e2e ${wlKey}: ${wl.label}, ${reps} × ${drivers.join(' ')}`);
    for (let rep = 1; rep <= reps; rep++) {
      const order = rep % 2 === 1 ? drivers : [...drivers].reverse();
      for (const driverKey of order) {
        const r = await runOne({ app, work, driverKey, wlKey, wl, warm: warmFirst ? warmSizes[wlKey] : undefined, rep, nodeArgs, env });
        results.push(r);
        log(`  ${wlKey} ${driverKey.padEnd(10)} rep ${rep}: done ${(r.doneMs / 1000).toFixed(2)} s, delivered ${(r.deliveredMs / 1000).toFixed(2)} s, `
          + `cpu dockerd ${r.cpu?.dockerd.toFixed(2)} plugin ${r.cpu?.plugin.toFixed(2)}${r.cpu?.es ? ` fake-es ${r.cpu.es.toFixed(2)}` : ''}`
          + `${r.pluginHwmKiB ? `, peak RSS ${(r.pluginHwmKiB / 1024).toFixed(0)} MiB` : ''}, load ${r.loadBefore}${r.error ? ` ERROR ${r.error}` : ''}`);
      }
    }
  }
  return { workloads: Object.fromEntries(workloadKeys.map((k) => [k, all[k]])), drivers: Object.fromEntries(drivers.map((d) => [d, DRIVERS[d]])), results };
}

/**
 * Runs workloads through one shiplog started with `nodeArgs` (e.g. --cpu-prof) and stopped at the end,
 * for the profile. Returns the run results.
 */
export async function runProfiled({ app, work, scale, workloadKeys, es, nodeArgs }) {
  const all = workloads(scale);
  const workDir = path.join(work, es ? 'profile-es' : 'profile-file');
  fs.rmSync(workDir, { recursive: true, force: true });
  const plugin = await startPlugin({ kind: 'shiplog', app, workDir, nodeArgs });
  const results = [];
  try {
    for (const wlKey of workloadKeys) {
      const r = await runOne({ app, work, driverKey: es ? 'shiplog-es' : 'shiplog', wlKey, wl: all[wlKey], rep: 1, keepPlugin: plugin });
      results.push(r);
      log(`  profiled ${wlKey}: delivered ${(r.deliveredMs / 1000).toFixed(2)} s${r.error ? ` ERROR ${r.error}` : ''}`);
    }
  } finally {
    await plugin.stop(60_000);
  }
  return { results, workDir };
}
