/**
 * Per-container `--log-opt` parsing, in one place: the core's table below plus every registered
 * sink's table (sinks/index.ts). Unknown keys and bad values fail StartLogging, so `docker run`
 * fails with a message naming the option.
 */
import { sinkDefinitions } from '../sinks/index.js';
import type { SinkDefinition } from '../sinks/sink.js';
import { OptionError, envNameFor, opt, optionTexts, parseTable, type OptionTable, type ParsedOptions } from './option-table.js';

export const coreOptions = {
  'sinks': opt.custom('file', 'Comma-separated sinks each line is shipped to (file, elasticsearch), or "none" for the local store only. A sink whose address is given (es-url) is added without being listed', 'list', parseList),
  'tag': opt.string('{{.ID}}', 'Template for the tag field, as Docker drivers do: {{.ID}} {{.FullID}} {{.Name}} {{.ImageName}} {{.ImageID}} {{.ImageFullID}} {{.Command}} {{.DaemonName}} {{.Hostname}}'),
  'labels': opt.string('', 'Comma-separated container label names copied onto every record (attrs)'),
  'labels-regex': opt.string('', 'Regular expression: labels whose key matches are copied onto every record'),
  'env': opt.string('', 'Comma-separated container environment variable names copied onto every record'),
  'env-regex': opt.string('', 'Regular expression: environment variables whose name matches are copied onto every record'),
  'max-size': opt.size('20m', 'Local store (docker logs): size at which a container\'s log file is rotated'),
  'max-file': opt.int('5', 'Local store: files kept per container, the current one included', 1, 1000),
  'compress': opt.bool('true', 'Local store: gzip rotated files (no effect with max-file=1), once the container has paused logging for 1 s (30 s after the rotation at the latest), so a burst does not pay for it; at zlib\'s fastest level, on one background thread of its own, 1 MiB at a time (not on zlib\'s shared thread pool, which the elasticsearch sink\'s gzip uses): a 20 MB file of short lines takes ~55 ms of CPU instead of ~350 at the default level, for a file 3–9 % larger'),
  'partial-max-size': opt.size('1m', 'Longest line handed to sinks after joining dockerd\'s 16 KiB chunks; the rest follows in further records marked truncated'),
  'partial-timeout': opt.duration('5s', 'How long an unfinished line waits for its next chunk before it is sent as truncated'),
} as const satisfies OptionTable;

/** Keys dockerd itself reads (it passes them on to plugins too): accepted, not interpreted. */
export const DOCKERD_OPTIONS: readonly string[] = [
  'mode', 'max-buffer-size',
  'cache-disabled', 'cache-max-size', 'cache-max-file', 'cache-compress',
  'cache-labels', 'cache-labels-regex', 'cache-env', 'cache-env-regex', 'cache-tag',
];

export type CoreOptions = ParsedOptions<typeof coreOptions>;

export interface ActiveSink {
  readonly definition: SinkDefinition;
  readonly options: ParsedOptions<OptionTable>;
  /** The text each of the sink's options was parsed from (optionTexts): the spool keeps it to recreate the instance after a restart. */
  readonly raw?: Readonly<Record<string, string>>;
}

export interface ContainerOptions {
  readonly core: CoreOptions;
  readonly sinks: readonly ActiveSink[];
}

function parseList(text: string): string[] {
  const items = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 1 && items[0] === 'none') return [];
  const known = sinkDefinitions.map((d) => d.name);
  for (const item of items) {
    if (!known.includes(item)) throw new Error(`names an unknown sink "${item}" (known: ${known.join(', ')}, none)`);
  }
  return items;
}

export function knownOptionKeys(): string[] {
  return [...Object.keys(coreOptions), ...sinkDefinitions.flatMap((d) => Object.keys(d.options))];
}

/** Parses a container's log-opts with defaults from `env`. Throws OptionError with a user-facing message. */
export function parseContainerOptions(config: Readonly<Record<string, string>>, env: Readonly<Record<string, string | undefined>>): ContainerOptions {
  const known = new Set([...knownOptionKeys(), ...DOCKERD_OPTIONS]);
  for (const key of Object.keys(config)) {
    if (!known.has(key)) {
      throw new OptionError(`unknown log-opt "${key}" for shiplog (known: ${knownOptionKeys().join(', ')})`);
    }
  }
  const core = parseTable(coreOptions, config, env);
  const sinks: ActiveSink[] = [];
  for (const definition of sinkDefinitions) {
    const activated = (definition.activatedBy ?? []).some((key) => (config[key] ?? env[envNameFor(key)] ?? '') !== '');
    if (!core.sinks.includes(definition.name) && !activated) continue;
    const options = parseTable(definition.options, config, env);
    definition.validate?.(options);
    sinks.push({ definition, options, raw: optionTexts(definition.options, config, env) });
  }
  return { core, sinks };
}
