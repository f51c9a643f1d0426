/**
 * Per-container metadata, computed once at StartLogging: the rendered `tag` and the extras Docker's
 * built-in drivers take from `labels`, `labels-regex`, `env`, `env-regex` (moby's
 * `Info.ExtraAttributes`, protocol.md §7.1). dockerd does none of this for plugins.
 */
import type { ContainerMeta } from '../../sinks/sink.js';
import type { ContainerInfo } from '../container-info.js';
import { OptionError } from '../option-table.js';
import { compileTemplate, type RenderTemplate } from './template.js';

/** Docker's `loggerutils.DefaultTemplate`, used when `tag` is empty. */
export const DEFAULT_TAG_TEMPLATE = '{{.ID}}';

export interface MetadataOptions {
  /** Template for the tag; '' means the default `{{.ID}}`, as in Docker. */
  readonly tag: string;
  readonly labels: string;
  readonly labelsRegex: string;
  readonly env: string;
  readonly envRegex: string;
}

/** Throws OptionError naming the log-opt when `tag` does not compile or a regex is invalid. */
export function buildContainerMeta(info: ContainerInfo, opts: MetadataOptions, hostname: string): ContainerMeta {
  const tagTemplate = opts.tag === '' ? DEFAULT_TAG_TEMPLATE : opts.tag;
  let renderTag: RenderTemplate;
  try {
    renderTag = compileTemplate(tagTemplate);
  } catch (err) {
    throw new OptionError(`invalid log-opt "tag": ${JSON.stringify(tagTemplate)} is not a valid template: ${(err as Error).message}`);
  }
  return {
    id: info.ContainerID,
    name: info.ContainerName.startsWith('/') ? info.ContainerName.slice(1) : info.ContainerName,
    imageName: info.ContainerImageName,
    imageId: info.ContainerImageID,
    tag: renderTag(info, hostname),
    attrs: extraAttributes(info, opts),
    labels: { ...info.ContainerLabels },
    hostname,
  };
}

/**
 * The extras in Docker's order, labels, labels-regex, env, env-regex, all into one map, so a later
 * rule overwrites an earlier one's value for the same key (the key keeps its first position).
 * Unlike moby master, an invalid `env-regex` is reported even when the container has no env vars:
 * whether a container starts should not depend on its environment.
 */
export function extraAttributes(info: ContainerInfo, opts: Omit<MetadataOptions, 'tag'>): Record<string, string> {
  // A Map, then Object.fromEntries: a label named __proto__ stays an ordinary own key.
  const extra = new Map<string, string>();
  const labels = info.ContainerLabels;
  const labelsRegex = compileRegex('labels-regex', opts.labelsRegex);
  const envRegex = compileRegex('env-regex', opts.envRegex);

  if (opts.labels !== '') {
    for (const name of opts.labels.split(',')) {
      if (Object.hasOwn(labels, name)) extra.set(name, labels[name] as string);
    }
  }
  if (labelsRegex) {
    for (const [key, value] of Object.entries(labels)) {
      if (labelsRegex.test(key)) extra.set(key, value);
    }
  }
  const env = envMap(info.ContainerEnv);
  if (opts.env !== '') {
    for (const name of opts.env.split(',')) {
      const value = env.get(name);
      if (value !== undefined) extra.set(name, value);
    }
  }
  if (envRegex) {
    for (const [name, value] of env) {
      if (envRegex.test(name)) extra.set(name, value);
    }
  }
  return Object.fromEntries(extra);
}

/** `K=V` entries split at the first '='; entries without '=' are skipped; a later duplicate wins. */
function envMap(entries: readonly string[] | null): Map<string, string> {
  const env = new Map<string, string>();
  for (const entry of entries ?? []) {
    const eq = entry.indexOf('=');
    if (eq >= 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return env;
}

/**
 * Docker compiles these with Go's RE2; JS RegExp agrees on the patterns people write for label and
 * env names (classes, anchors, alternation, repetition). RE2's leading flag group `(?i)` / `(?s)` /
 * `(?m)` is translated to JS flags. Matching is unanchored, like Go's MatchString. No `g` flag, so
 * `test` keeps no state between keys.
 */
function compileRegex(option: string, source: string): RegExp | undefined {
  if (source === '') return undefined;
  const flagGroup = /^\(\?([ims]+)\)/.exec(source);
  try {
    return flagGroup ? new RegExp(source.slice(flagGroup[0].length), [...new Set(flagGroup[1])].join('')) : new RegExp(source);
  } catch (err) {
    const reason = (err as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, '');
    throw new OptionError(`invalid log-opt "${option}": ${JSON.stringify(source)} is not a valid regular expression: ${reason}`);
  }
}
