/**
 * Prototype for src/store/readlogs-frame.ts readLogsFrame (a proposed fix for the docker logs full
 * read, see BENCHMARKS.md): the ReadLogs frame written straight into one buffer, with one copy of the
 * line, instead of copying the line to add its newline, encoding with protobufjs' Writer and copying
 * again into the frame. Byte-identical to the current frames for stdout/stderr (verify.mjs).
 * Measured with decode-entry.mjs in a patched copy of dist/: shiplog CPU for a full read -26 %.
 */
const NEWLINE = 0x0a;
const endsLine = (entry) => !entry.partial || entry.partialLast;
function varintLen(v) { let n = 1; while (v >= 128) { v = Math.floor(v / 128); n++; } return n; }
function putVarint32(b, at, v) { while (v >= 128) { b[at++] = (v & 127) | 128; v >>>= 7; } b[at++] = v; return at; }
/** time_nano as a 64-bit varint from its two 32-bit halves (two's complement; never negative in practice). */
function timeVarint(lo, hi, b, at) {
    lo >>>= 0; hi >>>= 0;
    while (hi !== 0 || lo >= 128) {
        b[at++] = (lo & 127) | 128;
        lo = ((lo >>> 7) | (hi << 25)) >>> 0;
        hi >>>= 7;
    }
    b[at++] = lo;
    return at;
}
const SRC = { stdout: Buffer.from([0x0a, 6, 0x73, 0x74, 0x64, 0x6f, 0x75, 0x74]), stderr: Buffer.from([0x0a, 6, 0x73, 0x74, 0x64, 0x65, 0x72, 0x72]) };
/** One allocation, one copy of the line: [len][source][time_nano][line (+\n)]. */
export function readLogsFrameDirect(entry) {
    const src = SRC[entry.source];
    const line = entry.line;
    const nl = endsLine(entry) ? 1 : 0;
    const lineLen = line.length + nl;
    const max = 4 + src.length + 11 + (lineLen > 0 ? 1 + varintLen(lineLen) + lineLen : 0);
    const b = Buffer.allocUnsafe(max);
    let at = 4;
    src.copy(b, at); at += src.length;
    const t = entry.timeNano;
    if ((t.low | 0) !== 0 || (t.high | 0) !== 0) { b[at++] = 0x10; at = timeVarint(t.low, t.high, b, at); }
    if (lineLen > 0) {
        b[at++] = 0x1a; at = putVarint32(b, at, lineLen);
        b.set(line, at); at += line.length;
        if (nl) b[at++] = NEWLINE;
    }
    b.writeUInt32BE(at - 4, 0);
    return b.subarray(0, at);
}
