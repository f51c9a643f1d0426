import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileSink, type FileOptions, fileOptions, fileSink, resolveFilePath } from '../sinks/file.js';
import { JsonLinesEncoder, planRotations } from '../sinks/file/json-lines.js';
import { isPlainJsonText } from '../sinks/plain-bytes.js';
import { RotatingFile } from '../sinks/file/rotating-file.js';
import {
  BatchBuilder, type ContainerMeta, EncodedBatch, FatalSinkError, type LogRecord, RetryableSinkError, type Sink, type SinkDefinition, type WriteOutcome,
} from '../sinks/sink.js';
import { OptionError, parseTable } from '../src/option-table.js';
import { bigIntToParts } from '../src/time.js';
import { container, record } from './support/records.js';

const logger = pino({ level: 'silent' });
let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'file-sink-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function options(config: Record<string, string> = {}): FileOptions {
  return parseTable(fileOptions, { 'file-path': path.join(dir, '{{.Name}}.log'), ...config }, {});
}

function openSink(config: Record<string, string> = {}, meta: ContainerMeta = container): { sink: Sink; file: string } {
  const opts = options(config);
  fileSink.validate(opts);
  return { sink: fileSink.create(opts, { container: meta, logger, stateDir: dir }), file: resolveFilePath(opts, meta) };
}

/** `records` as the core hands them to write(): each encoded by the sink as it is queued, gathered into one batch. */
function batchOf(sink: Sink, records: readonly LogRecord[]): EncodedBatch {
  return EncodedBatch.encode(sink, records);
}

function read(file: string): string {
  return fs.readFileSync(file, 'utf8');
}

/** The `message` of each JSON line of `file`. */
function messages(file: string): string[] {
  return read(file).split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { message: string }).message);
}

const ID = container.id;
const IMAGE_ID = container.imageId;

describe('file sink: JSON lines', () => {
  it('writes the exact line: ns time beyond 2^53, source, container part, message', async () => {
    const { sink, file } = openSink();
    await sink.write(batchOf(sink, [record('hello "world"')]));
    await sink.close();
    expect(read(file)).toBe(
      `{"time":"2026-11-23T16:43:53.042059423Z","source":"stdout","container_id":"${ID}","container_name":"demo",`
      + `"image_name":"busybox","image_id":"${IMAGE_ID}","tag":"e882a436c6b3","message":"hello \\"world\\""}\n`,
    );
  });

  it('keeps nanoseconds exact at the edges of a second', async () => {
    const { sink, file } = openSink();
    await sink.write(batchOf(sink, [
      record('a', 0, { timeNano: bigIntToParts(1795452233000000007n) }),
      record('b', 0, { timeNano: bigIntToParts(1795452233999999999n) }),
    ]));
    await sink.close();
    const times = read(file).trim().split('\n').map((l) => (JSON.parse(l) as { time: string }).time);
    expect(times).toEqual(['2026-11-23T16:43:53.000000007Z', '2026-11-23T16:43:53.999999999Z']);
  });

  it('adds attrs only when non-empty and truncated only when true; stderr as source', async () => {
    const withAttrs: ContainerMeta = { ...container, attrs: { team: 'payments', 'a"b': 'x\ny' } };
    const { sink, file } = openSink();
    await sink.write(batchOf(sink, [
      record('cut', 0, { truncated: true, source: 'stderr' }),
      record('plain', 0, { container: withAttrs }),
    ]));
    await sink.close();
    const [first, second] = read(file).split('\n');
    expect(first).toBe(`{"time":"2026-11-23T16:43:53.042059423Z","source":"stderr","container_id":"${ID}","container_name":"demo",`
      + `"image_name":"busybox","image_id":"${IMAGE_ID}","tag":"e882a436c6b3","truncated":true,"message":"cut"}`);
    expect(second).toBe(`{"time":"2026-11-23T16:43:53.042059423Z","source":"stdout","container_id":"${ID}","container_name":"demo",`
      + `"image_name":"busybox","image_id":"${IMAGE_ID}","tag":"e882a436c6b3","attrs":{"team":"payments","a\\"b":"x\\ny"},"message":"plain"}`);
  });

  it('decodes line bytes as UTF-8, with U+FFFD for invalid bytes, and escapes control characters', async () => {
    const { sink, file } = openSink();
    await sink.write(batchOf(sink, [
      record('', 0, { line: Buffer.from([0x68, 0xc3, 0xa9, 0xff, 0x00, 0x09, 0x1b]) }),
      record('', 0, { line: Buffer.alloc(0) }),
    ]));
    await sink.close();
    const lines = read(file).split('\n');
    expect(lines[0]).toContain('"message":"hé\uFFFD\\u0000\\t\\u001b"}');
    expect(messages(file)).toEqual(['hé\uFFFD\u0000\t\u001b', '']);
  });

  it('gives each container its own fields when containers share one path', async () => {
    const other: ContainerMeta = { ...container, id: 'f'.repeat(64), name: 'other', tag: 'other-tag' };
    const { sink, file } = openSink({ 'file-path': path.join(dir, 'all.log') });
    await sink.write(batchOf(sink, [record('1'), record('2', 0, { container: other }), record('3')]));
    await sink.close();
    const parsed = read(file).trim().split('\n').map((l) => JSON.parse(l) as { container_name: string; tag: string; message: string });
    expect(parsed.map((p) => `${p.container_name}/${p.tag}/${p.message}`)).toEqual(['demo/e882a436c6b3/1', 'other/other-tag/2', 'demo/e882a436c6b3/3']);
  });

  it('appends to an existing file', async () => {
    const first = openSink();
    await first.sink.write(batchOf(first.sink, [record('one')]));
    await first.sink.close();
    const second = openSink();
    await second.sink.write(batchOf(second.sink, [record('two')]));
    await second.sink.close();
    expect(messages(first.file)).toEqual(['one', 'two']);
  });
});

describe('file sink: file-format=json-file (Docker json-file lines)', () => {
  it('writes json-file\'s fields in its order and its escaping: log with the newline, stream, attrs (sorted) only when present, time as Go RFC3339Nano', async () => {
    const withAttrs: ContainerMeta = { ...container, name: 'attrs', attrs: { team: 'a"b', app: 'x' } };
    const { sink, file } = openSink({ 'file-format': 'json-file' });
    const other = openSink({ 'file-format': 'json-file' }, withAttrs);
    await sink.write(batchOf(sink, [
      record('hello'),
      record('say "hi"\tnow é <b>&', 1, { source: 'stderr' }),
      record('', 2),
    ]));
    await other.sink.write(batchOf(other.sink, [record('x', 0, { container: withAttrs })]));
    await sink.close();
    await other.sink.close();
    expect(read(file)).toBe(
      '{"log":"hello\\n","stream":"stdout","time":"2026-11-23T16:43:53.042059423Z"}\n'
      + '{"log":"say \\"hi\\"\\u0009now é \\u003cb\\u003e\\u0026\\n","stream":"stderr","time":"2026-11-23T16:43:53.042059424Z"}\n'
      + '{"log":"\\n","stream":"stdout","time":"2026-11-23T16:43:53.042059425Z"}\n',
    );
    expect(read(other.file)).toBe('{"log":"x\\n","stream":"stdout","attrs":{"app":"x","team":"a\\"b"},"time":"2026-11-23T16:43:53.042059423Z"}\n');
  });

  it('trims the time\'s trailing zeros, and drops the fraction when it is zero, as Go does', async () => {
    const { sink, file } = openSink({ 'file-format': 'json-file' });
    const at = (ns: bigint) => record('t', 0, { timeNano: bigIntToParts(ns) });
    await sink.write(batchOf(sink, [at(1795452233120000000n), at(1795452233000000000n), at(1795452233000000001n)]));
    await sink.close();
    expect(read(file).split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { time: string }).time)).toEqual([
      '2026-11-23T16:43:53.12Z', '2026-11-23T16:43:53Z', '2026-11-23T16:43:53.000000001Z',
    ]);
  });

  it('writes lines that are not printable ASCII as JSON.stringify would, with the newline json-file adds', async () => {
    const { sink, file } = openSink({ 'file-format': 'json-file' });
    const line = Buffer.from([0x61, 0xff, 0x0d, 0x62]); // invalid UTF-8 and a carriage return
    await sink.write(batchOf(sink, [record('', 0, { line })]));
    await sink.close();
    expect((JSON.parse(read(file)) as { log: string }).log).toBe(`${line.toString('utf8')}\n`);
  });

  it('is refused with a message naming the option for any other value', () => {
    expect(() => parseTable(fileOptions, { 'file-format': 'xml' }, {})).toThrow(/invalid log-opt "file-format": "xml" is not one of json, json-file/);
  });
});

describe('file sink: a file left by a crash', () => {
  it('cuts a torn last line (a write stopped part-way by SIGKILL) before appending, so no line is glued to another', async () => {
    const first = openSink();
    await first.sink.write(batchOf(first.sink, [record('one')]));
    await first.sink.close();
    fs.appendFileSync(first.file, '{"time":"2026-11-24T23:42:31.1Z","source":"std');
    const second = openSink();
    await second.sink.write(batchOf(second.sink, [record('two')]));
    await second.sink.close();
    expect(read(first.file).endsWith('\n')).toBe(true);
    expect(messages(first.file)).toEqual(['one', 'two']);
  });

  it('cuts a file that holds only a torn line (longer than one scan block) to empty', async () => {
    const { file } = openSink();
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, `{"message":"${'x'.repeat(200_000)}`);
    const again = openSink();
    await again.sink.write(batchOf(again.sink, [record('after')]));
    await again.sink.close();
    expect(messages(file)).toEqual(['after']);
  });
});

describe('file sink: ordering', () => {
  it('serializes write() calls: a later batch waits for a slower earlier one', async () => {
    let releaseFirst = (): void => undefined;
    const firstHeld = new Promise<void>((resolve) => { releaseFirst = resolve; });
    class GatedFile extends RotatingFile {
      active = 0;
      maxActive = 0;
      private held = true;
      override async append(bytes: Uint8Array): Promise<void> {
        this.active++;
        this.maxActive = Math.max(this.maxActive, this.active);
        try {
          if (this.held) {
            this.held = false;
            await firstHeld; // the first batch is slow until every write() has been called
          }
          await super.append(bytes);
        } finally {
          this.active--;
        }
      }
    }
    const file = path.join(dir, 'demo.log');
    const gated = new GatedFile(file, { maxFiles: 2, mode: 0o640, fsync: false });
    const sink = new FileSink(gated, 1e9, logger);
    const writes = [sink.write(batchOf(sink, [record('1a'), record('1b')])), sink.write(batchOf(sink, [record('2')])), sink.write(batchOf(sink, [record('3')]))];
    releaseFirst();
    await Promise.all(writes);
    await sink.close();
    expect(messages(file)).toEqual(['1a', '1b', '2', '3']);
    expect(gated.maxActive).toBe(1);
  });

  it('keeps lines in call order across many concurrent batches and rotations', async () => {
    const { sink, file } = openSink({ 'file-max-size': '100k', 'file-max-file': '100' });
    const expected: string[] = [];
    const writes: Promise<WriteOutcome | void>[] = [];
    for (let b = 0; b < 40; b++) {
      // Batches of different sizes, so unserialized writes would finish out of order.
      const batch: LogRecord[] = [];
      for (let i = 0; i < (b % 7) * 20 + 1; i++) {
        const line = `b${b}-r${i}-${'x'.repeat((b * 37) % 300)}`;
        expected.push(line);
        batch.push(record(line));
      }
      writes.push(sink.write(batchOf(sink, batch)));
    }
    await Promise.all(writes);
    await sink.close();
    const files = fs.readdirSync(dir).filter((f) => f.startsWith('demo.log'));
    const ordered = files.sort((a, b) => rotationIndex(b) - rotationIndex(a)); // oldest (.N) first
    expect(ordered.flatMap((f) => messages(path.join(dir, f)))).toEqual(expected);
  });

  it('close() waits for writes already asked for; later writes are refused', async () => {
    const { sink, file } = openSink();
    const pending = sink.write(batchOf(sink, [record('last')]));
    await sink.close();
    await pending;
    expect(messages(file)).toEqual(['last']);
    await expect(sink.write(batchOf(sink, [record('late')]))).rejects.toThrow(/closed/);
  });
});

function rotationIndex(name: string): number {
  const m = /\.log\.(\d+)$/.exec(name);
  return m ? Number(m[1]) : 0;
}

describe('file sink: rotation (Docker local driver semantics)', () => {
  /** Each record's JSON line is this long; size limits below are multiples of it. */
  const LINE = Buffer.byteLength(lineOf('r0'));

  function lineOf(message: string): string {
    return `{"time":"2026-11-23T16:43:53.042059423Z","source":"stdout","container_id":"${ID}","container_name":"demo",`
      + `"image_name":"busybox","image_id":"${IMAGE_ID}","tag":"e882a436c6b3","message":"${message}"}\n`;
  }

  it('rotates before a line once the file has reached max-size, shifting .1 → .2 and dropping the oldest', async () => {
    // max-size 2 lines: a file takes lines until it holds >= 2 lines' bytes.
    const { sink, file } = openSink({ 'file-max-size': String(2 * LINE), 'file-max-file': '3' });
    await sink.write(batchOf(sink, [record('r0'), record('r1'), record('r2')]));
    expect(messages(file)).toEqual(['r2']);
    expect(messages(`${file}.1`)).toEqual(['r0', 'r1']);
    await sink.write(batchOf(sink, [record('r3')]));
    await sink.write(batchOf(sink, [record('r4'), record('r5'), record('r6')]));
    await sink.close();
    expect(messages(file)).toEqual(['r6']);
    expect(messages(`${file}.1`)).toEqual(['r4', 'r5']);
    expect(messages(`${file}.2`)).toEqual(['r2', 'r3']);
    expect(fs.readdirSync(dir).sort()).toEqual(['demo.log', 'demo.log.1', 'demo.log.2']);
    expect(read(`${file}.1`)).toBe(lineOf('r4') + lineOf('r5'));
  });

  it('lets a file exceed max-size by at most one line, and never leaves a file empty', async () => {
    const { sink, file } = openSink({ 'file-max-size': '1', 'file-max-file': '4' });
    await sink.write(batchOf(sink, [record('a'), record('b'), record('c')]));
    await sink.close();
    expect(messages(file)).toEqual(['c']);
    expect(messages(`${file}.1`)).toEqual(['b']);
    expect(messages(`${file}.2`)).toEqual(['a']);
    expect(fs.existsSync(`${file}.3`)).toBe(false);
  });

  it('rotates a full file left by an earlier run before the first line', async () => {
    const file = path.join(dir, 'demo.log');
    fs.writeFileSync(file, `${'x'.repeat(99)}\n`);
    const { sink } = openSink({ 'file-max-size': '100', 'file-max-file': '2' });
    await sink.write(batchOf(sink, [record('new')]));
    await sink.close();
    expect(read(`${file}.1`)).toBe(`${'x'.repeat(99)}\n`);
    expect(messages(file)).toEqual(['new']);
  });

  it('max-file 1 recreates the file instead of rotating', async () => {
    const { sink, file } = openSink({ 'file-max-size': String(Buffer.byteLength(lineOf('a') + lineOf('b'))), 'file-max-file': '1' });
    await sink.write(batchOf(sink, [record('a'), record('b')]));
    const old = fs.openSync(file, 'r'); // a reader (tail -F) holding the old file
    try {
      await sink.write(batchOf(sink, [record('c')]));
      await sink.close();
      expect(messages(file)).toEqual(['c']);
      expect(fs.readdirSync(dir)).toEqual(['demo.log']);
      expect(fs.fstatSync(old).nlink).toBe(0); // unlinked, not truncated in place
      expect(fs.readFileSync(old, 'utf8')).toBe(lineOf('a') + lineOf('b'));
    } finally {
      fs.closeSync(old);
    }
  });
});

describe('file sink: files and directories', () => {
  it('creates missing directories and files with mode 0640 (0750 for directories)', async () => {
    const nested = path.join(dir, 'a', 'b', 'c');
    const { sink, file } = openSink({ 'file-path': path.join(nested, '{{.Name}}.log') });
    await sink.write(batchOf(sink, [record('x')]));
    await sink.close();
    expect(file).toBe(path.join(nested, 'demo.log'));
    expect(fs.statSync(file).mode & 0o777).toBe(0o640);
    expect(fs.statSync(nested).mode & 0o777).toBe(0o750 & ~process.umask());
  });

  it('honours file-mode exactly, whatever the umask', async () => {
    const { sink, file } = openSink({ 'file-mode': '0666' });
    await sink.write(batchOf(sink, [record('x')]));
    await sink.close();
    expect(fs.statSync(file).mode & 0o777).toBe(0o666);
  });

  it('sync option still writes every line (file-fsync=true)', async () => {
    const { sink, file } = openSink({ 'file-fsync': 'true' });
    await sink.write(batchOf(sink, [record('a'), record('b')]));
    await sink.close();
    expect(messages(file)).toEqual(['a', 'b']);
  });
});

describe('file sink: instanceKey', () => {
  it('is the resolved path: equal for every stream of one container, different per container', () => {
    const opts = options();
    const restart: ContainerMeta = { ...container };
    expect(fileSink.instanceKey(opts, container)).toBe(path.join(dir, 'demo.log'));
    expect(fileSink.instanceKey(opts, restart)).toBe(fileSink.instanceKey(opts, container));
    expect(fileSink.instanceKey(opts, { ...container, name: 'web' })).toBe(path.join(dir, 'web.log'));
  });

  it('normalises the rendered path and renders labels, ids and hostname', () => {
    const meta: ContainerMeta = { ...container, labels: { team: 'payments' } };
    const opts = options({ 'file-path': `${dir}/x/../{{index .ContainerLabels "team"}}//{{.Hostname}}-{{.ID}}-{{.ImageName | upper}}.log` });
    expect(fileSink.instanceKey(opts, meta)).toBe(path.join(dir, 'payments', 'host1-e882a436c6b3-BUSYBOX.log'));
  });

  it('defaults to /var/log/shiplog/<name>.log', () => {
    const opts = parseTable(fileOptions, {}, {});
    expect(fileSink.instanceKey(opts, container)).toBe('/var/log/shiplog/demo.log');
  });
});

describe('file sink: options', () => {
  function parseError(config: Record<string, string>): string {
    try {
      const opts = parseTable(fileOptions, config, {});
      fileSink.validate(opts);
    } catch (err) {
      expect(err).toBeInstanceOf(OptionError);
      return (err as Error).message;
    }
    throw new Error('no error');
  }

  it('reports template errors naming file-path', () => {
    expect(parseError({ 'file-path': '/logs/{{.Nope}}.log' }))
      .toMatch(/^invalid log-opt "file-path": "\/logs\/\{\{\.Nope\}\}\.log" is not a valid template: unknown field \.Nope/);
    expect(parseError({ 'file-path': '/logs/{{.Name' })).toMatch(/is not a valid template: unclosed action/);
  });

  it('refuses fields the sink cannot know (ContainerMeta has no command, env or config)', () => {
    expect(parseError({ 'file-path': '/logs/{{.Command}}.log' })).toMatch(/field \.Command is not available here \(available: ID, FullID, Name/);
  });

  it('refuses a relative path', () => {
    expect(parseError({ 'file-path': 'logs/{{.Name}}.log' })).toBe('invalid log-opt "file-path": "logs/{{.Name}}.log" is not an absolute path (it must start with /)');
  });

  it('refuses a bad size, count or mode', () => {
    expect(parseError({ 'file-max-size': '10q' })).toMatch(/^invalid log-opt "file-max-size": "10q" is not a size/);
    expect(parseError({ 'file-max-size': '0' })).toBe('invalid log-opt "file-max-size": must be at least 1 byte');
    expect(parseError({ 'file-max-file': '0' })).toMatch(/^invalid log-opt "file-max-file": "0" is out of range/);
    expect(parseError({ 'file-mode': '0999' })).toMatch(/^invalid log-opt "file-mode": "0999" is not an octal file mode/);
  });

  it('parses the defaults', () => {
    const opts = parseTable(fileOptions, {}, {});
    expect(opts['file-path'].text).toBe('/var/log/shiplog/{{.Name}}.log');
    expect(opts['file-max-size']).toBe(100_000_000);
    expect(opts['file-max-file']).toBe(5);
    expect(opts['file-mode']).toBe(0o640);
    expect(opts['file-fsync']).toBe(false);
    expect(opts['file-format']).toBe('json');
  });

  it('batches: a FIFO read of 64 KiB of lines and more at the end of that read, a trickle for up to 200 ms; with file-fsync 200 ms always', () => {
    const definition: SinkDefinition<typeof fileOptions> = fileSink;
    const common = { maxRecords: 10_000, maxBytes: 4 * 1024 * 1024, maxLatencyMs: 200, concurrency: 1, maxRetries: Number.POSITIVE_INFINITY, backoffMaxMs: 5_000 };
    expect(definition.batchLimits(options())).toEqual({ ...common, promptBytes: 64 * 1024 });
    expect(definition.batchLimits(options({ 'file-fsync': 'true' }))).toEqual(common);
  });
});

describe('file sink: errors', () => {
  it.each([false, true])('ENOSPC is retryable (fsync %s: written synchronously, or through the thread pool)', async (fsync) => {
    const sink = new FileSink(new RotatingFile('/dev/full', { maxFiles: 1, mode: 0o640, fsync }), 1e9, logger);
    const failure = sink.write(batchOf(sink, [record('x')]));
    await expect(failure).rejects.toBeInstanceOf(RetryableSinkError);
    await expect(failure).rejects.toThrow(/cannot write \/dev\/full: .*ENOSPC/);
  });

  it('a path that is a directory is fatal', async () => {
    fs.mkdirSync(path.join(dir, 'demo.log'));
    const { sink } = openSink();
    await expect(sink.write(batchOf(sink, [record('x')]))).rejects.toBeInstanceOf(FatalSinkError);
  });

  it('after a failed rotation mid-batch, returns only the unwritten records for retry, and the retry duplicates nothing', async () => {
    const file = path.join(dir, 'demo.log');
    let failRotation = true;
    class FlakyRotation extends RotatingFile {
      override async rotate(): Promise<void> {
        if (failRotation) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
        return super.rotate();
      }
    }
    const sink = new FileSink(new FlakyRotation(file, { maxFiles: 3, mode: 0o640, fsync: false }), 1, logger);
    const batch = batchOf(sink, [record('a'), record('b'), record('c')]);
    const outcome = await sink.write(batch);
    expect(outcome).toEqual({ retry: [1, 2] });
    expect(messages(file)).toEqual(['a']);
    failRotation = false;
    // What the core does with a retry: the same entries' bytes, as a batch of their own.
    await expect(sink.write(batch.select([1, 2]))).resolves.toBeUndefined();
    await sink.close();
    expect(messages(`${file}.2`)).toEqual(['a']);
    expect(messages(`${file}.1`)).toEqual(['b']);
    expect(messages(file)).toEqual(['c']);
  });

  it('a fatal failure mid-batch dead-letters only the unwritten records', async () => {
    const { sink, file } = openSink({ 'file-max-size': '1', 'file-max-file': '2' });
    // demo.log.1 is a non-empty directory: the rotation cannot unlink it.
    fs.mkdirSync(path.join(dir, 'demo.log.1', 'x'), { recursive: true });
    const outcome = await sink.write(batchOf(sink, [record('a'), record('b')]));
    expect(outcome).toEqual({ deadLetters: [{ index: 1, reason: expect.stringMatching(/cannot write .*demo\.log: .*EISDIR/) }] });
    expect(messages(file)).toEqual(['a']);
  });
});

describe('file sink memory', () => {
  it('keeps no copy of a batch: appends views into its bytes, one append between rotations', async () => {
    class RecordingFile extends RotatingFile {
      readonly appended: Uint8Array[] = [];
      override async append(bytes: Uint8Array): Promise<void> {
        this.appended.push(bytes);
        await super.append(bytes);
      }
    }
    const file = path.join(dir, 'demo.log');
    const recording = new RecordingFile(file, { maxFiles: 2, mode: 0o640, fsync: false });
    const sink = new FileSink(recording, 2 * Buffer.byteLength(lineFor('r0')), logger);
    const batch = batchOf(sink, [record('r0'), record('r1'), record('r2')]);
    await sink.write(batch);
    await sink.close();
    // r0 and r1 fill the file to max-size: one append, a rotation, then one append for r2.
    expect(recording.appended.map((b) => [b.byteOffset - batch.bytes.byteOffset, b.length]))
      .toEqual([[0, batch.end(1)], [batch.start(2), batch.end(2) - batch.start(2)]]);
    expect(recording.appended.every((b) => b.buffer === batch.bytes.buffer)).toBe(true);
    expect(messages(`${file}.1`)).toEqual(['r0', 'r1']);
    expect(messages(file)).toEqual(['r2']);
  });
});

/** The line the sink writes for record(message) of the default container. */
function lineFor(message: string): string {
  return new JsonLinesEncoder().line(record(message));
}

describe('file sink: JSON line encoder', () => {
  it('encode() writes the line the file receives, newline included', async () => {
    const { sink, file } = openSink();
    const line = batchOf(sink, [record('hello')]).texts()[0];
    expect(line).toBe(
      `{"time":"2026-11-23T16:43:53.042059423Z","source":"stdout","container_id":"${ID}","container_name":"demo",`
      + `"image_name":"busybox","image_id":"${IMAGE_ID}","tag":"e882a436c6b3","message":"hello"}\n`,
    );
    await sink.write(batchOf(sink, [record('hello')]));
    await sink.close();
    expect(read(file)).toBe(line);
  });

  it('caches the container part per container, never across containers: lines match a fresh encoder in any order', () => {
    const other: ContainerMeta = { ...container, id: 'f'.repeat(64), name: 'other', attrs: { team: 'x' } };
    const records = [record('1'), record('2', 0, { container: other }), record('3'), record('4', 0, { container: other }), record('5')];
    const shared = new JsonLinesEncoder();
    expect(records.map((r) => shared.line(r))).toEqual(records.map((r) => new JsonLinesEncoder().line(r)));
  });
});

describe('file sink: JSON line bytes', () => {
  it('copies plain printable ASCII messages as they are and escapes everything else exactly as JSON.stringify does', () => {
    const enc = new JsonLinesEncoder();
    const messages = [
      'plain text 123 {x:y} [a,b] ~!@#$%^&*()_+=-`\'', '', 'quote " inside', 'back\\slash', 'tab\there', 'nul \u0000 and \u001f',
      'del \u007f', 'héllo wörld', 'emoji 😀', '\u2028 line separator', 'end with quote "',
    ];
    for (const m of messages) {
      const line = enc.line(record(m));
      expect(JSON.parse(line)).toMatchObject({ message: m });
      expect(line.endsWith(`"message":${JSON.stringify(m)}}\n`)).toBe(true);
    }
  });

  it('writes invalid UTF-8 as U+FFFD, like decoding the line as text', () => {
    const bad = Buffer.from([0x61, 0xff, 0xfe, 0x62, 0xc3]);
    const line = new JsonLinesEncoder().line(record('x', 0, { line: bad }));
    expect((JSON.parse(line) as { message: string }).message).toBe(bad.toString('utf8'));
    expect((JSON.parse(line) as { message: string }).message).toBe('a\ufffd\ufffdb\ufffd');
  });

  it('tells plain JSON text from bytes that need escaping or decoding', () => {
    expect(isPlainJsonText(Buffer.from('hello world ~'))).toBe(true);
    expect(isPlainJsonText(Buffer.from(''))).toBe(true);
    for (const b of [0x00, 0x1f, 0x22, 0x5c, 0x7f, 0x80, 0xff]) expect(isPlainJsonText(Buffer.from([0x61, b, 0x62]))).toBe(false);
  });

  it('a source other than stdout/stderr is still valid JSON', () => {
    expect(JSON.parse(new JsonLinesEncoder().line(record('m', 0, { source: 'weird' as 'stdout' })))).toMatchObject({ source: 'weird', message: 'm' });
  });
});

describe('file sink: rotation plan', () => {
  /** Entries of 10 bytes each, except where a test says otherwise. */
  const TEN = 'x'.repeat(9) + '\n';

  it('plans no cut while the file stays under max-size, nor for an empty batch', () => {
    expect(planRotations(EncodedBatch.of([TEN, TEN, TEN]), 0, 31)).toEqual([]);
    expect(planRotations(EncodedBatch.of([]), 100, 1)).toEqual([]);
  });

  it('cuts before the entry that would start once the file has reached max-size, at its byte offset', () => {
    expect(planRotations(EncodedBatch.of([TEN, TEN, TEN]), 0, 20)).toEqual([{ record: 2, offset: 20 }]);
    // The file's existing size counts: 15 + 10 bytes reach 20 before the second entry.
    expect(planRotations(EncodedBatch.of([TEN, TEN, TEN]), 15, 20)).toEqual([{ record: 1, offset: 10 }]);
    // Offsets are bytes, not characters: 'é' is 2 bytes in UTF-8.
    expect(planRotations(EncodedBatch.of(['éé\n', TEN]), 0, 5)).toEqual([{ record: 1, offset: 5 }]);
  });

  it('rotates a file already at max-size before the first entry', () => {
    expect(planRotations(EncodedBatch.of([TEN, TEN]), 100, 100)).toEqual([{ record: 0, offset: 0 }]);
  });

  it('lets a file exceed max-size by at most one entry, and never plans an empty file', () => {
    // max-size below any entry: the empty file takes the first entry, then one entry per file.
    expect(planRotations(EncodedBatch.of([TEN, TEN, TEN]), 0, 1)).toEqual([{ record: 1, offset: 10 }, { record: 2, offset: 20 }]);
    // 25 bytes allowed: the third 10-byte entry takes the file to 30, then a cut.
    expect(planRotations(EncodedBatch.of([TEN, TEN, TEN, TEN]), 0, 25)).toEqual([{ record: 3, offset: 30 }]);
  });
});
