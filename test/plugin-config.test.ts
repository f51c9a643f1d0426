/**
 * config.json (the managed plugin's manifest) must stay in step with the code: every plugin setting
 * and every log-opt default is declared as an env (`docker plugin set` refuses undeclared names), with
 * the code's defaults, and the packaging facts dockerd relies on hold.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sinkDefinitions } from '../sinks/index.js';
import { FIFO_DIR } from '../src/driver.js';
import { envNameFor, plainEnvName } from '../src/option-table.js';
import { coreOptions } from '../src/options.js';
import { settingsTable } from '../src/settings.js';

interface PluginEnv { name: string; value?: string; settable: string[]; description: string }
interface PluginMount { name: string; source: string; destination: string; type: string; options: string[]; settable: string[] }
interface PluginConfig {
  entrypoint: string[];
  workdir: string;
  interface: { types: string[]; socket: string };
  network: { type: string };
  propagatedMount: string;
  mounts: PluginMount[];
  env: PluginEnv[];
  linux: { capabilities: string[] };
}

const root = path.join(import.meta.dirname, '..');
const config = JSON.parse(fs.readFileSync(path.join(root, 'config.json'), 'utf8')) as PluginConfig;
const env = new Map(config.env.map((e) => [e.name, e]));
/** Settings whose value the packaging fixes (socket inside the rootfs, the state mount's destination). */
const FIXED = new Set(['socket', 'state-dir']);
/** dockerd SIGKILLs a plugin 10 s after SIGTERM. */
const DOCKERD_KILL_AFTER_MS = 10_000;

describe('config.json', () => {
  it('is a logging driver listening where the code listens by default', () => {
    expect(config.interface.types).toEqual(['docker.logdriver/1.0']);
    expect(config.interface.socket).toBe(path.basename(settingsTable.socket.default));
    expect(path.dirname(settingsTable.socket.default)).toBe('/run/docker/plugins');
  });

  it('runs the built entry point with node by absolute path, from the Dockerfile\'s directory', () => {
    const dockerfile = fs.readFileSync(path.join(root, 'Dockerfile'), 'utf8');
    expect(config.entrypoint).toEqual(['/usr/local/bin/node', '/opt/shiplog/dist/src/main.js']);
    expect(dockerfile).toContain(`WORKDIR ${config.workdir}`);
    expect(dockerfile).toMatch(/COPY --from=build \/src\/dist \.\/dist/);
  });

  it('declares every plugin setting with the code default, settable unless the packaging fixes it', () => {
    for (const [key, spec] of Object.entries(settingsTable)) {
      const e = env.get(plainEnvName(key));
      expect(e, plainEnvName(key)).toBeDefined();
      if (key === 'shutdown-timeout') continue; // below
      expect(e?.value, plainEnvName(key)).toBe(spec.default);
      expect(e?.settable, plainEnvName(key)).toEqual(FIXED.has(key) ? [] : ['value']);
    }
  });

  it('shuts down well inside the time dockerd gives a plugin before SIGKILL', () => {
    const e = env.get('SHUTDOWN_TIMEOUT');
    expect(e?.settable).toEqual(['value']);
    expect(settingsTable['shutdown-timeout'].parse(e?.value ?? '')).toBeLessThanOrEqual(DOCKERD_KILL_AFTER_MS - 2000);
  });

  it('declares every log-opt default (LOG_OPT_*) as settable and without a value, so the code default applies', () => {
    // dockerd sets an env declared with "value": "" as an empty variable (which is not a valid size,
    // duration...); one declared without a value is not set at all until `docker plugin set`.
    const keys = [...Object.keys(coreOptions), ...sinkDefinitions.flatMap((d) => Object.keys(d.options))];
    for (const key of keys) {
      const e = env.get(envNameFor(key));
      expect(e?.settable, envNameFor(key)).toEqual(['value']);
      expect(e && 'value' in e, envNameFor(key)).toBe(false);
    }
    for (const e of config.env) expect(e.description.length, e.name).toBeGreaterThan(10);
  });

  it('lets NODE_OPTIONS be set (Node flags), with the 4 MiB young generation by default, the same default npm start uses', () => {
    const e = env.get('NODE_OPTIONS');
    expect(e?.settable).toEqual(['value']);
    expect(e?.value).toBe('--max-semi-space-size=4');
    const start = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['start'];
    // sh's ${VAR-default}: the default only when NODE_OPTIONS is unset, so NODE_OPTIONS= clears it.
    expect(start).toContain(`NODE_OPTIONS="\${NODE_OPTIONS-${e?.value ?? ''}}" node dist/src/main.js`);
  });

  it('mounts the state directory and the file sink directory from the host, sources settable', () => {
    const state = config.mounts.find((m) => m.name === 'state');
    const files = config.mounts.find((m) => m.name === 'files');
    expect(state).toMatchObject({ source: '/var/lib/shiplog', destination: settingsTable['state-dir'].default, type: 'bind', settable: ['source'] });
    expect(files).toMatchObject({ source: '/var/log/shiplog', type: 'bind', settable: ['source'] });
    const filePath = sinkDefinitions.find((d) => d.name === 'file')?.options['file-path']?.default ?? '';
    expect(filePath.startsWith(`${files?.destination}/`)).toBe(true);
    for (const m of config.mounts) expect(m.options).toEqual(['rbind', 'rw']);
  });

  it('keeps the FIFOs outside the rootfs (propagatedMount), so they survive docker plugin upgrade', () => {
    expect(config.propagatedMount).toBe(FIFO_DIR);
  });

  it('asks for no extra capability and uses the host network (sinks ship over it)', () => {
    expect(config.linux.capabilities).toEqual([]);
    expect(config.network.type).toBe('host');
  });
});
