/**
 * The file sink's `file-format=json-file` lines: Docker's own json-file format, so tools that read
 * json-file logs (Filebeat's container input, Fluent Bit's docker parser, Vector, `jq`) read these:
 *
 *   {"log":"<line>\n","stream":"stdout","attrs":{…},"time":"<RFC 3339, trailing zeros trimmed>"}
 *
 * Fields in json-file's order, `attrs` only when the container has some (labels/env/…-regex), the
 * newline json-file adds to every whole line, its escaping (`\u0009`, `\u003c`, …), and the time as
 * Go's RFC3339Nano prints it: byte for byte what json-file writes, but for line bytes that are not
 * valid UTF-8 (U+FFFD here, `\ufffd` there). A line shiplog cut at partial-max-size carries no mark (json-file has no field for it). About a quarter
 * of the bytes of the default format for short lines: no container fields on every line.
 */
import { dockerJsonStringBody } from '../json-bytes.js';
import { isPlainDockerJsonText } from '../plain-bytes.js';
import type { ContainerMeta, EntryWriter, LogRecord } from '../sink.js';
import { RFC3339_NANO_BYTES, Rfc3339NanoSlot } from '../../src/time.js';
import type { LineEncoder } from './json-lines.js';

const LOG_OPEN = Buffer.from('{"log":"');
const TIME_CLOSE = Buffer.from('Z"}\n');
/** Index of the first fractional digit and of the `Z` in the time's 30 bytes. */
const FRACTION_START = 20;
const ZONE_AT = RFC3339_NANO_BYTES - 1;

/** `\n","stream":"<source>","attrs":{…},"time":"` for one container and source: what follows the line. */
interface ContainerParts {
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly attrs: string;
}

export class JsonFileEncoder implements LineEncoder {
  private readonly parts = new WeakMap<ContainerMeta, ContainerParts>();
  /** The time's 30 bytes and room for `Z"}\n` after its last significant digit. */
  private readonly time = new Rfc3339NanoSlot(Buffer.alloc(ZONE_AT + TIME_CLOSE.length), 0);

  write(record: LogRecord, out: EntryWriter): void {
    const line = record.line;
    out.bytes(LOG_OPEN);
    if (isPlainDockerJsonText(line)) out.bytes(line);
    else out.text(dockerJsonStringBody(line.toString('utf8')));
    const parts = this.partsOf(record.container);
    if (record.source === 'stdout') out.bytes(parts.stdout);
    else if (record.source === 'stderr') out.bytes(parts.stderr);
    else out.text(`\\n","stream":${JSON.stringify(record.source)},${parts.attrs}"time":"`);
    this.time.set(record.timeNano);
    const stamp = this.time.buf;
    let end = ZONE_AT;
    while (end > FRACTION_START && stamp[end - 1] === 0x30) end--;
    // All nine digits zero: Go prints no fraction at all (and no dot).
    if (end === FRACTION_START) end--;
    TIME_CLOSE.copy(stamp, end);
    out.bytes(stamp.subarray(0, end + TIME_CLOSE.length));
  }

  private partsOf(container: ContainerMeta): ContainerParts {
    let parts = this.parts.get(container);
    if (parts === undefined) {
      // As Go marshals a map: keys sorted.
      const keys = Object.keys(container.attrs).sort();
      const attrs = keys.length === 0 ? ''
        : `"attrs":{${keys.map((k) => `"${dockerJsonStringBody(k)}":"${dockerJsonStringBody(container.attrs[k] ?? '')}"`).join(',')}},`;
      parts = {
        stdout: Buffer.from(`\\n","stream":"stdout",${attrs}"time":"`),
        stderr: Buffer.from(`\\n","stream":"stderr",${attrs}"time":"`),
        attrs,
      };
      this.parts.set(container, parts);
    }
    return parts;
  }
}
