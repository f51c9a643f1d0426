/**
 * One append-only file with Docker `local`-style rotation (protocol.md §6): `<path>` is current,
 * `<path>.1` the newest rotated file, `<path>.<maxFiles-1>` the oldest. Not safe for concurrent use:
 * the file sink serializes calls.
 */
import { mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

export interface RotationPolicy {
  /** Files kept, the current one included (≥ 1). 1 = the current file is recreated empty. */
  readonly maxFiles: number;
  /** Permission bits of files this creates (exact: applied with chmod, so the umask does not narrow them). */
  readonly mode: number;
  /** datasync after every append, so an accepted batch survives a power loss. */
  readonly fsync: boolean;
}

export class RotatingFile {
  private handle: FileHandle | undefined;
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
    await this.ensureOpen();
    return this.size;
  }

  /**
   * Appends all of `bytes`. On failure the file is cut back to where this append began, so it never
   * ends in a torn line and a retry does not duplicate what was half written.
   */
  async append(bytes: Uint8Array): Promise<void> {
    if (bytes.length === 0) return;
    const handle = await this.ensureOpen();
    const start = this.size;
    try {
      let done = 0;
      while (done < bytes.length) {
        const { bytesWritten } = await handle.write(bytes, done, bytes.length - done);
        done += bytesWritten;
      }
      if (this.policy.fsync) await handle.datasync();
      this.size += bytes.length;
    } catch (err) {
      await handle.truncate(start).catch(() => undefined);
      // Reopen next time, so the size is read from the file rather than trusted.
      await this.closeHandle().catch(() => undefined);
      throw err;
    }
  }

  /**
   * Shifts `.N-1` → `.N` (dropping the oldest), renames the current file to `.1`; with maxFiles 1
   * unlinks it. The next append creates a fresh file. If a step fails, the current file stays in
   * place and the next write tries the rotation again.
   */
  async rotate(): Promise<void> {
    await this.closeHandle();
    const { maxFiles } = this.policy;
    if (maxFiles < 2) {
      await ignoreMissing(unlink(this.path));
      return;
    }
    await ignoreMissing(unlink(`${this.path}.${maxFiles - 1}`));
    for (let i = maxFiles - 1; i > 1; i--) await ignoreMissing(rename(`${this.path}.${i - 1}`, `${this.path}.${i}`));
    await ignoreMissing(rename(this.path, `${this.path}.1`));
  }

  /** Flushes to disk and closes the file. */
  async close(): Promise<void> {
    const handle = this.handle;
    if (handle === undefined) return;
    this.handle = undefined;
    try {
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }

  private async ensureOpen(): Promise<FileHandle> {
    if (this.handle !== undefined) return this.handle;
    // Directories get the file mode plus x wherever it has r (0640 → 0750).
    await mkdir(path.dirname(this.path), { recursive: true, mode: this.policy.mode | ((this.policy.mode & 0o444) >> 2) });
    let handle: FileHandle;
    try {
      handle = await open(this.path, 'ax', this.policy.mode);
      try {
        await handle.chmod(this.policy.mode);
      } catch (err) {
        await handle.close();
        throw err;
      }
      this.size = 0;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      handle = await open(this.path, 'a+');
      try {
        const size = (await handle.stat()).size;
        const whole = await endOfLastLine(handle, size);
        if (whole < size) {
          await handle.truncate(whole);
          this.onTornTail?.(size - whole);
        }
        this.size = whole;
      } catch (statErr) {
        await handle.close();
        throw statErr;
      }
    }
    this.handle = handle;
    return handle;
  }

  private async closeHandle(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close();
  }
}

const NEWLINE = 0x0a;
const TAIL_SCAN_BYTES = 64 * 1024;

/** Offset just past the file's last newline (0 if it has none): where its whole lines end. */
async function endOfLastLine(handle: FileHandle, size: number): Promise<number> {
  const block = Buffer.allocUnsafe(Math.min(TAIL_SCAN_BYTES, size));
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - block.length);
    const { bytesRead } = await handle.read(block, 0, end - start, start);
    const at = block.subarray(0, bytesRead).lastIndexOf(NEWLINE);
    if (at !== -1) return start + at + 1;
    end = start;
  }
  return 0;
}

async function ignoreMissing(operation: Promise<void>): Promise<void> {
  try {
    await operation;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
