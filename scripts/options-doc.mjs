// Prints README's option tables (markdown) from the option tables in dist/, so the docs come from the
// one source of truth. Run after `npm run build`: node scripts/options-doc.mjs
import { coreOptions } from '../dist/src/options.js';
import { settingsTable } from '../dist/src/settings.js';
import { sinkDefinitions } from '../dist/sinks/index.js';
import { envNameFor, plainEnvName } from '../dist/src/option-table.js';

const row = (key, spec, withEnv) => `| \`${key}\` | ${spec.default === '' ? '(unset)' : `\`${spec.default}\``} | ${spec.kind.replaceAll('|', '\\|')} | ${spec.doc}${withEnv ? ` (default from \`${envNameFor(key)}\`)` : ''} |`;
const table = (t, withEnv) => ['| option | default | kind | meaning |', '| --- | --- | --- | --- |', ...Object.entries(t).map(([k, s]) => row(k, s, withEnv))].join('\n');

console.log('### Core log-opts\n');
console.log(table(coreOptions, false));
for (const d of sinkDefinitions) {
  console.log(`\n### \`${d.name}\` sink log-opts\n`);
  console.log(table(d.options, false));
}
console.log('\n### Plugin settings (environment)\n');
console.log(['| variable | default | kind | meaning |', '| --- | --- | --- | --- |',
  ...Object.entries(settingsTable).map(([k, s]) => `| \`${plainEnvName(k)}\` | ${s.default === '' ? '(unset)' : `\`${s.default}\``} | ${s.kind.replaceAll('|', '\\|')} | ${s.doc} |`)].join('\n'));
