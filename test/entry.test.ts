import { describe, expect, it } from 'vitest';
import { decodeEntry, decodeEntryAt, encodeEntry, frame } from '../src/entry.js';
import { bigIntToParts, partsToBigInt } from '../src/time.js';

describe('LogEntry codec', () => {
  it('decodes the frame captured from dockerd 20.10 (protocol.md §4.2)', () => {
    const captured = Buffer.from('000000190a067374646f7574109fc19d8db1c9aef5181a056c696e6531', 'hex');
    expect(captured.readUInt32BE(0)).toBe(25);
    const e = decodeEntry(captured.subarray(4));
    expect(e.source).toBe('stdout');
    expect(Buffer.from(e.line).toString()).toBe('line1');
    expect(e.partial).toBe(false);
    // time_nano is beyond 2^53: it must come back exact.
    expect(partsToBigInt(e.timeNano)).toBe(1795452233042059423n);
  });

  it('round-trips source, exact time_nano and binary line bytes', () => {
    const t = 1795978978945769631n;
    const line = Buffer.from([0xff, 0x00, 0x41, 0xc3]);
    const bytes = encodeEntry('stderr', bigIntToParts(t), line);
    const e = decodeEntry(bytes);
    expect(e.source).toBe('stderr');
    expect(partsToBigInt(e.timeNano)).toBe(t);
    expect(Buffer.from(e.line).equals(line)).toBe(true);
    expect(frame(bytes).readUInt32BE(0)).toBe(bytes.length);
  });

  it('defaults absent proto3 fields and decodes partial metadata', () => {
    // source "stdout", partial=true, metadata {last:true, id:"ab", ordinal:3}, no line, no time
    const msg = Buffer.from('0a067374646f757420012a0808011202616218' + '03', 'hex');
    const e = decodeEntry(msg);
    expect(e.line.length).toBe(0);
    expect(partsToBigInt(e.timeNano)).toBe(0n);
    expect(e.partial).toBe(true);
    expect(e.partialLast).toBe(true);
    expect(e.partialId).toBe('ab');
    expect(e.partialOrdinal).toBe(3);
  });

  it('skips unknown fields such as attrs (field 6) from newer daemons', () => {
    const base = encodeEntry('stdout', bigIntToParts(5n), Buffer.from('x'));
    const attr = Buffer.from('3206' + '0a016b' + '1201' + '76', 'hex'); // attrs {key:"k", value:"v"}
    const withUnknown = Buffer.concat([base, attr, Buffer.from('3a0178', 'hex')]); // + field 7 bytes "x"
    const e = decodeEntry(withUnknown);
    expect(Buffer.from(e.line).toString()).toBe('x');
  });

  it('throws on malformed protobuf instead of returning garbage', () => {
    expect(() => decodeEntry(Buffer.from('0aff', 'hex'))).toThrow();
  });

  it('decodeEntryAt decodes the message at given offsets of a larger chunk exactly as decodeEntry decodes it alone, and stops at its end', () => {
    const messages = [
      encodeEntry('stdout', bigIntToParts(1795452233042059423n), Buffer.from('first')),
      encodeEntry('stderr', bigIntToParts(1795452233042059424n), Buffer.from([0, 1, 2, 255])),
      encodeEntry('stdout', bigIntToParts(5n), Buffer.alloc(0)),
    ];
    const chunk = Buffer.concat(messages.map((m) => frame(m)));
    let at = 0;
    for (const m of messages) {
      const got = decodeEntryAt(chunk, at + 4, at + 4 + m.length);
      const want = decodeEntry(m);
      expect({ ...got, line: Buffer.from(got.line).toString('hex') }).toEqual({ ...want, line: Buffer.from(want.line).toString('hex') });
      at += 4 + m.length;
    }
    expect(() => decodeEntryAt(Buffer.from('00000000000000020aff', 'hex'), 8, 10)).toThrow();
    // After a failure the next decode starts clean.
    expect(Buffer.from(decodeEntryAt(chunk, 4, 4 + (messages[0] as Uint8Array).length).line).toString()).toBe('first');
  });
});
