import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DecodedEntry } from '../src/entry.js';
import { type AssembledLine, PartialReassembler } from '../src/pipeline/partials.js';

const T = { low: 123, high: 456 };
function entry(line: string, p?: { id?: string; ordinal: number; last: boolean }, source = 'stdout'): DecodedEntry {
  return {
    source, timeNano: T, line: Buffer.from(line), partial: p !== undefined,
    partialId: p?.id ?? '', partialOrdinal: p?.ordinal ?? 0, partialLast: p?.last ?? false,
  };
}
function collect(limits = { maxBytes: 1 << 20, holdMs: 5000 }) {
  const out: AssembledLine[] = [];
  const r = new PartialReassembler(limits, (l) => out.push(l));
  const text = () => out.map((l) => `${l.line.toString()}${l.truncated ? '!' : ''}`);
  return { r, out, text };
}

describe('PartialReassembler', () => {
  afterEach(() => vi.useRealTimers());

  it('passes whole lines through untouched', () => {
    const { r, text } = collect();
    r.push(entry('a'));
    r.push(entry('b', undefined, 'stderr'));
    expect(text()).toEqual(['a', 'b']);
  });

  it('joins chunks in order into one line with the first chunk time', () => {
    const { r, out, text } = collect();
    r.push(entry('aa', { id: 'x', ordinal: 1, last: false }));
    r.push(entry('bb', { id: 'x', ordinal: 2, last: false }));
    expect(out).toHaveLength(0);
    r.push(entry('cc', { id: 'x', ordinal: 3, last: true }));
    expect(text()).toEqual(['aabbcc']);
    expect(out[0]?.timeNano).toBe(T);
    expect(r.openGroups).toBe(0);
  });

  it('keeps interleaved stdout and stderr groups apart', () => {
    const { r, text } = collect();
    r.push(entry('o1', { id: 'o', ordinal: 1, last: false }));
    r.push(entry('e1', { id: 'e', ordinal: 1, last: false }, 'stderr'));
    r.push(entry('o2', { id: 'o', ordinal: 2, last: true }));
    r.push(entry('e2', { id: 'e', ordinal: 2, last: true }, 'stderr'));
    expect(text()).toEqual(['o1o2', 'e1e2']);
  });

  it('accepts the empty last chunk dockerd sends after an exact 16 KiB line', () => {
    const { r, text } = collect();
    r.push(entry('x'.repeat(16384), { id: 'x', ordinal: 1, last: false }));
    r.push(entry('', { id: 'x', ordinal: 2, last: true }));
    expect(text()).toEqual(['x'.repeat(16384)]);
  });

  it('cuts at the size cap without losing bytes: truncated pieces carry the rest', () => {
    const { r, text } = collect({ maxBytes: 5, holdMs: 5000 });
    r.push(entry('abcd', { id: 'x', ordinal: 1, last: false }));
    r.push(entry('efghijklm', { id: 'x', ordinal: 2, last: false }));
    r.push(entry('no', { id: 'x', ordinal: 3, last: true }));
    expect(text()).toEqual(['abcde!', 'fghij!', 'klmno!']);
  });

  it('does not mark a line exactly as long as the cap truncated', () => {
    const { r, text } = collect({ maxBytes: 4, holdMs: 5000 });
    r.push(entry('abcd', { id: 'x', ordinal: 1, last: false }));
    r.push(entry('', { id: 'x', ordinal: 2, last: true }));
    expect(text()).toEqual(['abcd']);
  });

  it('emits what was gathered as truncated when the next chunk is late', () => {
    vi.useFakeTimers();
    const { r, text } = collect({ maxBytes: 1 << 20, holdMs: 1000 });
    r.push(entry('part', { id: 'x', ordinal: 1, last: false }));
    vi.advanceTimersByTime(999);
    expect(text()).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(text()).toEqual(['part!']);
    expect(r.openGroups).toBe(0);
  });

  it('flushes incomplete lines at end of stream (printf without newline)', () => {
    const { r, text } = collect();
    r.push(entry('noeol', { id: 'x', ordinal: 1, last: false }));
    r.flushAll();
    expect(text()).toEqual(['noeol!']);
  });

  it('handles daemons that send partial without metadata, ended by a plain entry', () => {
    const { r, text } = collect();
    r.push(entry('ab', { ordinal: 0, last: false }));
    r.push(entry('cd', { ordinal: 0, last: false }));
    r.push(entry('ef'));
    expect(text()).toEqual(['abcdef']);
  });
});
