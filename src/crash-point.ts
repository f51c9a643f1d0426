/**
 * Test-only crash points. `SHIPLOG_CRASH_AT=<point>:<n>` makes the process SIGKILL itself the n-th
 * time it passes `<point>`, so the end-to-end tests can kill shiplog exactly inside a window that a
 * random `kill -9` hits only sometimes (between reading a FIFO chunk and finishing it). Unset — always,
 * outside tests — a pass costs one comparison.
 */
const spec = /^([a-z-]+):(\d+)$/.exec(process.env.SHIPLOG_CRASH_AT ?? '');
const armedPoint = spec?.[1];
let remaining = spec === null ? 0 : Number(spec[2]);

export function crashPoint(point: string): void {
  if (point !== armedPoint || remaining <= 0) return;
  remaining--;
  if (remaining === 0) process.kill(process.pid, 'SIGKILL');
}
