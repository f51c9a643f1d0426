/**
 * dockerd restarted under a running container (live-restore): every FIFO of the old daemon reaches
 * EOF without StopLogging, the new daemon sends StartLogging with new FIFOs for the same container,
 * and nothing written before, during or after is lost or doubled.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DRIVER_NAME, type DriverProcess, IMAGE, dockerOk, readFileSink, root, startDriver, uniqueName, waitFor } from './harness.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shiplog-lr-'));
const dockerdDir = path.join(dir, 'd');
const env = { ...process.env, DOCKERD_EXTRA_ARGS: '--live-restore' };
let driver: DriverProcess;
let host: string;

function dockerdUp(): string {
  const out = execFileSync('bash', [path.join(root, 'scripts/dockerd-up.sh'), dockerdDir], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'inherit'] });
  return /DOCKER_HOST=(\S+)/.exec(out)?.[1] as string;
}
function dockerdDown(): void {
  execFileSync('bash', [path.join(root, 'scripts/dockerd-down.sh'), dockerdDir]);
}

beforeAll(async () => {
  driver = await startDriver({ name: `${DRIVER_NAME}-lr` });
  host = dockerdUp();
});

afterAll(async () => {
  dockerdDown();
  expect(await driver.stop()).toBe(0);
});

it('a container keeps logging through a dockerd restart with live-restore: nothing lost or doubled', async () => {
  const name = uniqueName('lr');
  const n = 3000;
  // ~3 s of output at a steady pace, after a go signal.
  const script = `while [ ! -e /tmp/go ]; do sleep 0.02; done; i=0; while [ $i -lt ${n} ]; do i=$((i+1)); echo "${name} $i"; if [ $((i % 50)) = 0 ]; then sleep 0.05; fi; done; while [ ! -e /tmp/end ]; do sleep 0.02; done`;
  await dockerOk(['run', '-d', '--name', name, '--log-driver', `${DRIVER_NAME}-lr`, IMAGE, 'sh', '-c', script], { host });
  await dockerOk(['exec', name, 'touch', '/tmp/go'], { host });
  await waitFor('lines before the restart', () => (readFileSink(driver, name).length >= 200 ? true : undefined));
  dockerdDown();
  host = dockerdUp();
  await waitFor('the container to have written everything', async () => (readFileSink(driver, name).length >= n ? true : undefined), 60_000);
  await dockerOk(['exec', name, 'touch', '/tmp/end'], { host });
  await dockerOk(['wait', name], { host });
  const expected = Array.from({ length: n }, (_, i) => `${name} ${i + 1}`);
  const logs = (await dockerOk(['logs', name], { host })).stdout.split('\n').filter((l) => l !== '');
  const sink = readFileSink(driver, name).map((l) => l.message);
  const fifoLeft = fs.readdirSync('/run/docker/logging').length;
  console.log(`[dockerd restart] lines=${n} docker-logs=${logs.length} file-sink=${sink.length} FIFOs left in /run/docker/logging=${fifoLeft}`);
  expect(logs).toEqual(expected);
  expect(sink).toEqual(expected);
  expect(fs.readdirSync(path.join(driver.stateDir, 'streams'))).toEqual([]);
});
