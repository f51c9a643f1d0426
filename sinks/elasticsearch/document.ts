/**
 * Records to ECS documents and bulk action lines, written as bytes into the batch. The per-container
 * part of a document (container, host, tag, labels, data_stream) is stringified and encoded once per
 * ContainerMeta object; per record only the id, the timestamp, the message and a few flags are
 * added. See README for the field list.
 */
import { collectText, RecordIdWriter } from '../sink.js';
import type { ContainerMeta, EntryWriter, LogRecord } from '../sink.js';
import { writeJsonString } from '../json-bytes.js';
import { RFC3339_NANO_BYTES, Rfc3339NanoSlot, rfc3339NanoBytes } from '../../src/time.js';
import { isPlainJsonText } from '../plain-bytes.js';
import { IndexNamer } from './target.js';
import type { Target } from './target.js';

/**
 * How `container.labels` keys are written. `normalised`: dots become `_`, because Elasticsearch reads
 * dots as object paths and Compose's `com.docker.compose.project` next to
 * `com.docker.compose.project.working_dir` would be a mapping conflict. `dotted`: keys as they are,
 * only when `container.labels` is known to be mapped `flattened` (see templates.ts).
 */
export type LabelMode = 'normalised' | 'dotted';

export interface DocumentOptions {
  readonly target: Target;
  readonly eventOriginal: boolean;
}

/** JSON lines no longer than this are looked at for a level; bigger ones are not parsed (bounded cost). */
const LEVEL_SCAN_MAX = 16 * 1024;
const LEVEL_KEY = Buffer.from('level"');
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/**
 * `log.level` from a JSON line's own top-level `level` or `log.level` string (what pino-style, logrus,
 * zap, bunyan-with-names and ECS loggers write). Anything else (plain text, numeric levels, nested
 * keys, lines over 16 KiB) yields undefined: guessing a level from free text is not "clearly right",
 * and stdout/stderr is not a level. Cheap byte checks run first, so only JSON lines with such a key
 * pay for JSON.parse.
 */
export function jsonLevel(line: Buffer, text?: string): string | undefined {
  const n = line.length;
  if (n < 10 || n > LEVEL_SCAN_MAX || line[0] !== OPEN_BRACE) return undefined;
  let end = n - 1;
  while (end > 0 && (line[end] === 0x20 || line[end] === 0x0d || line[end] === 0x09)) end--;
  if (line[end] !== CLOSE_BRACE || !line.includes(LEVEL_KEY)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text ?? line.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const fields = parsed as Record<string, unknown>;
  const level = typeof fields['level'] === 'string' ? fields['level'] : fields['log.level'];
  return typeof level === 'string' && level !== '' && level.length <= 64 ? level : undefined;
}

function keysWithoutDots(from: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(from)) if (k !== '') out[k.replace(/\./g, '_')] = v;
  return out;
}

/** Keys kept with their dots (a `flattened` field takes them as paths); only malformed paths are normalised. */
function keysAsIs(from: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(from)) {
    if (k === '') continue;
    out[k.startsWith('.') || k.endsWith('.') || k.includes('..') ? k.replace(/\./g, '_') : k] = v;
  }
  return out;
}

/**
 * The per-container tail of a document, starting with a comma. Empty strings and empty objects are
 * left out rather than sent as `""`.
 */
export function containerPart(meta: ContainerMeta, target: Target, labels: LabelMode): string {
  const image: Record<string, string> = {};
  if (meta.imageName !== '') image['name'] = meta.imageName;
  if (meta.imageId !== '') image['id'] = meta.imageId;
  const container: Record<string, unknown> = { id: meta.id };
  if (meta.name !== '') container['name'] = meta.name;
  if (Object.keys(image).length > 0) container['image'] = image;
  const containerLabels = labels === 'dotted' ? keysAsIs(meta.labels) : keysWithoutDots(meta.labels);
  if (Object.keys(containerLabels).length > 0) container['labels'] = containerLabels;
  let out = `,"container":${JSON.stringify(container)}`;
  if (meta.hostname !== '') out += `,"host":${JSON.stringify({ name: meta.hostname })}`;
  if (meta.tag !== '') out += `,"tag":${JSON.stringify(meta.tag)}`;
  // ECS `labels` are flat keywords; attrs keys (label or env names) may hold dots, so always normalised.
  const attrs = keysWithoutDots(meta.attrs);
  if (Object.keys(attrs).length > 0) out += `,"labels":${JSON.stringify(attrs)}`;
  const ds = target.dataStreamParts;
  if (ds !== undefined) out += `,"data_stream":${JSON.stringify({ type: ds.type, dataset: ds.dataset, namespace: ds.namespace })}`;
  return out;
}

const STREAM: Readonly<Record<string, Buffer>> = { stdout: Buffer.from(',"stream":"stdout"'), stderr: Buffer.from(',"stream":"stderr"') };
const TIMESTAMP_OPEN = Buffer.from('{"@timestamp":"');
const MESSAGE_OPEN = Buffer.from('","message":');
const LOG_TRUNCATED = Buffer.from(',"log":{"flags":["truncated"]}');
const EVENT_ORIGINAL_OPEN = Buffer.from(',"event":{"original":');
const ACTION_ID_CLOSE = Buffer.from('"}}\n');
const NEWLINE = Buffer.from('\n');
const CLOSE_BRACE_BYTES = Buffer.from('}');
const QUOTE = Buffer.from('"');
/**
 * writeEntry's common case: the action's close, the document's head and the message's opening quote,
 * around the time. Made of the pieces writeAction and writeDocument write, so both paths give the same bytes.
 */
const ENTRY_MIDDLE_HEAD = Buffer.concat([ACTION_ID_CLOSE, TIMESTAMP_OPEN]);
const ENTRY_MIDDLE_TAIL = Buffer.concat([MESSAGE_OPEN, QUOTE]);
const PLAIN_CLOSE = Buffer.concat([CLOSE_BRACE_BYTES, NEWLINE]);

/** Per container, the bytes after a plain message: its closing quote, the stream, the container part, `}` and the newline. */
interface PlainTails {
  readonly stdout: Buffer;
  readonly stderr: Buffer;
}

/**
 * Writes documents and action lines as bytes where it can (pre-encoded constant parts, the
 * per-container tail once per ContainerMeta, plain ASCII messages copied; sinks/json-bytes.ts); the
 * string forms (document, action, entry) are the same bytes as text.
 */
export class DocumentBuilder {
  private readonly parts: Record<LabelMode, WeakMap<ContainerMeta, Buffer>> = { normalised: new WeakMap(), dotted: new WeakMap() };
  private readonly namer: IndexNamer | undefined;
  private lastIndex = '';
  private lastActionPrefix: Buffer;
  private readonly ids = new RecordIdWriter();
  /** `"}}\n{"@timestamp":"<time>","message":"`, the time rewritten per line. */
  private readonly middle = new Rfc3339NanoSlot(Buffer.concat([ENTRY_MIDDLE_HEAD, Buffer.alloc(RFC3339_NANO_BYTES), ENTRY_MIDDLE_TAIL]), ENTRY_MIDDLE_HEAD.length);
  private readonly plainTails: Record<LabelMode, WeakMap<ContainerMeta, PlainTails>> = { normalised: new WeakMap(), dotted: new WeakMap() };
  /** The last container and label mode plainTailsOf() answered for: a stream's records share one. */
  private lastTailsOf: ContainerMeta | undefined;
  private lastTailsMode: LabelMode = 'normalised';
  private lastTails: PlainTails | undefined;

  constructor(private readonly options: DocumentOptions) {
    const { target } = options;
    // A fixed target goes in the request path (`/<index>/_bulk`), so action lines carry only the id.
    this.namer = target.dated ? new IndexNamer(target.pattern) : undefined;
    this.lastActionPrefix = Buffer.from('{"create":{"_id":"');
  }

  /** The bulk request path's index, or undefined when each action line names its own index. */
  get pathIndex(): string | undefined {
    return this.namer === undefined ? this.options.target.pattern : undefined;
  }

  /** Action and document of one record, each ending in a newline: one record's slice of the NDJSON body. */
  writeEntry(r: LogRecord, labels: LabelMode, out: EntryWriter): void {
    const quick = !r.truncated && !this.options.eventOriginal && (r.source === 'stdout' || r.source === 'stderr') && isPlainJsonText(r.line);
    const level = jsonLevel(r.line);
    if (quick && level === undefined) {
      // The common case in five copies instead of a dozen: action head, id, the slot from the id's
      // closing quote to the message's opening one, the line, and the container's tail.
      this.writeActionHead(r, out);
      this.middle.set(r.timeNano);
      out.bytes(this.middle.buf);
      out.bytes(r.line);
      out.bytes(this.plainTailsOf(r.container, labels)[r.source]);
      return;
    }
    this.writeAction(r, out);
    this.writeDocumentWith(r, labels, level, out);
    out.bytes(NEWLINE);
  }

  /** containerPart() as bytes, made once per ContainerMeta and label mode. */
  private containerTail(container: ContainerMeta, labels: LabelMode): Buffer {
    const cache = this.parts[labels];
    let tail = cache.get(container);
    if (tail === undefined) {
      tail = Buffer.from(containerPart(container, this.options.target, labels));
      cache.set(container, tail);
    }
    return tail;
  }

  private plainTailsOf(container: ContainerMeta, labels: LabelMode): PlainTails {
    if (container === this.lastTailsOf && labels === this.lastTailsMode && this.lastTails !== undefined) return this.lastTails;
    const cache = this.plainTails[labels];
    let tails = cache.get(container);
    if (tails === undefined) {
      const part = this.containerTail(container, labels);
      tails = {
        stdout: Buffer.concat([QUOTE, STREAM['stdout'] as Buffer, part, PLAIN_CLOSE]),
        stderr: Buffer.concat([QUOTE, STREAM['stderr'] as Buffer, part, PLAIN_CLOSE]),
      };
      cache.set(container, tails);
    }
    this.lastTailsOf = container;
    this.lastTailsMode = labels;
    this.lastTails = tails;
    return tails;
  }

  /** The action line, newline included: `{"create":{"_id":…}}`, with `_index` when the index depends on the record's time. */
  writeAction(r: LogRecord, out: EntryWriter): void {
    this.writeActionHead(r, out);
    out.bytes(ACTION_ID_CLOSE);
  }

  /** The action line up to the end of the id, without its closing quote. */
  private writeActionHead(r: LogRecord, out: EntryWriter): void {
    if (this.namer !== undefined) {
      const index = this.namer.nameFor(r.timeNano);
      if (index !== this.lastIndex) {
        this.lastIndex = index;
        this.lastActionPrefix = Buffer.from(`{"create":{"_index":${JSON.stringify(index)},"_id":"`);
      }
    }
    out.bytes(this.lastActionPrefix);
    this.ids.write(r, out);
  }

  /** The ECS document of one record, as JSON (no newline). */
  writeDocument(r: LogRecord, labels: LabelMode, out: EntryWriter): void {
    this.writeDocumentWith(r, labels, jsonLevel(r.line), out);
  }

  /** writeDocument with the line's `log.level` (jsonLevel) already known. */
  private writeDocumentWith(r: LogRecord, labels: LabelMode, level: string | undefined, out: EntryWriter): void {
    const tail = this.containerTail(r.container, labels);
    out.bytes(TIMESTAMP_OPEN);
    out.bytes(rfc3339NanoBytes(r.timeNano));
    out.bytes(MESSAGE_OPEN);
    writeJsonString(r.line, out);
    const stream = STREAM[r.source];
    if (stream !== undefined) out.bytes(stream);
    else out.text(`,"stream":${JSON.stringify(r.source)}`);
    if (level !== undefined && r.truncated) out.text(`,"log":{"level":${JSON.stringify(level)},"flags":["truncated"]}`);
    else if (level !== undefined) out.text(`,"log":{"level":${JSON.stringify(level)}}`);
    // Filebeat's marker for a cut line; ecs@mappings maps it as keyword.
    else if (r.truncated) out.bytes(LOG_TRUNCATED);
    if (this.options.eventOriginal) {
      out.bytes(EVENT_ORIGINAL_OPEN);
      writeJsonString(r.line, out);
      out.bytes(CLOSE_BRACE_BYTES);
    }
    out.bytes(tail);
    out.bytes(CLOSE_BRACE_BYTES);
  }

  /** The ECS document of one record, as JSON text. */
  document(r: LogRecord, labels: LabelMode): string {
    return collectText((out) => this.writeDocument(r, labels, out));
  }

  /** The action line as text (no newline). */
  action(r: LogRecord): string {
    return collectText((out) => this.writeAction(r, out)).slice(0, -1);
  }

  /** Action and document of one record as text, each ending in a newline. */
  entry(r: LogRecord, labels: LabelMode): string {
    return collectText((out) => this.writeEntry(r, labels, out));
  }
}
