/**
 * Turns a run's results into Markdown and writes it into the output file between
 * `<!-- bench:generated:start -->` and `<!-- bench:generated:end -->`; text outside the markers (the
 * hand-written analysis) is kept. A file without markers gets a short header and the section.
 */
import fs from 'node:fs';
import { median, minMax } from './lib.mjs';

const START = '<!-- bench:generated:start -->';
const END = '<!-- bench:generated:end -->';

const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '–');
const big = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en') : '–');
const pass = (ok) => (ok === undefined ? 'n/a' : ok ? '**pass**' : '**FAIL**');

/** Per workload and driver: medians over the repetitions without errors. */
export function summariseE2e(e2e) {
  const out = {};
  for (const [wlKey, wl] of Object.entries(e2e.workloads)) {
    out[wlKey] = {};
    for (const driver of Object.keys(e2e.drivers)) {
      const runs = e2e.results.filter((r) => r.workload === wlKey && r.driver === driver);
      const ok = runs.filter((r) => r.error === undefined);
      const delivered = median(ok.map((r) => r.deliveredMs));
      out[wlKey][driver] = {
        runs: runs.length, failed: runs.length - ok.length, errors: runs.filter((r) => r.error).map((r) => r.error),
        doneMs: median(ok.map((r) => r.doneMs)), deliveredMs: delivered, deliveredRange: minMax(ok.map((r) => r.deliveredMs)),
        linesPerSec: (wl.linesEach * wl.containers) / (delivered / 1000), mbPerSec: wl.bytes / 1e6 / (delivered / 1000),
        dockerdCpu: median(ok.map((r) => r.cpu.dockerd)), pluginCpu: median(ok.map((r) => r.cpu.plugin)), esCpu: median(ok.map((r) => r.cpu.es)),
        cpuRatio: median(ok.filter((r) => r.cpu.plugin > 0).map((r) => r.cpu.plugin / r.cpu.dockerd)),
        mainCpu: median(ok.filter((r) => r.pluginThreads?.main).map((r) => r.pluginThreads.main.user + r.pluginThreads.main.sys)),
        helperCpu: median(ok.filter((r) => r.pluginThreads?.main).map((r) => (r.pluginThreads.helpers?.user ?? 0) + (r.pluginThreads.helpers?.sys ?? 0))),
        sysCpu: median(ok.filter((r) => r.pluginThreads?.main).map((r) => r.pluginThreads.main.sys + (r.pluginThreads.helpers?.sys ?? 0))),
        hwmMiB: median(ok.map((r) => (r.pluginHwmKiB ?? NaN) / 1024)), hwmMaxMiB: Math.max(...ok.map((r) => (r.pluginHwmKiB ?? -Infinity) / 1024)),
        esHwmMiB: median(ok.map((r) => (r.esHwmKiB ?? NaN) / 1024)),
        load: median(ok.map((r) => r.loadBefore)), busy: median(ok.map((r) => r.machineBusyShare)),
      };
    }
    // Paired ratios: each repetition's run against the same repetition's reference run.
    for (const driver of Object.keys(e2e.drivers)) {
      const s = out[wlKey][driver];
      for (const ref of ['null', 'local']) {
        const pairs = e2e.results.filter((r) => r.workload === wlKey && r.driver === driver && !r.error).map((r) => {
          const o = e2e.results.find((x) => x.workload === wlKey && x.driver === ref && x.rep === r.rep && !x.error);
          return o === undefined ? NaN : (ref === 'local' ? o.doneMs : o.deliveredMs) / r.deliveredMs;
        });
        s[`pairedVs_${ref}`] = median(pairs);
      }
    }
  }
  return out;
}

/**
 * The wall time the CPU seconds measured in a run need at least on `cores` cores (dockerd's, the
 * plugin's and fake-es's; the containers' own and containerd-shim's are not measured, so the real
 * floor is higher), against the wall time the target allows: past it, no scheduling meets the target
 * with that much CPU, and only spending less CPU can.
 */
function cpuFloor(d, nullPlugin, min, cores) {
  if (!(cores > 0)) return '';
  const floorS = (d.dockerdCpu + d.pluginCpu + (d.esCpu > 0 ? d.esCpu : 0)) / cores;
  const allowedS = nullPlugin.deliveredMs / 1000 / min;
  return `; CPU floor ${f(floorS)} s of the ${f(allowedS)} s allowed${floorS > allowedS ? ': unreachable with this much CPU' : ''}`;
}

export function targets(results) {
  const t = [];
  const e2e = results.e2e !== undefined ? summariseE2e(results.e2e) : undefined;
  if (e2e !== undefined) {
    for (const [driver, min, label] of [['shiplog', 0.95, 'shiplog + file sink + store'], ['shiplog-es', 0.9, 'shiplog + ES sink (fake-es) + store']]) {
      for (const [wl, s] of Object.entries(e2e)) {
        if (s[driver] === undefined || s.null === undefined) continue;
        const ratio = s[driver].linesPerSec / s.null.linesPerSec;
        const floor = cpuFloor(s[driver], s.null, min, results.machine?.nproc);
        t.push({ target: `${label} ≥ ${min}× null plugin lines/s — ${wl}`, measured: `${f(ratio)}× (paired ${f(s[driver].pairedVs_null)}×; ${big(s[driver].linesPerSec)} vs ${big(s.null.linesPerSec)} lines/s)${floor}`, ok: ratio >= min, cpuFloor: floor !== '' });
      }
    }
    for (const [wl, s] of Object.entries(e2e)) {
      if (s.shiplog === undefined) continue;
      t.push({ target: `shiplog CPU ≤ 0.5× dockerd CPU (file sink) — ${wl}`, measured: `${f(s.shiplog.cpuRatio)}× (${f(s.shiplog.pluginCpu)} s vs ${f(s.shiplog.dockerdCpu)} s)`, ok: s.shiplog.cpuRatio <= 0.5 });
    }
    for (const [wl, s] of Object.entries(e2e)) {
      if (s['shiplog-es'] === undefined) continue;
      t.push({ target: `shiplog CPU ≤ 0.5× dockerd CPU (ES sink) — ${wl}`, measured: `${f(s['shiplog-es'].cpuRatio)}× (${f(s['shiplog-es'].pluginCpu)} s vs ${f(s['shiplog-es'].dockerdCpu)} s)`, ok: s['shiplog-es'].cpuRatio <= 0.5 });
    }
    for (const driver of ['shiplog', 'shiplog-es']) {
      const s = e2e.many?.[driver];
      if (s === undefined) continue;
      t.push({ target: `plugin peak RSS ≤ 100 MiB, 20 containers logging (${driver === 'shiplog' ? 'file sink' : 'ES sink'})`, measured: `max ${f(s.hwmMaxMiB, 0)} MiB (median ${f(s.hwmMiB, 0)} MiB)`, ok: s.hwmMaxMiB <= 100 });
    }
  }
  const logs = results.logs;
  if (logs !== undefined && logs.drivers.shiplog !== undefined) {
    const s = logs.drivers.shiplog;
    const l = logs.drivers.local;
    const size = `${f(logs.storeMiB / 1024, 2)} GiB`;
    t.push({ target: `docker logs --tail 100 on ${size}: faster than local`, measured: `${f(s.tail100Ms, 0)} ms vs ${f(l.tail100Ms, 0)} ms`, ok: s.tail100Ms < l.tail100Ms });
    t.push({ target: `docker logs full read on ${size}: ≥ local's MB/s`, measured: `${f(s.fullMBps, 0)} MB/s vs ${f(l.fullMBps, 0)} MB/s`, ok: s.fullMBps >= l.fullMBps && s.complete });
  }
  return t;
}

function machineSection(r) {
  const m = r.machine;
  const loads = Object.entries(r.load).map(([k, v]) => `${k} ${v.map((x) => x.toFixed(2)).join(' ')}`).join('; ');
  return [
    '| | |', '| --- | --- |',
    `| CPU | ${m.nproc} × ${m.cpuModel} (\`nproc\` ${m.nproc}) |`,
    `| memory | ${m.memGiB} GiB |`,
    `| kernel | ${m.kernel} |`,
    `| node | ${m.node}; shiplog's NODE_OPTIONS: ${m.shiplogNodeOptions === undefined ? 'not recorded' : m.shiplogNodeOptions === '' ? 'none' : `\`${m.shiplogNodeOptions}\``} (config.json's default unless a run says otherwise) |`,
    `| dockerd | ${m.dockerd}, storage driver ${m.storageDriver}; CLI: ${m.dockerCli} |`,
    `| code | commit ${m.commit}${m.dirtyFiles > 0 ? ` plus ${m.dirtyFiles} uncommitted files in src/ and sinks/ (the shared working tree, built into dist/)` : ''} |`,
    `| run | ${r.started}, ${f(r.minutes, 1)} min; ${r.quick ? 'QUICK (development sizes, not a result)' : 'full'}; reps ${r.options.reps}, scale ${r.options.scale}, store ${r.options.storeMiB} MiB |`,
    `| load average (1/5/15 min) | ${loads} |`,
  ].join('\n');
}

function e2eSection(results) {
  const e2e = results.e2e;
  const s = summariseE2e(e2e);
  const lines = [e2e.warmUp === false
    ? 'Each plugin process measured from its start (`--cold`): JIT compilation and lazy loading are in the numbers.'
    : 'Each plugin process is warmed with a tenth of the workload (same container count) before its measured run; its CPU and peak RSS are counted from after that.', ''];
  for (const [wlKey, wl] of Object.entries(e2e.workloads)) {
    const byDriver = s[wlKey];
    lines.push(`#### ${wlKey}: ${wl.label} (${f(wl.bytes / 1e6, 1)} MB)`, '');
    lines.push('| driver | container done, s | delivered, s (min–max) | lines/s | MB/s | wall × null | wall × local | dockerd CPU, s | plugin CPU, s | main thread / other threads / kernel part of both | plugin/dockerd CPU | plugin peak RSS, MiB | runs |');
    lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    const ref = byDriver.null?.deliveredMs;
    const loc = byDriver.local?.doneMs;
    for (const [driver, d] of Object.entries(byDriver)) {
      const es = d.esCpu > 0 ? ` (+ fake-es ${f(d.esCpu)})` : '';
      lines.push(`| ${e2e.drivers[driver].label} | ${f(d.doneMs / 1000)} | ${f(d.deliveredMs / 1000)} (${f(d.deliveredRange[0] / 1000)}–${f(d.deliveredRange[1] / 1000)}) | ${big(d.linesPerSec)} | ${f(d.mbPerSec, 1)} | `
        + `${f(d.deliveredMs / ref)} | ${f(d.deliveredMs / loc)} | ${f(d.dockerdCpu)} | ${d.pluginCpu > 0 ? f(d.pluginCpu) + es : '–'} | `
        + `${Number.isFinite(d.mainCpu) ? `${f(d.mainCpu)} / ${f(d.helperCpu)} / ${f(d.sysCpu)}` : '–'} | ${Number.isFinite(d.cpuRatio) ? f(d.cpuRatio) : '–'} | `
        + `${Number.isFinite(d.hwmMiB) ? `${f(d.hwmMiB, 0)} (max ${f(d.hwmMaxMiB, 0)})` : '–'} | ${d.runs - d.failed}/${d.runs}${d.failed > 0 ? ` (${[...new Set(d.errors)].join('; ')})` : ''} |`);
    }
    const loads = Object.values(byDriver).map((d) => d.load);
    const busy = Object.values(byDriver).map((d) => d.busy);
    lines.push('', `Load average (1 min) before these runs: ${f(Math.min(...loads))}–${f(Math.max(...loads))}; machine busy during runs: ${f(Math.min(...busy) * 100, 0)}–${f(Math.max(...busy) * 100, 0)} % of ${results.machine.nproc} cores.`, '');
  }
  return lines.join('\n');
}

function logsSection(logs, nproc) {
  const s = logs.drivers.shiplog;
  const l = logs.drivers.local;
  const row = (name, a, b, unit = 'ms', better = 'lower') => `| ${name} | ${a} ${unit} | ${b} ${unit} | ${f(better === 'lower' ? Number(b) / Number(a) : Number(a) / Number(b))}× |`;
  return [
    `Store: ${logs.bulkLines.toLocaleString('en')} + ${logs.tailLines.toLocaleString('en')} lines of 200 B (a ${logs.windowS + 2} s pause before the last ${logs.tailLines.toLocaleString('en')}), rotation \`${logs.rotation}\` (max-size, max-file; rotated files gzipped) for both; filled in ${f(logs.fillSeconds, 0)} s with both containers at once.`,
    `On disk: shiplog ${f(s.storeBytes / 2 ** 20, 0)} MiB in ${s.files.length} files, local ${f(l.storeBytes / 2 ** 20, 0)} MiB in ${l.files.length} files. Full reads returned ${s.fullReadBytes.toLocaleString('en')} (shiplog) and ${l.fullReadBytes.toLocaleString('en')} (local) bytes: ${s.complete && l.complete ? 'both complete' : 'INCOMPLETE'}. \`--since\` (last line − ${logs.windowS} s) returned ${s.sinceLines} and ${l.sinceLines} lines.`,
    `Page cache warm; the CLI's output goes to /dev/null; medians of ${s.tail100.length} (tail, since) and ${s.full.length} (full) alternating runs. shiplog's RSS after the fill ${f(logs.pluginRssAfterFillMiB, 0)} MiB, peak ${f(logs.pluginPeakRssMiB, 0)} MiB.`,
    '',
    '| query | shiplog | local | shiplog speed × local |', '| --- | ---: | ---: | ---: |',
    row('`--tail 100`', f(s.tail100Ms, 0), f(l.tail100Ms, 0)),
    row(`\`--since\` (last ${logs.windowS} s)`, f(s.since60Ms, 0), f(l.since60Ms, 0)),
    row('full read', f(s.fullMs, 0), f(l.fullMs, 0)),
    row('full read throughput', f(s.fullMBps, 0), f(l.fullMBps, 0), 'MB/s', 'higher'),
    ...(s.fullCpu === undefined ? [] : [
      '',
      `CPU of a full read (medians): dockerd ${f(s.fullDockerdCpu)} s and shiplog ${f(s.fullPluginCpu)} s for shiplog's, dockerd ${f(l.fullDockerdCpu)} s for local's; `
        + `the machine was ${f(s.fullBusy * 100, 0)} % and ${f(l.fullBusy * 100, 0)} % busy (of ${nproc} cores; the rest of the busy share is mostly the docker CLI).`,
    ]),
  ].join('\n');
}

function microSection(micro) {
  const lines = [];
  for (const [key, st] of Object.entries(micro.streams)) {
    lines.push(`**${key}**: ${st.label}, ${f(st.bytes / 1e6, 1)} MB of frames.`, '');
    lines.push('| variant | ms | M frames/s | MB/s | × FIFO read |', '| --- | ---: | ---: | ---: | ---: |');
    const rs = micro.results.filter((r) => r.stream === key);
    const floor = rs.find((r) => r.variant === 'fifo-read');
    for (const r of rs) lines.push(`| ${r.label} | ${f(r.ms, 0)} | ${f(r.framesPerSec / 1e6)} | ${f(r.mbPerSec, 0)} | ${f(floor.ms / r.ms)} |`);
    lines.push('');
  }
  return lines.join('\n');
}

function profileSection(profiles) {
  const lines = [];
  for (const [key, p] of Object.entries(profiles)) {
    lines.push(`**${key === 'file' ? 'file sink' : 'ES sink (fake-es)'}**: workloads ${p.workloads.join(', ')} through one shiplog under \`--cpu-prof\`; ${f(p.busyMs / 1000)} s on CPU (${f(p.idleMs / 1000)} s idle). Top 15 frames by self time:`, '');
    lines.push('| self ms | share | function | where | called from (nearest shiplog or package frame) |', '| ---: | ---: | --- | --- | --- |');
    for (const t of p.top) lines.push(`| ${f(t.selfMs, 0)} | ${f(t.share * 100, 1)} % | \`${t.fn}\` | ${t.url === '' ? 'native' : `${t.url}:${t.line}`} | ${t.from.join('; ')} |`);
    lines.push('', 'Self time by where the code lives: ' + p.byPlace.map((b) => `${b.place} ${f(b.share * 100, 1)} %`).join(', ') + '.', '');
  }
  return lines.join('\n');
}

export function renderGenerated(results) {
  const parts = [START, '', `## Results of the last run${results.quick ? ' (QUICK: development sizes, not a result)' : ''}`, '', machineSection(results), ''];
  const t = targets(results);
  if (t.length > 0) {
    parts.push('### Targets (issue 6)', '', '| target | measured (medians) | result |', '| --- | --- | --- |');
    for (const x of t) parts.push(`| ${x.target} | ${x.measured} | ${pass(x.ok)} |`);
    parts.push('');
    if (t.some((x) => x.cpuFloor === true)) {
      parts.push('*CPU floor*: the run\'s CPU seconds of dockerd, the plugin and fake-es divided by the cores, the least wall time they need here; the containers\' and containerd-shims\' CPU is not measured, so the real floor is higher. Past the wall time the target allows (the null plugin\'s divided by the target), only spending less CPU can meet it.', '');
    }
  }
  if (results.e2e !== undefined) parts.push('### End to end', '', e2eSection(results));
  if (results.logs !== undefined) parts.push('### docker logs', '', logsSection(results.logs, results.machine?.nproc), '');
  if (results.micro !== undefined) parts.push('### Micro: framing + decode', '', microSection(results.micro));
  if (results.profiles !== undefined) parts.push('### CPU profile of shiplog under the end-to-end load', '', profileSection(results.profiles));
  parts.push(END);
  return parts.join('\n');
}

export function writeReport(file, results) {
  const generated = renderGenerated(results);
  let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  if (a !== -1 && b > a) text = text.slice(0, a) + generated + text.slice(b + END.length);
  else text = `# shiplog benchmarks\n\nRun with \`npm run bench\` (see bench/run.mjs).\n\n${generated}\n${text}`;
  fs.writeFileSync(file, text);
}
