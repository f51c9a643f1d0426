/**
 * A full disk under the state directory (a 4 MiB tmpfs): the local store's writes fail with ENOSPC.
 * The container must not block or fail, the failure must be counted in /metrics, the sinks (on
 * another disk) must still get every line, and shiplog must keep serving new containers.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DRIVER_NAME, type DriverProcess, IMAGE, dockerLogLines, dockerOk, readFileSink, startDriver, uniqueName, waitForFileSink } from './harness.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'shiplog-full-'));
const stateDir = path.join(work, 'state');
const port = 19500 + (process.pid % 400);
let driver: DriverProcess;

beforeAll(async () => {
  fs.mkdirSync(stateDir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', stateDir]);
  driver = await startDriver({ name: `${DRIVER_NAME}-full`, stateDir, filesDir: path.join(work, 'files'), env: { METRICS_ADDRESS: `127.0.0.1:${port}` } });
});

afterAll(async () => {
  expect(await driver.stop()).toBe(0);
  execFileSync('umount', [stateDir]);
});

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(name)).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

it('the store runs out of disk: the container finishes, the loss is counted, the file sink has every line', async () => {
  const name = uniqueName('full');
  const n = 200_000; // ~7 MB of store records: past the 4 MiB disk
  const started = Date.now();
  await dockerOk(['run', '--name', name, '--log-driver', `${DRIVER_NAME}-full`, '--log-opt', 'max-size=100m', IMAGE, 'sh', '-c', `seq 1 ${n} | awk '{print "${name} " $1}'`]);
  const ranMs = Date.now() - started;
  const lines = await waitForFileSink(driver, name, n, 60_000);
  const failed = await metric('shiplog_store_failed_write_bytes_total{code="ENOSPC"}');
  const stored = await dockerLogLines(name);
  console.log(`[disk full] lines=${n} ran=${ranMs}ms file-sink=${lines.length} docker-logs=${stored.length} store-failed-bytes=${failed}`);
  expect(lines.map((l) => l.message)).toEqual(Array.from({ length: n }, (_, i) => `${name} ${i + 1}`));
  expect(failed).toBeGreaterThan(0);
  // What the store did keep is whole entries, in order, none twice (writes that still fit succeed).
  expect(stored.length).toBeGreaterThan(0);
  expect(stored.length).toBeLessThan(n);
  const numbers = stored.map((l) => Number(l.slice(name.length + 1)));
  expect(stored.every((l, i) => l === `${name} ${numbers[i]}`)).toBe(true);
  expect(numbers.every((v, i) => i === 0 || v > (numbers[i - 1] as number))).toBe(true);

  // shiplog keeps working: a new container starts and logs (its store writes may fail too).
  const next = uniqueName('after');
  await dockerOk(['run', '--name', next, '--log-driver', `${DRIVER_NAME}-full`, IMAGE, 'echo', 'still here']);
  expect((await waitForFileSink(driver, next, 1)).map((l) => l.message)).toEqual(['still here']);
  expect(readFileSink(driver, name)).toHaveLength(n);
});
