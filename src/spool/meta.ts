/**
 * Where spools live and what a spool remembers about its sink instance, so that records spooled
 * before a restart can be delivered after it: `<state-dir>/spool/<sink>/<hash of instance key>/meta.json`
 * holds the sink definition's name, the text of every option of the sink (as given by log-opts,
 * environment or default — secrets included: the state directory is 0700 and the file 0600) and the
 * container the instance was created for (a file sink's path template reads it).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ContainerMeta } from '../../sinks/sink.js';
import { parseJsonObject, parseMeta } from './codec.js';

export interface SpoolMeta {
  readonly version: 1;
  /** SinkDefinition name. */
  readonly sink: string;
  /** The text of each of the sink's options (optionTexts()). */
  readonly options: Readonly<Record<string, string>>;
  /** The container the instance was first created for (SinkContext.container). */
  readonly container: ContainerMeta;
  readonly createdAt: string;
}

export const META_FILE = 'meta.json';

export function spoolRoot(stateDir: string): string {
  return path.join(stateDir, 'spool');
}

/** `<state-dir>/spool/<sink>/<sha256(instance key), 32 hex>`: the key may hold URLs and option values. */
export function spoolDirFor(stateDir: string, sinkName: string, instanceKey: string): string {
  const hash = createHash('sha256').update(instanceKey).digest('hex').slice(0, 32);
  return path.join(spoolRoot(stateDir), encodeURIComponent(sinkName), hash);
}

export function writeMetaSync(dir: string, meta: SpoolMeta): void {
  const file = path.join(dir, META_FILE);
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(meta), { mode: 0o600 });
  fs.renameSync(`${file}.tmp`, file);
}

export function parseSpoolMeta(text: string): SpoolMeta | undefined {
  const o = parseJsonObject(text);
  if (o === undefined) return undefined;
  const options = o['options'];
  if (o['version'] !== 1 || typeof o['sink'] !== 'string' || typeof options !== 'object' || options === null) return undefined;
  const texts: Record<string, string> = {};
  for (const [k, val] of Object.entries(options)) {
    if (typeof val !== 'string') return undefined;
    texts[k] = val;
  }
  const container = parseMeta(JSON.stringify(o['container'] ?? null));
  if (container === undefined) return undefined;
  return { version: 1, sink: o['sink'], options: texts, container, createdAt: typeof o['createdAt'] === 'string' ? o['createdAt'] : '' };
}

export interface FoundSpool {
  readonly dir: string;
  /** Undefined when meta.json is missing or unreadable (the spool cannot be given to a sink). */
  readonly meta: SpoolMeta | undefined;
}

/** Every spool directory under the state directory. */
export async function listSpools(stateDir: string): Promise<FoundSpool[]> {
  const root = spoolRoot(stateDir);
  const found: FoundSpool[] = [];
  const sinks = await fs.promises.readdir(root, { withFileTypes: true }).catch(() => []);
  for (const sink of sinks) {
    if (!sink.isDirectory()) continue;
    const instances = await fs.promises.readdir(path.join(root, sink.name), { withFileTypes: true }).catch(() => []);
    for (const inst of instances) {
      if (!inst.isDirectory()) continue;
      const dir = path.join(root, sink.name, inst.name);
      const text = await fs.promises.readFile(path.join(dir, META_FILE), 'utf8').catch(() => undefined);
      found.push({ dir, meta: text === undefined ? undefined : parseSpoolMeta(text) });
    }
  }
  return found;
}
