import { describe, expect, it } from 'vitest';
import { BatchBuilder, CHUNK_BYTES, EncodedBatch, pooledChunks, pooledSealBytes } from '../sinks/encoded-batch.js';

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

  it('gathers entries across 64 KiB chunks exactly: entries straddling chunk ends, text near a chunk end, one entry of many chunks', () => {
    const b = new BatchBuilder();
    const texts: string[] = [];
    for (let i = 0; i < 3000; i++) texts.push(`entry ${i} ${'é'.repeat(i % 50)} ${'z'.repeat(i % 97)}\n`);
    texts.push('w'.repeat(3 * CHUNK_BYTES + 17));
    texts.push('after the big one');
    for (const [i, t] of texts.entries()) {
      if (i % 3 === 0) b.add(Buffer.from(t));
      else if (i % 3 === 1) b.add(t);
      else {
        b.ascii(`${i}:`);
        b.text(t.slice(String(i).length + 1));
        b.endEntry();
      }
    }
    const expected = texts.map((t, i) => (i % 3 === 2 ? `${i}:${t.slice(String(i).length + 1)}` : t));
    expect(b.byteLength).toBe(Buffer.byteLength(expected.join('')));
    const batch = b.seal();
    expect(batch.texts()).toEqual(expected);
    expect(batch.bytes.toString()).toBe(expected.join(''));
  });

  it('gives each entry of the open batch back exactly before it is sealed, also entries straddling chunk ends', () => {
    const b = new BatchBuilder();
    const texts: string[] = [];
    for (let i = 0; i < 2000; i++) texts.push(`entry ${i} ${'é'.repeat(i % 40)} ${'z'.repeat(i % 89)}\n`);
    texts.push('w'.repeat(2 * CHUNK_BYTES + 5), '', 'last');
    for (const t of texts) b.add(t);
    expect(texts.map((_, i) => b.entry(i).toString())).toEqual(texts);
    expect(b.seal().texts()).toEqual(texts); // reading entries changed nothing
  });

  it('gives its chunks back to the pool when sealed, and keeps at most one while idle', () => {
    const b = new BatchBuilder();
    b.add('x'.repeat(5 * CHUNK_BYTES + 10)); // six chunks
    const before = pooledChunks();
    b.seal();
    expect(pooledChunks()).toBe(before + 5); // the sixth, current chunk stays with the builder
    b.add('reuses pooled chunks');
    expect(pooledChunks()).toBe(before + 5);
    b.seal();
    b.release();
    expect(pooledChunks()).toBe(before + 6);
  });

  it('removeLast rewinds across chunk boundaries', () => {
    const b = new BatchBuilder();
    b.add('a'.repeat(CHUNK_BYTES - 3));
    b.add('b'.repeat(2 * CHUNK_BYTES));
    b.removeLast();
    expect(b.byteLength).toBe(CHUNK_BYTES - 3);
    b.add('tail');
    expect(b.seal().texts()).toEqual(['a'.repeat(CHUNK_BYTES - 3), 'tail']);
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

  it('seal(true) puts the bytes in a pooled buffer that release() gives to the next seal(true); seal() never pools', () => {
    const b = new BatchBuilder();
    const pooledBefore = pooledSealBytes();
    b.add('first batch');
    const first = b.seal(true);
    expect(first.texts()).toEqual(['first batch']);
    first.release();
    expect(pooledSealBytes()).toBe(pooledBefore + CHUNK_BYTES); // capacity: one chunk, the smallest
    first.release(); // a second release gives nothing back twice
    expect(pooledSealBytes()).toBe(pooledBefore + CHUNK_BYTES);
    b.add('second');
    const second = b.seal(true);
    expect(second.bytes.buffer).toBe(first.bytes.buffer); // the same memory, reused
    expect(second.texts()).toEqual(['second']);
    expect(pooledSealBytes()).toBe(pooledBefore);
    b.add('unpooled');
    const plain = b.seal();
    plain.release(); // nothing to give back
    expect(pooledSealBytes()).toBe(pooledBefore);
    second.release();
    b.release();
  });

  it('keeps at most 4 MiB of released buffers, in power-of-two capacities', () => {
    const b = new BatchBuilder();
    const batches = [];
    for (let i = 0; i < 6; i++) {
      b.add('y'.repeat(CHUNK_BYTES * 8 + 1 + i)); // just over 512 KiB: a 1 MiB buffer each
      batches.push(b.seal(true));
    }
    expect(batches.map((x) => x.bytes.buffer.byteLength)).toEqual(Array(6).fill(CHUNK_BYTES * 16));
    const before = pooledSealBytes();
    for (const x of batches) x.release();
    expect(pooledSealBytes()).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(pooledSealBytes()).toBeGreaterThan(before);
    b.release();
  });
});
