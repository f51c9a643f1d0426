/** README must stay true: every option and setting appears in it with its current default. */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sinkDefinitions } from '../sinks/index.js';
import { plainEnvName, type OptionTable } from '../src/option-table.js';
import { coreOptions } from '../src/options.js';
import { settingsTable } from '../src/settings.js';

const readme = fs.readFileSync(path.join(import.meta.dirname, '../README.md'), 'utf8');
const shown = (def: string) => (def === '' ? '(unset)' : `\`${def}\``);

function expectDocumented(table: OptionTable, name: (k: string) => string): void {
  for (const [key, spec] of Object.entries(table)) {
    expect(readme, `README row for ${name(key)}`).toContain(`| \`${name(key)}\` | ${shown(spec.default)} |`);
  }
}

describe('README', () => {
  it('documents every core log-opt with its default', () => expectDocumented(coreOptions, (k) => k));
  it('documents every sink log-opt with its default', () => {
    for (const d of sinkDefinitions) expectDocumented(d.options, (k) => k);
  });
  it('documents every plugin setting with its default', () => expectDocumented(settingsTable, plainEnvName));
  it('names the test command CI runs', () => {
    expect(readme).toContain('npm test');
    expect(fs.readFileSync(path.join(import.meta.dirname, '../.ci/run'), 'utf8')).toMatch(/^npm test$/m);
  });
});
