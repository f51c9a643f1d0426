import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DocumentBuilder, containerPart, jsonLevel } from '../sinks/elasticsearch/document.js';
import { resolveTarget } from '../sinks/elasticsearch/target.js';
import type { Target } from '../sinks/elasticsearch/target.js';
import { recordId } from '../sinks/sink.js';
import type { ContainerMeta, LogRecord } from '../sinks/sink.js';
import { bigIntToParts } from '../src/time.js';

const CONTAINER_ID = 'f3a1c2b4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80';
const DEFAULT_TARGET = resolveTarget('logs-docker-default', 'auto');

function meta(overrides: Partial<ContainerMeta> = {}): ContainerMeta {
  return {
    id: CONTAINER_ID,
    name: 'web-1',
    imageName: 'nginx:1.27',
    imageId: 'sha256:4f67c83422ec747235357c04556616234e66fc3fa39cb4f40b2d4441ddd8f100',
    tag: 'f3a1c2b4d5e6',
    attrs: { 'com.example.team': 'payments', env: 'prod' },
    labels: { 'com.docker.compose.project': 'shop', 'com.docker.compose.project.working_dir': '/srv/shop', maintainer: 'ops' },
    hostname: 'docker-host-01',
    ...overrides,
  };
}

function record(container: ContainerMeta, line: string | Buffer, overrides: Partial<Omit<LogRecord, 'container' | 'line'>> = {}): LogRecord {
  return {
    container,
    source: 'stdout',
    timeNano: bigIntToParts(1_700_000_000_123_456_789n),
    line: typeof line === 'string' ? Buffer.from(line) : line,
    truncated: false,
    seq: 0,
    ...overrides,
  };
}

function doc(r: LogRecord, options: { target?: Target; eventOriginal?: boolean; labels?: 'normalised' | 'dotted' } = {}): Record<string, unknown> {
  const builder = new DocumentBuilder({ target: options.target ?? DEFAULT_TARGET, eventOriginal: options.eventOriginal ?? false });
  return JSON.parse(builder.document(r, options.labels ?? 'normalised')) as Record<string, unknown>;
}

describe('ECS document', () => {
  it('writes message and event.original exactly as JSON.stringify of the line text, on the byte path and off it', () => {
    const messages: (string | Buffer)[] = [
      'plain ascii ~!@#$%^&*()', '', 'quote " inside', 'back\\slash', 'tab\tand\nnewline', 'nul \u0000 del \u007f',
      'héllo wörld 😀', '\u2028', Buffer.from([0x61, 0xff, 0x62, 0xc3]),
    ];
    for (const m of messages) {
      const text = typeof m === 'string' ? m : m.toString('utf8');
      const builder = new DocumentBuilder({ target: DEFAULT_TARGET, eventOriginal: true });
      const json = builder.document(record(meta(), m), 'normalised');
      expect(json).toContain(`"message":${JSON.stringify(text)},"stream":"stdout"`);
      expect(JSON.parse(json)).toMatchObject({ message: text, event: { original: text } });
    }
  });

  it('has every field for a data stream record, with label keys normalised', () => {
    expect(doc(record(meta(), 'GET /api 200'))).toEqual({
      '@timestamp': '2023-11-14T22:13:20.123456789Z',
      message: 'GET /api 200',
      stream: 'stdout',
      container: {
        id: CONTAINER_ID,
        name: 'web-1',
        image: { name: 'nginx:1.27', id: 'sha256:4f67c83422ec747235357c04556616234e66fc3fa39cb4f40b2d4441ddd8f100' },
        labels: { com_docker_compose_project: 'shop', com_docker_compose_project_working_dir: '/srv/shop', maintainer: 'ops' },
      },
      host: { name: 'docker-host-01' },
      tag: 'f3a1c2b4d5e6',
      labels: { com_example_team: 'payments', env: 'prod' },
      data_stream: { type: 'logs', dataset: 'docker', namespace: 'default' },
    });
  });

  it('keeps the exact nanoseconds of time_nano in @timestamp', () => {
    expect(doc(record(meta(), 'x', { timeNano: bigIntToParts(1_795_452_233_042_059_423n) }))['@timestamp']).toBe('2026-11-23T16:43:53.042059423Z');
    expect(doc(record(meta(), 'x', { timeNano: bigIntToParts(1_700_000_000_000_000_001n) }))['@timestamp']).toBe('2023-11-14T22:13:20.000000001Z');
  });

  it('writes stderr as stream and never turns it into log.level', () => {
    const d = doc(record(meta(), 'boom', { source: 'stderr' }));
    expect(d['stream']).toBe('stderr');
    expect(d['log']).toBeUndefined();
  });

  it('marks a truncated line with log.flags ["truncated"]', () => {
    expect(doc(record(meta(), 'cut', { truncated: true }))['log']).toEqual({ flags: ['truncated'] });
  });

  it('adds event.original only when enabled', () => {
    expect(doc(record(meta(), 'raw line'))['event']).toBeUndefined();
    expect(doc(record(meta(), 'raw line'), { eventOriginal: true })['event']).toEqual({ original: 'raw line' });
  });

  it('has no data_stream fields for an index, and leaves out empty metadata', () => {
    const bare = meta({ name: '', imageName: '', imageId: '', tag: '', attrs: {}, labels: {}, hostname: '' });
    expect(doc(record(bare, 'm'), { target: resolveTarget('docker-%Y.%m.%d', 'auto') })).toEqual({
      '@timestamp': '2023-11-14T22:13:20.123456789Z', message: 'm', stream: 'stdout', container: { id: CONTAINER_ID },
    });
  });

  it('keeps label keys with their dots when container.labels is flattened, normalising only malformed paths', () => {
    const d = doc(record(meta({ labels: { 'a.b': '1', 'a.b.c': '2', '.x': '3', 'y..z': '4', '': 'dropped' } }), 'm'), { labels: 'dotted' });
    expect((d['container'] as Record<string, unknown>)['labels']).toEqual({ 'a.b': '1', 'a.b.c': '2', _x: '3', y__z: '4' });
    // ECS labels (the extras) are plain keywords: always normalised.
    expect(d['labels']).toEqual({ com_example_team: 'payments', env: 'prod' });
  });

  it('round-trips any message text exactly, escapes included', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (text) => {
      expect(doc(record(meta(), text))['message']).toBe(Buffer.from(text).toString('utf8'));
    }));
    const tricky = 'tab\tquote" backslash\\ nul\u0000 bell\u0007 emoji😀 ls\u2028';
    expect(doc(record(meta(), tricky))['message']).toBe(tricky);
  });

  it('decodes invalid UTF-8 with replacement characters rather than failing', () => {
    expect(doc(record(meta(), Buffer.from([0x61, 0xff, 0x62])))['message']).toBe('a\ufffdb');
  });

  it('stringifies the per-container part once per ContainerMeta object', () => {
    let labelReads = 0;
    const base = meta();
    const counted: ContainerMeta = { ...base, get labels() { labelReads++; return base.labels; } };
    const builder = new DocumentBuilder({ target: DEFAULT_TARGET, eventOriginal: false });
    for (let i = 0; i < 5; i++) builder.document(record(counted, `line ${i}`), 'normalised');
    expect(labelReads).toBe(1);
    builder.entry(record(counted, 'plain line: writeEntry\'s own path'), 'normalised');
    expect(labelReads).toBe(1);
    builder.document(record(counted, 'again'), 'dotted');
    expect(labelReads).toBe(2);
    expect(containerPart(base, DEFAULT_TARGET, 'normalised').startsWith(',"container":{')).toBe(true);
  });
});

describe('log.level from JSON lines', () => {
  const level = (line: string): string | undefined => jsonLevel(Buffer.from(line), line);

  it('takes a top-level string level or log.level', () => {
    expect(level('{"level":"warn","msg":"disk almost full"}')).toBe('warn');
    expect(level('{"@timestamp":"2024-01-01T00:00:00Z","log.level":"ERROR","message":"x"}')).toBe('ERROR');
    expect(level('{"time":1,"level":"info"}\r')).toBe('info');
    expect(doc(record(meta(), '{"level":"debug","msg":"x"}'))['log']).toEqual({ level: 'debug' });
  });

  it('does not guess from anything else', () => {
    expect(level('level" is in this plain line')).toBeUndefined();
    expect(level('{"level":30,"msg":"pino numeric level"}')).toBeUndefined();
    expect(level('{"msg":"the word \\"level\\" in a value","a":{"level":"nested"}}')).toBeUndefined();
    expect(level('{"level":"warn"')).toBeUndefined();
    expect(level('[{"level":"warn"}]')).toBeUndefined();
    expect(level(`{"level":"warn","pad":"${'x'.repeat(20_000)}"}`)).toBeUndefined();
  });

  it('combines a level with the truncated flag', () => {
    // A truncated JSON line no longer parses, so in practice the two meet only if the cut kept it whole.
    expect(doc(record(meta(), '{"level":"error"}', { truncated: true }))['log']).toEqual({ level: 'error', flags: ['truncated'] });
  });
});

describe('bulk action lines and ids', () => {
  it('sends create with the record id, the index in the path for a fixed target', () => {
    const builder = new DocumentBuilder({ target: DEFAULT_TARGET, eventOriginal: false });
    const r = record(meta(), 'x');
    expect(builder.pathIndex).toBe('logs-docker-default');
    expect(builder.action(r)).toBe(`{"create":{"_id":"${recordId(r)}"}}`);
    const [action, source, end] = builder.entry(r, 'normalised').split('\n');
    expect(JSON.parse(action ?? '')).toEqual({ create: { _id: recordId(r) } });
    expect(JSON.parse(source ?? '')).toEqual(doc(r));
    expect(end).toBe('');
  });

  it('renders a dated index from each record\'s own UTC time, still with create and the id', () => {
    const builder = new DocumentBuilder({ target: resolveTarget('docker-%Y.%m.%d-%H', 'auto'), eventOriginal: false });
    expect(builder.pathIndex).toBeUndefined();
    const beforeMidnight = record(meta(), 'a', { timeNano: bigIntToParts(1_700_006_399_999_999_999n) });
    const afterMidnight = record(meta(), 'b', { timeNano: bigIntToParts(1_700_006_400_000_000_000n) });
    expect(JSON.parse(builder.action(beforeMidnight))).toEqual({ create: { _index: 'docker-2023.11.14-23', _id: recordId(beforeMidnight) } });
    expect(JSON.parse(builder.action(afterMidnight))).toEqual({ create: { _index: 'docker-2023.11.15-00', _id: recordId(afterMidnight) } });
    expect(JSON.parse(builder.action(beforeMidnight))).toMatchObject({ create: { _index: 'docker-2023.11.14-23' } });
  });

  it('keeps ids exactly as earlier versions made them (re-sent lines must meet their stored _id)', () => {
    const c = meta();
    expect(recordId(record(c, 'x', { timeNano: bigIntToParts(1_700_000_000_123_456_789n) }))).toBe(`${CONTAINER_ID.slice(0, 32)}o17979cfe3d85cd15`);
    expect(recordId(record(c, 'x', { source: 'stderr', seq: 3, timeNano: bigIntToParts(5n) }))).toBe(`${CONTAINER_ID.slice(0, 32)}e0000000000000005.3`);
    expect(recordId(record(c, 'x', { timeNano: { low: -1, high: -1 } }))).toBe(`${CONTAINER_ID.slice(0, 32)}offffffffffffffff`);
    for (let i = 0; i < 1000; i++) {
      const ns = BigInt(i) * 7_919_000_000_013n + 1_600_000_000_000_000_000n;
      const t = bigIntToParts(ns);
      const old = `${CONTAINER_ID.slice(0, 32)}o${(t.high >>> 0).toString(16).padStart(8, '0')}${(t.low >>> 0).toString(16).padStart(8, '0')}`;
      expect(recordId(record(c, 'x', { timeNano: t }))).toBe(old);
    }
  });

  it('gives the same id to the same line re-read, and different ids to different lines', () => {
    const a = record(meta(), 'same');
    const again = record(meta(), 'same, even with another text after a restart');
    expect(recordId(again)).toBe(recordId(a));
    expect(recordId(record(meta(), 'x', { seq: 1 }))).not.toBe(recordId(a));
    expect(recordId(record(meta(), 'x', { source: 'stderr' }))).not.toBe(recordId(a));
    expect(recordId(record(meta(), 'x', { timeNano: bigIntToParts(1_700_000_000_123_456_790n) }))).not.toBe(recordId(a));
    expect(recordId(record(meta({ id: `0${CONTAINER_ID.slice(1)}` }), 'x'))).not.toBe(recordId(a));

    const tuple = fc.tuple(fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }), fc.constantFrom('stdout' as const, 'stderr' as const), fc.nat(1000));
    fc.assert(fc.property(tuple, tuple, ([t1, s1, q1], [t2, s2, q2]) => {
      const id1 = recordId(record(meta(), 'l', { timeNano: bigIntToParts(t1), source: s1, seq: q1 }));
      const id2 = recordId(record(meta(), 'l', { timeNano: bigIntToParts(t2), source: s2, seq: q2 }));
      expect(id1 === id2).toBe(t1 === t2 && s1 === s2 && q1 === q2);
      expect(Buffer.byteLength(id1)).toBeLessThanOrEqual(512);
    }));
  });
});

describe('bulk entries', () => {
  const line = fc.oneof(
    fc.string({ unit: 'grapheme-ascii' }), // mostly plain: the byte path
    fc.string({ unit: 'binary' }),
    fc.constantFrom('{"level":"warn","msg":"disk 91%"}', '{"log.level":"error"}', 'plain "quoted" \\ text', ''),
  );
  const input = fc.record({
    line,
    source: fc.constantFrom('stdout' as const, 'stderr' as const),
    truncated: fc.boolean(),
    seq: fc.constantFrom(0, 0, 3),
    ns: fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }),
    eventOriginal: fc.boolean(),
    dated: fc.boolean(),
    labels: fc.constantFrom('normalised' as const, 'dotted' as const),
    container: fc.constantFrom(meta(), meta({ name: '', imageName: '', imageId: '', hostname: '', tag: '', attrs: {}, labels: {} })),
  });

  it('writeEntry is the action line and the document, each with its newline, whichever path wrote it', () => {
    fc.assert(fc.property(input, (i) => {
      const target = i.dated ? resolveTarget('docker-%Y.%m.%d', 'auto') : DEFAULT_TARGET;
      const r = record(i.container, i.line, { source: i.source, truncated: i.truncated, seq: i.seq, timeNano: bigIntToParts(i.ns) });
      // One builder writes the entry after other records (its caches warm), another the parts alone.
      const entries = new DocumentBuilder({ target, eventOriginal: i.eventOriginal });
      entries.entry(record(i.container, 'before', { source: 'stderr' }), i.labels);
      const parts = new DocumentBuilder({ target, eventOriginal: i.eventOriginal });
      expect(entries.entry(r, i.labels)).toBe(`${parts.action(r)}\n${parts.document(r, i.labels)}\n`);
    }), { numRuns: 500 });
  });
});
