/**
 * One append-only file with Docker `local`-style rotation (protocol.md §6): `<path>` is current,
 * `<path>.1` the newest rotated file, `<path>.<maxFiles-1>` the oldest. Not safe for concurrent use:
 * the file sink serializes calls.
 */
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const writeAsync = (fd: number, bytes: Uint8Array, offset: number, length: number): Promise<number> =>
  new Promise((resolve, reject) => fs.write(fd, bytes, offset, length, null, (err, written) => (err === null ? resolve(written) : reject(err))));
const fdatasyncAsync = promisify(fs.fdatasync);

export interface RotationPolicy {
  /** Files kept, the current one included (≥ 1). 1 = the current file is recreated empty. */
  readonly maxFiles: number;
  /** Permission bits of files this creates (exact: applied with chmod, so the umask does not narrow them). */
  readonly mode: number;
  /** datasync after every append, so an accepted batch survives a power loss. */
  readonly fsync: boolean;
}

/**
 * File operations are synchronous, as the store's are: page-cache writes, opens and renames take
 * microseconds, while a trip through libuv's four-thread pool waits behind every spool's background
 * fdatasync (with 20 containers at full speed, the first open of a file waited long enough for its
 * batches to fill the memory all sink instances share). Only with `fsync` do the write and the flush
 * go through the thread pool, since a flush takes a disk's time.
 */
export class RotatingFile {
  private fd: number | undefined;
  private size = 0;

  /**
   * `onTornTail`: called with the bytes cut when an existing file ends inside a line. A process
   * killed while the kernel copied a batch into the file (SIGKILL stops a large write() part-way)
   * leaves half a line; that batch was not acknowledged, so it is written again whole after the
   * restart, and the half line is cut first rather than glued to the next line.
   */
  constructor(readonly path: string, private readonly policy: RotationPolicy, private readonly onTornTail?: (bytes: number) => void) {}

  /** Bytes in the current file (opening, and creating it and its directory, if needed). */
  async currentSize(): Promise<number> {
    this.ensureOpen();
    return this.size;
  }

  /**
   * Appends all of `bytes`. On failure the file is cut back to where this append began, so it never
   * ends in a torn line and a retry does not duplicate what was half written.
   */
  async append(bytes: Uint8Array): Promise<void> {
    if (bytes.length === 0) return;
    const fd = this.ensureOpen();
    const start = this.size;
    try {
      let done = 0;
      if (this.policy.fsync) {
        while (done < bytes.length) done += await writeAsync(fd, bytes, done, bytes.length - done);
        await fdatasyncAsync(fd);
      } else {
        while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done);
      }
      this.size += bytes.length;
    } catch (err) {
      try {
        fs.ftruncateSync(fd, start);
      } catch { /* reopened below: the size is read from the file */ }
      // Reopen next time, so the size is read from the file rather than trusted.
      this.closeFd();
      throw err;
    }
  }

  /**
   * Shifts `.N-1` → `.N` (dropping the oldest), renames the current file to `.1`; with maxFiles 1
   * unlinks it. The next append creates a fresh file. If a step fails, the current file stays in
   * place and the next write tries the rotation again.
   */
  async rotate(): Promise<void> {
    this.closeFd();
    const { maxFiles } = this.policy;
    if (maxFiles < 2) {
      ignoreMissing(() => fs.unlinkSync(this.path));
      return;
    }
    ignoreMissing(() => fs.unlinkSync(`${this.path}.${maxFiles - 1}`));
    for (let i = maxFiles - 1; i > 1; i--) ignoreMissing(() => fs.renameSync(`${this.path}.${i - 1}`, `${this.path}.${i}`));
    ignoreMissing(() => fs.renameSync(this.path, `${this.path}.1`));
  }

  /** Flushes to disk and closes the file. */
  async close(): Promise<void> {
    const fd = this.fd;
    if (fd === undefined) return;
    this.fd = undefined;
    try {
      await fdatasyncAsync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  private ensureOpen(): number {
    if (this.fd !== undefined) return this.fd;
    // Directories get the file mode plus x wherever it has r (0640 → 0750).
    fs.mkdirSync(path.dirname(this.path), { recursive: true, mode: this.policy.mode | ((this.policy.mode & 0o444) >> 2) });
    let fd: number;
    try {
      fd = fs.openSync(this.path, 'ax', this.policy.mode);
      try {
        fs.fchmodSync(fd, this.policy.mode);
      } catch (err) {
        fs.closeSync(fd);
        throw err;
      }
      this.size = 0;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      fd = fs.openSync(this.path, 'a+');
      try {
        const size = fs.fstatSync(fd).size;
        const whole = endOfLastLine(fd, size);
        if (whole < size) {
          fs.ftruncateSync(fd, whole);
          this.onTornTail?.(size - whole);
        }
        this.size = whole;
      } catch (statErr) {
        fs.closeSync(fd);
        throw statErr;
      }
    }
    this.fd = fd;
    return fd;
  }

  private closeFd(): void {
    const fd = this.fd;
    this.fd = undefined;
    if (fd !== undefined) fs.closeSync(fd);
  }
}

const NEWLINE = 0x0a;
const TAIL_SCAN_BYTES = 64 * 1024;

/** Offset just past the file's last newline (0 if it has none): where its whole lines end. */
function endOfLastLine(fd: number, size: number): number {
  const block = Buffer.allocUnsafe(Math.min(TAIL_SCAN_BYTES, size));
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - block.length);
    const bytesRead = fs.readSync(fd, block, 0, end - start, start);
    const at = block.subarray(0, bytesRead).lastIndexOf(NEWLINE);
    if (at !== -1) return start + at + 1;
    end = start;
  }
  return 0;
}

function ignoreMissing(operation: () => void): void {
  try {
    operation();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
