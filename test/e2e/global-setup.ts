/**
 * Starts one private dockerd for all end-to-end tests (scripts/dockerd-up.sh) and stops it by pid at
 * the end. The tests reach it through DOCKER_HOST.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

const root = path.resolve(import.meta.dirname, '../..');
export const DOCKERD_DIR = process.env.SHIPLOG_E2E_DOCKERD_DIR ?? '/tmp/shiplog-e2e-dockerd';

export default function setup(project: TestProject): () => void {
  const out = execFileSync('bash', [path.join(root, 'scripts/dockerd-up.sh'), DOCKERD_DIR], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const host = /DOCKER_HOST=(\S+)/.exec(out)?.[1];
  if (host === undefined) throw new Error(`dockerd-up.sh printed no DOCKER_HOST: ${out}`);
  process.env.DOCKER_HOST = host;
  project.provide('dockerHost', host);
  project.provide('dockerdDir', DOCKERD_DIR);
  removeAllContainers(host); // left by a run that was interrupted
  return () => {
    removeAllContainers(host);
    pruneDanglingImages(host);
    execFileSync('bash', [path.join(root, 'scripts/dockerd-down.sh'), DOCKERD_DIR], { stdio: 'inherit' });
  };
}

/**
 * Removes every container of the tests' own dockerd. With vfs each container is a full copy of its
 * image: left in place, repeated runs on one machine filled its disk (2,374 containers, 37 GB).
 */
function removeAllContainers(host: string): void {
  try {
    const ids = execFileSync('docker', ['-H', host, 'ps', '-aq'], { encoding: 'utf8', timeout: 60_000 }).split('\n').filter((id) => id !== '');
    for (let i = 0; i < ids.length; i += 100) {
      execFileSync('docker', ['-H', host, 'rm', '-f', ...ids.slice(i, i + 100)], { stdio: 'ignore', timeout: 300_000 });
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
function pruneDanglingImages(host: string): void {
  try {
    execFileSync('docker', ['-H', host, 'image', 'prune', '-f'], { stdio: 'ignore', timeout: 300_000 });
  } catch (err) {
    process.stderr.write(`e2e: could not prune dangling images: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}
