/**
 * Declarative option tables: each option has its default and doc string side by side, one parser, and
 * a single error format. The core and every sink declare their own table; options.ts merges them.
 */
import { parseBool, parseDuration, parseInteger, parseSize } from './units.js';

export interface OptionSpec<T> {
  /** Default as text, parsed like a user value; '' means "unset" for optional strings. */
  readonly default: string;
  readonly doc: string;
  /** Shown in README's table and in error messages: "size", "duration", ... */
  readonly kind: string;
  /** Secrets are never logged. */
  readonly secret?: boolean;
  parse(text: string): T;
}

export type OptionTable = Readonly<Record<string, OptionSpec<unknown>>>;
export type ParsedOptions<T extends OptionTable> = { -readonly [K in keyof T]: T[K] extends OptionSpec<infer V> ? V : never };

export class OptionError extends Error {}

export const opt = {
  size: (def: string, doc: string): OptionSpec<number> => ({ default: def, doc, kind: 'size', parse: parseSize }),
  duration: (def: string, doc: string): OptionSpec<number> => ({ default: def, doc, kind: 'duration', parse: parseDuration }),
  bool: (def: string, doc: string): OptionSpec<boolean> => ({ default: def, doc, kind: 'bool', parse: parseBool }),
  int: (def: string, doc: string, min: number, max?: number): OptionSpec<number> => ({
    default: def, doc, kind: 'integer', parse: (t) => parseInteger(t, min, max),
  }),
  string: (def: string, doc: string, secret = false): OptionSpec<string> => ({ default: def, doc, kind: 'string', secret, parse: (t) => t }),
  oneOf: <V extends string>(def: V, doc: string, values: readonly V[]): OptionSpec<V> => ({
    default: def, doc, kind: values.join('|'),
    parse: (t) => {
      if ((values as readonly string[]).includes(t)) return t as V;
      throw new Error(`is not one of ${values.join(', ')}`);
    },
  }),
  custom: <V>(def: string, doc: string, kind: string, parse: (t: string) => V, secret = false): OptionSpec<V> => ({ default: def, doc, kind, parse, secret }),
};

/**
 * The environment variable that overrides a log-opt's built-in default: `max-size` → `LOG_OPT_MAX_SIZE`
 * (as daemon.json's "log-opts", for every container). The prefix keeps a shell's stray `TAG` or
 * `ENV` from turning into a default.
 */
export function envNameFor(key: string): string {
  return `LOG_OPT_${plainEnvName(key)}`;
}

/** `store-budget` → `STORE_BUDGET`: plugin settings use plain names. */
export function plainEnvName(key: string): string {
  return key.toUpperCase().replace(/-/g, '_');
}

/**
 * The text each option of `table` takes (log-opt, else environment, else built-in default), as
 * parseTable() sees it: parsing it again with no environment gives the same options. The spool keeps
 * it to recreate a sink instance after a restart.
 */
export function optionTexts(
  table: OptionTable,
  config: Readonly<Record<string, string>>,
  env: Readonly<Record<string, string | undefined>>,
  envName: (key: string) => string = envNameFor,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, spec] of Object.entries(table)) out[key] = config[key] ?? env[envName(key)] ?? spec.default;
  return out;
}

/**
 * Parses `config` (a container's log-opts) against `table`. Precedence: built-in default < `env`
 * (plugin settings) < log-opt. Keys not in the table are ignored here; options.ts rejects unknown keys.
 */
export function parseTable<T extends OptionTable>(
  table: T,
  config: Readonly<Record<string, string>>,
  env: Readonly<Record<string, string | undefined>>,
  envName: (key: string) => string = envNameFor,
): ParsedOptions<T> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(table)) {
    const fromOpt = config[key];
    // An empty value in the environment means "not set" (config.json cannot declare an env without
    // one, and `docker plugin set X=` is how users clear a setting).
    const envText = env[envName(key)];
    const fromEnv = envText === '' ? undefined : envText;
    const text = fromOpt ?? fromEnv ?? spec.default;
    try {
      out[key] = spec.parse(text);
    } catch (err) {
      const where = fromOpt !== undefined ? 'log-opt' : fromEnv !== undefined ? `setting ${envName(key)} for` : 'default of';
      const shown = spec.secret ? '(hidden)' : JSON.stringify(text);
      throw new OptionError(`invalid ${where} "${key}": ${shown} ${(err as Error).message}`);
    }
  }
  return out as ParsedOptions<T>;
}
