import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSettings, settingsTable } from '../src/settings.js';
import { v8FlagsFor } from '../src/v8-flags.js';

const ROOT = path.resolve(import.meta.dirname, '..');

/**
 * A child process applies the flags the way main.ts does (dist/src/v8-flags.js), then fills and drops
 * old-generation memory under --trace-incremental-marking: the trace says whether V8 still started
 * incremental marking after the flag was set at run time.
 */
function incrementalStarts(incrementalMarking: boolean): number {
  const script = `
    import { applyV8Flags } from ${JSON.stringify(path.join(ROOT, 'dist/src/v8-flags.js'))};
    applyV8Flags({ 'incremental-marking': ${incrementalMarking} });
    let keep = [];
    for (let round = 0; round < 30; round++) {
      keep = [];
      for (let i = 0; i < 100000; i++) keep.push({ i, s: 'x' + i, a: [i, i + 1] });
    }
    console.log('done', keep.length);
  `;
  const r = spawnSync(process.execPath, ['--trace-incremental-marking', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout).toContain('done 100000');
  return (r.stdout.match(/\[IncrementalMarking\] Start \(/g) ?? []).length;
}

describe('V8 flags from the settings', () => {
  it('turns incremental marking off by default (INCREMENTAL_MARKING=false) and leaves V8 alone when it is on', () => {
    expect(settingsTable['incremental-marking'].default).toBe('false');
    expect(v8FlagsFor(readSettings({}))).toEqual(['--no-incremental-marking']);
    expect(v8FlagsFor(readSettings({ INCREMENTAL_MARKING: 'true' }))).toEqual([]);
    expect(() => readSettings({ INCREMENTAL_MARKING: 'sometimes' })).toThrow(/INCREMENTAL_MARKING/);
  });

  it('takes effect when set at run time: no incremental marking starts after it, while V8 starts some without it', () => {
    expect(incrementalStarts(true)).toBeGreaterThan(0);
    expect(incrementalStarts(false)).toBe(0);
  });
});
