/**
 * Starts one private dockerd for all end-to-end tests (scripts/dockerd-up.sh) and stops it by pid at
 * the end. The tests reach it through DOCKER_HOST.
 *
 * The teardown awaits its commands instead of running them synchronously: removing a suite's worth
 * of vfs containers and stopping dockerd takes over 10 s, and a blocked event loop kept vitest from
 * seeing its last test worker exit, so it printed "Timeout terminating forks worker" for that file
 * at the end of every full run.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';

const execFileAsync = promisify(execFile);

const root = path.resolve(import.meta.dirname, '../..');
export const DOCKERD_DIR = process.env.SHIPLOG_E2E_DOCKERD_DIR ?? '/tmp/shiplog-e2e-dockerd';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const out = execFileSync('bash', [path.join(root, 'scripts/dockerd-up.sh'), DOCKERD_DIR], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const host = /DOCKER_HOST=(\S+)/.exec(out)?.[1];
  if (host === undefined) throw new Error(`dockerd-up.sh printed no DOCKER_HOST: ${out}`);
  process.env.DOCKER_HOST = host;
  project.provide('dockerHost', host);
  project.provide('dockerdDir', DOCKERD_DIR);
  await removeAllContainers(host); // left by a run that was interrupted
  return async () => {
    await removeAllContainers(host);
    await pruneDanglingImages(host);
    await runWithOutput('bash', [path.join(root, 'scripts/dockerd-down.sh'), DOCKERD_DIR]);
  };
}

/** Runs a command with the test run's stdout and stderr; rejects if it fails. */
function runWithOutput(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} exited ${code ?? signal}`))));
  });
}

/**
 * Removes every container of the tests' own dockerd. With vfs each container is a full copy of its
 * image: left in place, repeated runs on one machine filled its disk (2,374 containers, 37 GB).
 */
async function removeAllContainers(host: string): Promise<void> {
  try {
    const { stdout } = await execFileAsync('docker', ['-H', host, 'ps', '-aq'], { encoding: 'utf8', timeout: 60_000 });
    const ids = stdout.split('\n').filter((id) => id !== '');
    for (let i = 0; i < ids.length; i += 100) {
      await execFileAsync('docker', ['-H', host, 'rm', '-f', ...ids.slice(i, i + 100)], { timeout: 300_000 });
    }
  } catch (err) {
    process.stderr.write(`e2e: could not remove the test containers: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}

declare module 'vitest' {
  export interface ProvidedContext {
    dockerHost: string;
    dockerdDir: string;
  }
}

/** Drops the layers of earlier builds of the plugin image that the current one no longer uses. */
async function pruneDanglingImages(host: string): Promise<void> {
  try {
    await execFileAsync('docker', ['-H', host, 'image', 'prune', '-f'], { timeout: 300_000 });
  } catch (err) {
    process.stderr.write(`e2e: could not prune dangling images: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}
