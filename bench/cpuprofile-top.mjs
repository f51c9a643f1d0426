#!/usr/bin/env node
/**
 * Reads a V8 .cpuprofile (node --cpu-prof) and prints the top frames by self time, plus self time by
 * where the code lives (shiplog's src/ and sinks/, each npm package, node internals, GC, idle).
 *
 *   node bench/cpuprofile-top.mjs <file.cpuprofile> [count=15]
 *
 * Self time is counted in samples, each worth the profile's median sampling interval, and not by the
 * time until the next sample (as Chrome DevTools does): on a busy 2-core machine the sampling thread is
 * sometimes not scheduled for ~100 ms, and a time-weighted count charges that whole gap to whatever
 * frame came before it. Frames are merged by function name + file + line, so one function reached from
 * many call paths is one row; "from" names its heaviest callers in shiplog's code or a package.
 */
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';

function shortUrl(url) {
  let u = url.replace(/^file:\/\//, '');
  const dist = u.lastIndexOf('/dist/');
  if (dist !== -1) u = u.slice(dist + 1);
  const nm = u.lastIndexOf('node_modules/');
  if (nm !== -1) u = u.slice(nm);
  return u;
}

function place(url) {
  if (url === '') return 'native / V8';
  if (url.startsWith('node:')) return 'node internals';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm !== null) return `npm: ${nm[1]}`;
  if (url.includes('dist/src/')) return 'shiplog src/';
  if (url.includes('dist/sinks/')) return 'shiplog sinks/';
  return 'other';
}

/** { totalMs, idleMs, top: [{ fn, url, line, selfMs, share }], byPlace: [{ place, selfMs, share }] } */
export function summariseProfile(profile, count = 15) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
  /** The nearest caller that is JavaScript of shiplog or a package (not node internals or native). */
  const callerOf = (id) => {
    for (let p = parentOf.get(id); p !== undefined; p = parentOf.get(p)) {
      const cf = byId.get(p)?.callFrame;
      if (cf !== undefined && cf.url !== '' && !cf.url.startsWith('node:')) return `${cf.functionName || '(anonymous)'} (${shortUrl(cf.url)}:${cf.lineNumber + 1})`;
    }
    return '';
  };
  const self = new Map();
  const { samples, timeDeltas } = profile;
  const sorted = [...timeDeltas].sort((a, b) => a - b);
  const intervalMs = (sorted[sorted.length >> 1] ?? 1000) / 1000;
  for (const id of samples) self.set(id, (self.get(id) ?? 0) + intervalMs);
  const frames = new Map();
  const places = new Map();
  let totalMs = 0;
  let idleMs = 0;
  for (const [id, ms] of self) {
    const cf = byId.get(id)?.callFrame ?? { functionName: '?', url: '', lineNumber: -1 };
    const fn = cf.functionName === '' ? '(anonymous)' : cf.functionName;
    totalMs += ms;
    if (fn === '(idle)') { idleMs += ms; continue; }
    const url = shortUrl(cf.url);
    const key = `${fn}\u0000${url}\u0000${cf.lineNumber}`;
    const f = frames.get(key) ?? { fn, url, line: cf.lineNumber + 1, selfMs: 0, callers: new Map() };
    f.selfMs += ms;
    const caller = callerOf(id);
    f.callers.set(caller, (f.callers.get(caller) ?? 0) + ms);
    frames.set(key, f);
    const p = fn === '(garbage collector)' ? 'GC' : fn === '(program)' ? '(program): V8/native outside JS' : place(url);
    places.set(p, (places.get(p) ?? 0) + ms);
  }
  const busy = totalMs - idleMs;
  const top = [...frames.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, count).map(({ callers, ...f }) => ({
    ...f,
    share: f.selfMs / busy,
    // Where the time was spent from: the heaviest shiplog/package callers (GC and idle have none).
    from: [...callers].filter(([c]) => c !== '').sort((a, b) => b[1] - a[1]).slice(0, 2).map(([c, ms]) => `${c} ${Math.round((ms / f.selfMs) * 100)}%`),
  }));
  const byPlace = [...places].map(([p, ms]) => ({ place: p, selfMs: ms, share: ms / busy })).sort((a, b) => b.selfMs - a.selfMs);
  return { totalMs, idleMs, busyMs: busy, samples: samples.length, intervalMs, top, byPlace };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: node bench/cpuprofile-top.mjs <file.cpuprofile> [count]\n');
    process.exit(2);
  }
  const s = summariseProfile(JSON.parse(fs.readFileSync(file, 'utf8')), Number(process.argv[3] ?? 15));
  process.stdout.write(`sampled ${(s.totalMs / 1000).toFixed(2)} s, idle ${(s.idleMs / 1000).toFixed(2)} s, busy ${(s.busyMs / 1000).toFixed(2)} s\n\n`);
  process.stdout.write('self ms   share  function (file:line)\n');
  for (const f of s.top) process.stdout.write(`${f.selfMs.toFixed(0).padStart(7)}  ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.fn} (${f.url || 'native'}:${f.line})${f.from.length > 0 ? `  <- ${f.from.join(', ')}` : ''}\n`);
  process.stdout.write('\nself time by place\n');
  for (const p of s.byPlace) process.stdout.write(`${p.selfMs.toFixed(0).padStart(7)}  ${(p.share * 100).toFixed(1).padStart(5)}%  ${p.place}\n`);
}
