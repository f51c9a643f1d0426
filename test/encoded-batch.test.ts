import { describe, expect, it } from 'vitest';
import { BatchBuilder, EncodedBatch } from '../sinks/encoded-batch.js';

describe('BatchBuilder / EncodedBatch', () => {
  it('keeps entries back to back and gives each one back exactly, multi-byte UTF-8 included', () => {
    const b = new BatchBuilder();
    const texts = ['a\n', 'héllo wörld ✓\n', '', '😀 four bytes\n'];
    const sizes = texts.map((t) => b.add(t));
    expect(sizes).toEqual(texts.map((t) => Buffer.byteLength(t)));
    expect(b.count).toBe(4);
    const batch = b.seal();
    expect(batch.count).toBe(4);
    expect(batch.texts()).toEqual(texts);
    expect(batch.bytes.toString()).toBe(texts.join(''));
    expect(batch.range(1, 3).toString()).toBe(texts.slice(1, 3).join(''));
    expect(b.count).toBe(0);
    expect(b.byteLength).toBe(0);
  });

  it('grows past its scratch buffer, and a sealed batch owns its bytes (the builder reuses its scratch)', () => {
    const b = new BatchBuilder();
    const big = 'x'.repeat(100_000);
    b.add(big);
    b.add(Buffer.from('tail'));
    const first = b.seal();
    b.add('overwrites the scratch');
    const second = b.seal();
    expect(first.texts()).toEqual([big, 'tail']);
    expect(second.texts()).toEqual(['overwrites the scratch']);
  });

  it('lets go of a scratch buffer one big batch grew past 1 MiB once that batch is sealed', () => {
    const b = new BatchBuilder();
    const scratchBytes = () => (b as unknown as { scratch: Buffer }).scratch.length;
    const small = scratchBytes();
    b.add('y'.repeat(600_000)); // reserves 3 bytes per UTF-16 unit: grows past 1 MiB
    expect(scratchBytes()).toBeGreaterThan(1024 * 1024);
    b.seal();
    expect(scratchBytes()).toBe(small);
  });

  it('removeLast takes back the entry added last', () => {
    const b = new BatchBuilder();
    b.add('keep');
    b.add('drop');
    b.removeLast();
    b.add('then');
    expect(b.seal().texts()).toEqual(['keep', 'then']);
    b.add('only');
    b.removeLast();
    expect(b.count).toBe(0);
    expect(b.byteLength).toBe(0);
  });

  it('select copies the chosen entries into a batch of their own, in the order given', () => {
    const batch = EncodedBatch.of(['zero', 'one', 'two', 'three']);
    const picked = batch.select([3, 1]);
    expect(picked.texts()).toEqual(['three', 'one']);
    batch.bytes.fill(0);
    expect(picked.texts()).toEqual(['three', 'one']);
    expect(batch.select([]).count).toBe(0);
  });
});
