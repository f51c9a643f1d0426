/**
 * shiplog as the host default: a second private dockerd started with `"log-driver"` in its
 * daemon.json (the plugin already running, as dockerd resolves the default driver at start).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DRIVER_NAME, type DriverProcess, IMAGE, dockerOk, root, startDriver, uniqueName, waitForFileSink } from './harness.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shiplog-dj-'));
let driver: DriverProcess;
let host: string;

beforeAll(async () => {
  driver = await startDriver({ name: `${DRIVER_NAME}-dj` });
  const config = path.join(dir, 'daemon.json');
  fs.writeFileSync(config, JSON.stringify({ 'log-driver': `${DRIVER_NAME}-dj`, 'log-opts': { tag: 'dflt-{{.Name}}' } }));
  const out = execFileSync('bash', [path.join(root, 'scripts/dockerd-up.sh'), path.join(dir, 'd')], {
    encoding: 'utf8', env: { ...process.env, DOCKERD_EXTRA_ARGS: `--config-file ${config}` }, stdio: ['ignore', 'pipe', 'inherit'],
  });
  host = /DOCKER_HOST=(\S+)/.exec(out)?.[1] as string;
});

afterAll(async () => {
  execFileSync('bash', [path.join(root, 'scripts/dockerd-down.sh'), path.join(dir, 'd')]);
  expect(await driver.stop()).toBe(0);
});

it('a container run without --log-driver logs through shiplog, with the daemon default log-opts', async () => {
  const name = uniqueName('dj');
  await dockerOk(['run', '--name', name, IMAGE, 'sh', '-c', 'echo via-default; echo e >&2'], { host });
  const inspect = JSON.parse((await dockerOk(['inspect', name], { host })).stdout)[0] as { HostConfig: { LogConfig: { Type: string } } };
  expect(inspect.HostConfig.LogConfig.Type).toBe(`${DRIVER_NAME}-dj`);
  const lines = await waitForFileSink(driver, name, 2);
  expect(lines.map((l) => l.message).sort()).toEqual(['e', 'via-default']);
  expect(lines.every((l) => l.tag === `dflt-${name}`)).toBe(true);
  const logs = await dockerOk(['logs', name], { host });
  expect(logs.stdout).toBe('via-default\n');
  expect(logs.stderr).toBe('e\n');
});
