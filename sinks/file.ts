/**
 * The file sink: JSON lines (sinks/file/json-lines.ts, or Docker's json-file lines with
 * file-format=json-file: sinks/file/json-file-lines.ts) appended to a file per path template, rotated
 * by size like Docker's `local` driver (sinks/file/rotating-file.ts). Every stream whose template
 * resolves to the same path (a container's restarts, or containers sharing a fixed path) shares one
 * instance, hence one writer; that instance keeps the options of the container that opened it.
 * Each record is encoded to its line as the core queues it (encode), so batches arrive as bytes ready
 * to append. Line bytes that are not valid UTF-8 are written with U+FFFD in their place (JSON text is
 * Unicode).
 * The file is not reopened if something else moves or deletes it: use file-max-size/file-max-file,
 * not logrotate.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { ContainerInfo } from '../src/container-info.js';
import { OptionError, opt, type OptionTable, type ParsedOptions } from '../src/option-table.js';
import { compileTemplate, type RenderTemplate } from '../src/pipeline/template.js';
import { JsonFileEncoder } from './file/json-file-lines.js';
import { JsonLinesEncoder, type LineEncoder, planRotations } from './file/json-lines.js';
import { RotatingFile } from './file/rotating-file.js';
import {
  type BatchLimits, type ContainerMeta, type EncodedBatch, type EntryWriter, FatalSinkError, type LogRecord, RetryableSinkError, type Sink, type SinkDefinition, type WriteOutcome,
} from './sink.js';

/** A parsed `file-path`: the text as given and its compiled template. */
export interface PathTemplate {
  readonly text: string;
  readonly render: RenderTemplate;
}

/** Info fields a path template may use: those ContainerMeta carries (the sink sees no more). */
const PATH_TEMPLATE_FIELDS = [
  'ID', 'FullID', 'Name', 'ImageID', 'ImageFullID', 'ImageName', 'DaemonName', 'Hostname',
  'ContainerID', 'ContainerName', 'ContainerImageID', 'ContainerImageName', 'ContainerLabels',
];

export function parsePathTemplate(text: string): PathTemplate {
  if (!text.startsWith('/')) throw new Error('is not an absolute path (it must start with /)');
  try {
    return { text, render: compileTemplate(text, { availableFields: PATH_TEMPLATE_FIELDS }) };
  } catch (err) {
    throw new Error(`is not a valid template: ${(err as Error).message}`);
  }
}

/** An octal permission mode such as 0640 or 640. */
export function parseFileMode(text: string): number {
  if (!/^0?[0-7]{3}$/.test(text.trim())) throw new Error('is not an octal file mode (use e.g. 0640)');
  return parseInt(text.trim(), 8);
}

export const fileOptions = {
  'file-path': opt.custom<PathTemplate>('/var/log/shiplog/{{.Name}}.log', 'File the lines are appended to, one JSON object per line. An absolute path; a template with {{.Name}} {{.ID}} {{.FullID}} {{.ImageName}} {{.ImageID}} {{.Hostname}} {{index .ContainerLabels "k"}} and the tag functions (lower, upper, ...). Streams that resolve to the same path share one writer; its directories are created.', 'path template', parsePathTemplate),
  'file-max-size': opt.size('100m', 'Size at which the file is rotated (checked before each line, as Docker\'s local driver does; decimal units: 1k = 1000 bytes).'),
  'file-max-file': opt.int('5', 'Files kept, the current one included: <path>, <path>.1 (newest) … <path>.<n-1>. 1 = the file is emptied (recreated) instead of rotated.', 1, 1000),
  'file-mode': opt.custom('0640', 'Permissions (octal) of the log files shiplog creates; new directories get the same plus x where r is set.', 'octal mode', parseFileMode),
  'file-format': opt.oneOf('json', 'The lines written. json: one JSON object per line with the time, source, container id, name, image and tag, attrs, and message. json-file: Docker\'s json-file lines ({"log":…,"stream":…,"attrs":…,"time":…}), which tools reading json-file logs understand, at about a quarter of the bytes for short lines (no container fields: put {{.ID}} or {{.Name}} in file-path).', ['json', 'json-file'] as const),
  'file-fsync': opt.bool('false', 'Sync each batch to disk before it counts as delivered, so it survives a power loss (costs one disk flush per batch).'),
} as const satisfies OptionTable;

export type FileOptionTable = typeof fileOptions;
export type FileOptions = ParsedOptions<FileOptionTable>;

/**
 * Without file-fsync a batch of 64 KiB or more (a fast stream's FIFO read) is written at the end of
 * that read, with one synchronous write into the page cache, as the store writes: a batch's memory is
 * free again within microseconds, and it is acknowledged before the sink runner would write its
 * records through to the disk spool, so a fast stream's lines cost the spool nothing (sink-runner.ts,
 * secure). A trickle is gathered for up to 200 ms (and written through meanwhile). Sealing every read,
 * however small, measured no faster and made V8 grow its young generation: one fast container's peak
 * RSS 101 -> 115-122 MiB. With 20 containers at full speed, open batches waiting for a timer and
 * thread-pool writes in flight had once filled the memory all sink instances share and pushed healthy
 * instances into their disk spools. With file-fsync each batch costs a disk flush, so batches gather
 * for up to 200 ms, the write and flush go through the thread pool, and their records are written
 * through to the spool meanwhile.
 */
const FSYNC_LIMITS: BatchLimits = {
  maxRecords: 10_000,
  maxBytes: 4 * 1024 * 1024,
  maxLatencyMs: 200,
  concurrency: 1,
  maxRetries: Number.POSITIVE_INFINITY,
  backoffMaxMs: 5_000,
};
const LIMITS: BatchLimits = { ...FSYNC_LIMITS, promptBytes: 64 * 1024 };

/** Errors no retry can fix: the path itself is wrong. Everything else (ENOSPC, EIO, EACCES, ...) is retried. */
const FATAL_CODES = new Set(['EISDIR', 'ENOTDIR', 'ENAMETOOLONG', 'ELOOP']);

/**
 * `satisfies` rather than a type annotation: the checks are the same, and the inferred type stays
 * assignable to the registry's `SinkDefinition` (TS measures SinkDefinition<T> as invariant in T).
 */
export const fileSink = {
  name: 'file',
  options: fileOptions,
  validate(opts) {
    // The template was compiled when file-path was parsed (so its error says where the value came from).
    if (opts['file-max-size'] < 1) throw new OptionError('invalid log-opt "file-max-size": must be at least 1 byte');
  },
  instanceKey: (opts, container) => resolveFilePath(opts, container),
  batchLimits: (opts) => (opts['file-fsync'] ? FSYNC_LIMITS : LIMITS),
  create: (opts, ctx) => {
    const path = resolveFilePath(opts, ctx.container);
    return new FileSink(
      new RotatingFile(
        path,
        { maxFiles: opts['file-max-file'], mode: opts['file-mode'], fsync: opts['file-fsync'] },
        (bytes) => ctx.logger.warn({ path, bytes }, 'file sink: cut a torn last line left by a crash (its batch is written again whole)'),
      ),
      opts['file-max-size'],
      ctx.logger,
      opts['file-format'] === 'json-file' ? new JsonFileEncoder() : new JsonLinesEncoder(),
    );
  },
} satisfies SinkDefinition<FileOptionTable>;

/** The file a container's lines go to: file-path rendered for it, normalised. */
export function resolveFilePath(opts: FileOptions, container: ContainerMeta): string {
  const rendered = opts['file-path'].render(infoFromMeta(container), container.hostname);
  if (rendered.includes('\0')) throw new OptionError(`invalid log-opt "file-path": ${JSON.stringify(opts['file-path'].text)} renders to a path with a NUL byte`);
  return path.resolve(rendered);
}

/** The Info a path template sees: what ContainerMeta carries (PATH_TEMPLATE_FIELDS), the rest empty. */
function infoFromMeta(c: ContainerMeta): ContainerInfo {
  return {
    Config: {}, ContainerID: c.id, ContainerName: `/${c.name}`, ContainerEntrypoint: '', ContainerArgs: [],
    ContainerImageID: c.imageId, ContainerImageName: c.imageName, ContainerCreated: '', ContainerEnv: null,
    ContainerLabels: { ...c.labels }, LogPath: '', DaemonName: 'docker',
  };
}

/**
 * Writes batches strictly in call order, one at a time, even when the core calls write() again
 * before the previous one settled. A batch's bytes go to the file as they are (views, no copy):
 * between rotations, one write.
 */
export class FileSink implements Sink {
  readonly name = 'file';
  /** A batch's bytes are in the file (or the write failed) when write() settles. */
  readonly releasesBatchOnSettle = true;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly file: RotatingFile,
    private readonly maxFileBytes: number,
    private readonly logger: Logger,
    private readonly encoder: LineEncoder = new JsonLinesEncoder(),
  ) {}

  /** The record's JSON line, newline included: the exact bytes the file will receive. */
  encode(record: LogRecord, out: EntryWriter): void {
    this.encoder.write(record, out);
  }

  write(batch: EncodedBatch): Promise<WriteOutcome | void> {
    if (this.closed) return Promise.reject(new RetryableSinkError(`file sink ${this.file.path} is closed`));
    const result = this.queue.then(() => this.writeNow(batch));
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Waits for the writes already asked for, then syncs and closes the file. */
  async close(): Promise<void> {
    this.closed = true;
    await this.queue;
    await this.file.close();
  }

  private async writeNow(batch: EncodedBatch): Promise<WriteOutcome | void> {
    if (batch.count === 0) return;
    /** Entries before this index are in a file: after a failure only the rest is retried. */
    let written = 0;
    try {
      const cuts = planRotations(batch, await this.file.currentSize(), this.maxFileBytes);
      let start = 0;
      for (const cut of cuts) {
        await this.file.append(batch.bytes.subarray(start, cut.offset));
        written = cut.record;
        await this.file.rotate();
        start = cut.offset;
      }
      await this.file.append(batch.bytes.subarray(start));
    } catch (err) {
      const failure = classify(err, this.file.path);
      if (written === 0) throw failure;
      const rest = indicesFrom(written, batch.count);
      this.logger.warn({ path: this.file.path, written, failed: rest.length, err: failure.message }, 'file sink wrote part of a batch');
      return failure instanceof FatalSinkError
        ? { deadLetters: rest.map((index) => ({ index, reason: failure.message })) }
        : { retry: rest };
    }
  }
}

/** The entry indices [from, to). */
function indicesFrom(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

function classify(err: unknown, file: string): RetryableSinkError | FatalSinkError {
  if (err instanceof RetryableSinkError || err instanceof FatalSinkError) return err;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const message = `cannot write ${file}: ${err instanceof Error ? err.message : String(err)}`;
  return FATAL_CODES.has(code) ? new FatalSinkError(message) : new RetryableSinkError(message);
}
