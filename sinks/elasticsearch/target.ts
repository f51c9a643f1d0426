/**
 * Where documents go: one data stream, one fixed index, or a date-templated index such as
 * `docker-%Y.%m.%d` whose name is rendered from each record's own UTC time (never the clock's).
 */
import { splitSeconds } from '../../src/time.js';
import type { Int64Parts } from '../../src/time.js';

/** The `%` tokens an index name may carry: enough for daily or hourly indices. */
const DATE_TOKENS = new Set(['Y', 'm', 'd', 'H']);
const FORBIDDEN = /[\\/*?"<>|,# :]/;

/**
 * Checks an index or data-stream name against Elasticsearch's rules (lowercase, no `\ / * ? " < > | , # :`
 * or spaces, not starting with `-` `_` `+`, not `.`/`..`, at most 255 bytes), allowing `%Y %m %d %H`.
 * Returns the name unchanged; throws with a message that completes `invalid log-opt "es-index": "x" …`.
 */
export function parseIndexName(text: string): string {
  const name = text.trim();
  if (name === '') throw new Error('is empty (use e.g. logs-docker-default or docker-%Y.%m.%d)');
  for (let i = name.indexOf('%'); i !== -1; i = name.indexOf('%', i + 2)) {
    const token = name[i + 1] ?? '';
    if (!DATE_TOKENS.has(token)) throw new Error(`uses "%${token}"; only %Y, %m, %d and %H (UTC, from each line's time) are supported`);
  }
  const literal = name.replace(/%[YmdH]/g, '');
  if (literal !== literal.toLowerCase()) throw new Error('must be lowercase (an Elasticsearch rule)');
  if (FORBIDDEN.test(literal)) throw new Error('contains a character Elasticsearch forbids in index names (\\ / * ? " < > | , # : or space)');
  if (/^[-_+]/.test(name)) throw new Error('must not start with -, _ or + (an Elasticsearch rule)');
  if (name === '.' || name === '..') throw new Error('is not a valid index name');
  if (Buffer.byteLength(render(name, 2000, 12, 31, 23)) > 255) throw new Error('is longer than 255 bytes');
  return name;
}

export interface DataStreamParts {
  readonly type: string;
  readonly dataset: string;
  readonly namespace: string;
}

export interface Target {
  /** The name as configured, possibly with `%` tokens. */
  readonly pattern: string;
  readonly dataStream: boolean;
  /** True when the name has `%` tokens, so each record picks its index by its time. */
  readonly dated: boolean;
  /**
   * `type-dataset-namespace` of a data stream named by the naming scheme (`logs-docker-default`), sent
   * as `data_stream.*`; undefined for indices and for data streams with other names (ES maps
   * `data_stream.*` as constant_keyword, so a value that disagrees with the name would be rejected).
   */
  readonly dataStreamParts: DataStreamParts | undefined;
}

export type DataStreamChoice = boolean | 'auto';

/** `es-data-stream` auto means: a data stream exactly when the name follows Elastic's `logs-*-*` scheme. */
export function resolveTarget(index: string, dataStream: DataStreamChoice): Target {
  const dated = index.includes('%');
  const isDataStream = dataStream === 'auto' ? !dated && /^logs-[^-]+-.+$/.test(index) : dataStream;
  return { pattern: index, dataStream: isDataStream, dated, dataStreamParts: isDataStream ? splitDataStreamName(index) : undefined };
}

export function splitDataStreamName(name: string): DataStreamParts | undefined {
  const first = name.indexOf('-');
  const last = name.lastIndexOf('-');
  if (first <= 0 || last === first || last === name.length - 1) return undefined;
  return { type: name.slice(0, first), dataset: name.slice(first + 1, last), namespace: name.slice(last + 1) };
}

const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n));

function render(pattern: string, year: number, month: number, day: number, hour: number): string {
  return pattern.replace(/%([YmdH])/g, (_, t: string) => (t === 'Y' ? String(year) : t === 'm' ? pad2(month) : t === 'd' ? pad2(day) : pad2(hour)));
}

/**
 * Renders a dated index name for a record's time. The tokens go down to the hour, so the last
 * rendered hour is cached: consecutive records almost always share it.
 */
export class IndexNamer {
  private lastHour = Number.NaN;
  private lastName = '';

  constructor(private readonly pattern: string) {}

  nameFor(timeNano: Int64Parts): string {
    const hour = Math.floor(splitSeconds(timeNano).seconds / 3600);
    if (hour !== this.lastHour) {
      const d = new Date(hour * 3600_000);
      this.lastHour = hour;
      this.lastName = render(this.pattern, d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours());
    }
    return this.lastName;
  }
}

/** The glob that matches every index a dated pattern can render (`docker-%Y.%m.%d` → `docker-*`). */
export function indexGlob(pattern: string): string {
  const i = pattern.indexOf('%');
  return i === -1 ? pattern : `${pattern.slice(0, i)}*`;
}
