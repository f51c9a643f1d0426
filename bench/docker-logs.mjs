/**
 * `docker logs` on a large store: one container per driver (shiplog, the built-in `local`) writes the
 * same ~storeMiB of 200-byte lines, sleeps past a minute, then writes a short tail of lines; both with
 * the same rotation options (max-size × max-file above the store size; rotated files gzipped, both
 * drivers' default). Then, alternating drivers, timed with the CLI's output going to /dev/null:
 * `--tail 100`, `--since <last line - 60 s>` (only the lines after the pause: a recent minute in a
 * big store), and a full read. Page cache is warm for both (a counted full read comes first and checks
 * that each driver returns every byte).
 */
import fs from 'node:fs';
import path from 'node:path';
import { LINE_200 } from './e2e.mjs';
import {
  DOCKERD_DIR, IMAGE, SHIPLOG_NAME, cpuSeconds, docker, dockerOk, dockerdPid, log, machineJiffies, median, memoryKiB, settle, startPlugin, storeCompressed,
} from './lib.mjs';

/** Store bytes per 199-character line: entry (8 source + 10 time + 3 + 199 line) + 8 record framing. */
const RECORD_BYTES = 228;

async function timed(args) {
  const t0 = performance.now();
  const r = await docker(args, { stdout: 'null' });
  const ms = performance.now() - t0;
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return ms;
}

function duBytes(dir) {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? duBytes(p) : fs.statSync(p).size;
  }
  return total;
}

export async function runDockerLogs({ app, work, storeMiB, reps }) {
  const quick = storeMiB < 512;
  const bulk = Math.round((storeMiB * 1024 * 1024) / RECORD_BYTES);
  const tail = Math.min(10_000, Math.max(100, Math.round(bulk / 100)));
  // The pause makes "the last minute" hold only the tail lines. Quick runs use a shorter window.
  const windowS = quick ? 5 : 60;
  const pauseS = windowS + 2;
  const maxSizeMB = Math.ceil((storeMiB * 1.048576) / 8) + 1;
  const rotation = ['--log-opt', `max-size=${maxSizeMB}m`, '--log-opt', 'max-file=10'];
  const cmd = ['sh', '-c', `yes '${LINE_200}' | head -n ${bulk}; sleep ${pauseS}; yes '${LINE_200}' | head -n ${tail}`];
  const workDir = path.join(work, 'logs');
  fs.rmSync(workDir, { recursive: true, force: true });
  const metricsSocket = path.join(workDir, 'metrics.sock');
  const plugin = await startPlugin({ kind: 'shiplog', app, workDir, env: { METRICS_ADDRESS: metricsSocket } });
  const dockerd = dockerdPid();
  const out = { storeMiB, bulkLines: bulk, tailLines: tail, windowS, rotation: rotation.filter((_, i) => i % 2 === 1).join(' '), drivers: {} };
  const names = { shiplog: `b-logs-shiplog-${process.pid}`, local: `b-logs-local-${process.pid}` };
  try {
    log(`docker logs: filling ${storeMiB} MiB (${bulk.toLocaleString('en')} + ${tail} lines of 200 B, ${pauseS} s pause) into shiplog and local at once`);
    const t0 = performance.now();
    await Promise.all([
      (async () => {
        await dockerOk(['run', '-d', '--network', 'none', '--name', names.shiplog, '--log-driver', SHIPLOG_NAME, '--log-opt', 'sinks=none', ...rotation, IMAGE, ...cmd]);
        await dockerOk(['wait', names.shiplog]);
      })(),
      (async () => {
        await dockerOk(['run', '-d', '--network', 'none', '--name', names.local, '--log-driver', 'local', ...rotation, IMAGE, ...cmd]);
        await dockerOk(['wait', names.local]);
      })(),
    ]);
    out.fillSeconds = (performance.now() - t0) / 1000;
    // Rotated files are gzipped in the background by both: wait for that to finish (shiplog's once
    // the container has been quiet for a second).
    await storeCompressed(metricsSocket);
    await settle([dockerd, plugin.pid], { windowMs: 1000, maxShare: 0.05, timeoutMs: 180_000 });
    out.pluginRssAfterFillMiB = memoryKiB(plugin.pid).rss / 1024;
    const expectedBytes = (bulk + tail) * 200;
    for (const [driver, name] of Object.entries(names)) {
      const id = (await dockerOk(['inspect', '--format', '{{.Id}}', name])).stdout.trim();
      const dir = driver === 'shiplog' ? path.join(plugin.stateDir, 'containers', id) : path.join(DOCKERD_DIR, 'root/containers', id, 'local-logs');
      const files = fs.readdirSync(dir).sort();
      const full = await docker(['logs', name], { stdout: 'count' });
      const last = (await dockerOk(['logs', '--tail', '1', '--timestamps', name])).stdout.trim().split(' ')[0];
      const lastMs = Date.parse(last);
      // Nanoseconds are cut to ms by Date.parse; the window is whole seconds, so that does not matter.
      const since = ((lastMs - windowS * 1000) / 1000).toFixed(3);
      const sinceCount = await docker(['logs', '--since', since, name], { stdout: 'count' });
      out.drivers[driver] = {
        storeBytes: duBytes(dir), files, fullReadBytes: full.bytes, complete: full.bytes === expectedBytes && full.code === 0,
        since, sinceLines: sinceCount.bytes / 200, tail100: [], since60: [], full: [], fullCpu: [],
      };
      log(`  ${driver}: store ${(out.drivers[driver].storeBytes / 2 ** 20).toFixed(0)} MiB in ${files.length} files; full read ${full.bytes} of ${expectedBytes} bytes; --since returns ${sinceCount.bytes / 200} lines`);
    }
    for (let rep = 1; rep <= reps; rep++) {
      const order = rep % 2 === 1 ? ['shiplog', 'local'] : ['local', 'shiplog'];
      for (const driver of order) {
        const d = out.drivers[driver];
        d.tail100.push(await timed(['logs', '--tail', '100', names[driver]]));
        d.since60.push(await timed(['logs', '--since', d.since, names[driver]]));
        if (rep <= 3) {
          // Who spends the CPU of a full read: dockerd (and, for shiplog, the plugin), and how busy the
          // machine was; the CLI's own CPU is the rest of the busy share.
          const before = { dockerd: cpuSeconds(dockerd), plugin: cpuSeconds(plugin.pid), machine: machineJiffies() };
          d.full.push(await timed(['logs', names[driver]]));
          const machine = machineJiffies();
          d.fullCpu.push({
            dockerd: cpuSeconds(dockerd) - before.dockerd,
            plugin: driver === 'shiplog' ? cpuSeconds(plugin.pid) - before.plugin : 0,
            busy: (machine.busy - before.machine.busy) / (machine.total - before.machine.total),
          });
        }
      }
      log(`  rep ${rep}: tail100 shiplog ${out.drivers.shiplog.tail100.at(-1).toFixed(0)} ms / local ${out.drivers.local.tail100.at(-1).toFixed(0)} ms; `
        + `since ${out.drivers.shiplog.since60.at(-1).toFixed(0)} / ${out.drivers.local.since60.at(-1).toFixed(0)} ms`
        + (rep <= 3 ? `; full ${out.drivers.shiplog.full.at(-1).toFixed(0)} / ${out.drivers.local.full.at(-1).toFixed(0)} ms` : ''));
    }
    for (const d of Object.values(out.drivers)) {
      d.tail100Ms = median(d.tail100);
      d.since60Ms = median(d.since60);
      d.fullMs = median(d.full);
      d.fullMBps = d.fullReadBytes / 1e6 / (d.fullMs / 1000);
      d.fullDockerdCpu = median(d.fullCpu.map((c) => c.dockerd));
      d.fullPluginCpu = median(d.fullCpu.map((c) => c.plugin));
      d.fullBusy = median(d.fullCpu.map((c) => c.busy));
    }
    out.pluginPeakRssMiB = memoryKiB(plugin.pid).hwm / 1024;
  } finally {
    await docker(['rm', '-f', ...Object.values(names)]);
    await plugin.stop();
    fs.rmSync(workDir, { recursive: true, force: true });
  }
  return out;
}
