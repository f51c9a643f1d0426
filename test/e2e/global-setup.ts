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
  return () => {
    execFileSync('bash', [path.join(root, 'scripts/dockerd-down.sh'), DOCKERD_DIR], { stdio: 'inherit' });
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    dockerHost: string;
    dockerdDir: string;
  }
}
