/**
 * End to end on the private dockerd: the same container workloads through each log driver, in paired,
 * alternating runs (forward order on odd repetitions, reverse on even ones).
 *
 * Per run: `docker run -d` + `docker wait` for every container of the workload (all started at once);
 * "done" = from the first run to the last wait returning; "delivered" = until the plugin has processed
 * everything (null plugin: every FIFO at EOF; shiplog + file sink: the file sink holds every line;
 * shiplog + ES: fake-es stored every document). The store is written synchronously per FIFO chunk
 * before records reach a sink, so a delivered line is also in the store. Every plugin process (and
 * fake-es) is started fresh per run, so its CPU seconds and peak RSS (VmHWM) belong to that run alone.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  IMAGE, LineCounter, bounded, diffThreadCpu, drainFifos, threadCpu, NULL_NAME, SHIPLOG_NAME, cpuSeconds, docker, dockerOk, dockerdPid, loadAverage, log, machineJiffies,
  httpGetUnix, memoryKiB, metricValue, nullPluginStats, removeAllContainers, settle, startFakeEs, startPlugin, waitFor,
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

/** Log drivers compared. `plugin`: which process serves it; `args`: the docker run options. */
export const DRIVERS = {
  none: { label: 'none', args: ['--log-driver', 'none'] },
  local: { label: 'local', args: ['--log-driver', 'local'] },
  'json-file': { label: 'json-file', args: ['--log-driver', 'json-file'] },
  // cache-disabled: without it dockerd also writes a `local` copy for `docker logs` (dual logging, since
  // 20.10) for a driver without ReadLogs, about doubling its CPU; shiplog has ReadLogs, so it never gets
  // that cache. The floor is dockerd → FIFO → a reader that discards.
  null: { label: 'null plugin', plugin: 'null', args: ['--log-driver', NULL_NAME, '--log-opt', 'cache-disabled=true'] },
  // The core alone (FIFO → decode → local store, no sink): separates the core's cost from the sinks'.
  'shiplog-store': { label: 'shiplog (store only, sinks=none)', plugin: 'shiplog', storeOnly: true, args: ['--log-driver', SHIPLOG_NAME, '--log-opt', 'sinks=none'] },
  shiplog: { label: 'shiplog (file sink)', plugin: 'shiplog', args: ['--log-driver', SHIPLOG_NAME] },
  // The file sink writing Docker's json-file lines (no container fields per line): what bytes per line cost.
  'shiplog-jsonfile': { label: 'shiplog (file sink, file-format=json-file)', plugin: 'shiplog', args: ['--log-driver', SHIPLOG_NAME, '--log-opt', 'file-format=json-file'] },
  'shiplog-es': { label: 'shiplog (ES sink, fake-es)', plugin: 'shiplog', es: true, args: ['--log-driver', SHIPLOG_NAME, '--log-opt', 'sinks=elasticsearch'] },
};

let runCounter = 0;
/** Longest a run's containers may take before the run counts as failed (a healthy one takes seconds). */
const RUN_TIMEOUT_MS = 300_000;

async function runOne({ app, work, driverKey, wlKey, wl, rep, nodeArgs = [], env = {}, keepPlugin }) {
  const driver = DRIVERS[driverKey];
  const dockerd = dockerdPid();
  const runDir = path.join(work, `run-${++runCounter}`);
  fs.rmSync(runDir, { recursive: true, force: true });
  const es = driver.es ? await startFakeEs(path.join(runDir, 'es')) : undefined;
  const plugin = keepPlugin ?? (driver.plugin !== undefined ? await startPlugin({
    kind: driver.plugin, app, workDir: runDir,
    // Store only: "delivered" is read from shiplog's metrics (on a unix socket, polled only after the containers ended).
    ...(driver.plugin === 'shiplog' ? { nodeArgs, env: { ...env, ...(driver.storeOnly ? { METRICS_ADDRESS: path.join(runDir, 'metrics.sock') } : {}) } } : {}),
  }) : undefined);
  const names = Array.from({ length: wl.containers }, (_, i) => `b-${wlKey}-${driverKey}-${rep}-${runCounter}-${i}`);
  const args = [...driver.args, ...(es !== undefined ? ['--log-opt', `es-url=${es.url}`] : [])];
  const expected = wl.linesEach * wl.containers;
  const result = { workload: wlKey, driver: driverKey, rep, lines: expected, bytes: wl.bytes };
  try {
    await settle([dockerd, ...(plugin ? [plugin.pid] : [])]);
    const counters = plugin?.name === SHIPLOG_NAME && !driver.es && !driver.storeOnly ? names.map((n) => new LineCounter(path.join(plugin.filesDir, `${n}.log`))) : undefined;
    const cpu0 = { dockerd: cpuSeconds(dockerd), plugin: plugin ? cpuSeconds(plugin.pid) : 0, es: es ? cpuSeconds(es.pid) : 0 };
    const threads0 = plugin ? threadCpu(plugin.pid) : undefined;
    const mach0 = machineJiffies();
    result.loadBefore = loadAverage()[0];
    const t0 = performance.now();
    await bounded(Promise.all(names.map(async (name) => {
      await dockerOk(['run', '-d', '--name', name, ...args, IMAGE, ...wl.cmd]);
      const w = await dockerOk(['wait', name]);
      if (w.stdout.trim() !== '0') throw new Error(`${name} exited ${w.stdout.trim()}`);
    })), { plugin, ms: RUN_TIMEOUT_MS, what: 'the containers' });
    const tDone = performance.now();
    result.doneMs = tDone - t0;
    let delivered = tDone;
    if (plugin !== undefined) {
      const timeoutMs = Math.max(120_000, result.doneMs * 20);
      let probe;
      if (plugin.name === NULL_NAME) probe = waitFor('null plugin EOF', async () => (await nullPluginStats(plugin.socket)).ended >= names.length, timeoutMs);
      else if (driver.storeOnly) {
        // Every stream ended (EOF read, store flushed) and every line counted.
        probe = waitFor('store-only streams ended', async () => {
          const m = await httpGetUnix(path.join(runDir, 'metrics.sock'), '/metrics');
          return metricValue(m, 'shiplog_streams') === 0 && metricValue(m, 'shiplog_lines_total') >= expected ? m : undefined;
        }, timeoutMs, 100);
      }
      else if (es !== undefined) probe = waitFor('fake-es documents', async () => (await es.stats()).stored >= expected, timeoutMs);
      else probe = waitFor('file sink lines', () => counters.reduce((s, c) => s + c.poll(), 0) >= expected, timeoutMs);
      await bounded(probe, { plugin, ms: timeoutMs + 1000, what: 'delivery' });
      if (plugin.name === NULL_NAME) result.pluginBytes = (await nullPluginStats(plugin.socket)).bytes;
      delivered = performance.now();
    }
    result.deliveredMs = delivered - t0;
    const mach1 = machineJiffies();
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
      result.deliveredCount = metricValue(await httpGetUnix(path.join(runDir, 'metrics.sock'), '/metrics'), 'shiplog_lines_total');
    } else if (counters !== undefined) {
      await new Promise((r) => setTimeout(r, 300));
      result.deliveredCount = counters.reduce((s, c) => s + c.poll(), 0);
    } else if (es !== undefined) {
      result.deliveredCount = (await es.stats()).stored;
    }
    if (result.deliveredCount !== undefined && result.deliveredCount !== expected) {
      result.error = `delivered ${result.deliveredCount} of ${expected}`;
    }
  } catch (err) {
    result.error = String(err?.message ?? err);
    log(`  ! ${driverKey} ${wlKey} rep ${rep}: ${result.error}`);
  } finally {
    // A plugin that died leaves dockerd blocking the containers on full pipes: read them empty first.
    const stopDrain = result.error !== undefined && plugin !== undefined ? drainFifos(plugin.fifos()) : undefined;
    const rm = await docker(['rm', '-f', ...names], { timeoutMs: 120_000 });
    stopDrain?.();
    if (rm.code !== 0) log(`  ! docker rm -f failed: ${rm.stderr.trim()}`);
    if (keepPlugin === undefined) await plugin?.stop();
    await es?.stop();
    if (keepPlugin === undefined && process.env.BENCH_KEEP_RUNS !== '1') fs.rmSync(runDir, { recursive: true, force: true });
  }
  return result;
}

export async function runE2e({ app, work, scale, reps, drivers, workloadKeys, nodeArgs = [], env = {} }) {
  const all = workloads(scale);
  const results = [];
  await removeAllContainers();
  for (const wlKey of workloadKeys) {
    const wl = all[wlKey];
    log(`e2e ${wlKey}: ${wl.label}, ${reps} × ${drivers.join(' ')}`);
    for (let rep = 1; rep <= reps; rep++) {
      const order = rep % 2 === 1 ? drivers : [...drivers].reverse();
      for (const driverKey of order) {
        const r = await runOne({ app, work, driverKey, wlKey, wl, rep, nodeArgs, env });
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
