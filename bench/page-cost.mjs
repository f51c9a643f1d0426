#!/usr/bin/env node
/**
 * What it costs this machine to write bytes into pages the kernel has not used lately: appends
 * 250 MB in 70 KiB writes spread over 20 new files (what the file sink does with 20 busy
 * containers), four rounds, deleting nothing until the end, and prints each round's CPU time.
 *
 *   node bench/page-cost.mjs [dir=/tmp/sl-page-cost]
 *
 * On a VM whose balloon reports free pages to the host, the first round reuses pages the guest freed
 * recently (cheap) and later rounds fault fresh ones in the host (system time several times higher);
 * on bare metal every round costs about the same. BENCHMARKS.md, *Why the targets are still missed*.
 */
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2] ?? '/tmp/sl-page-cost';
const FILES = 20;
const ROUND_BYTES = 250 * 1024 * 1024;
const chunk = Buffer.alloc(70 * 1024, 'x');

fs.rmSync(dir, { recursive: true, force: true });
fs.mkdirSync(dir, { recursive: true });
try {
  for (let round = 0; round < 4; round++) {
    const fds = Array.from({ length: FILES }, (_, i) => fs.openSync(path.join(dir, `r${round}-f${i}`), 'a'));
    const cpu0 = process.cpuUsage();
    const wall0 = performance.now();
    let n = 0;
    for (let written = 0; written < ROUND_BYTES; written += chunk.length) fs.writeSync(fds[n++ % FILES], chunk);
    const cpu = process.cpuUsage(cpu0);
    const wall = performance.now() - wall0;
    for (const fd of fds) fs.closeSync(fd);
    const mb = ROUND_BYTES / 1e6;
    console.log(`round ${round}: user ${(cpu.user / 1e6).toFixed(2)} s, system ${(cpu.system / 1e6).toFixed(2)} s, wall ${(wall / 1000).toFixed(2)} s; ${(cpu.system / 1e3 / mb).toFixed(2)} ms system per MB`);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
