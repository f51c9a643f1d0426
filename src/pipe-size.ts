/**
 * The kernel buffer of a FIFO (F_SETPIPE_SZ, F_GETPIPE_SZ). A dockerd FIFO holds 64 KiB; while its
 * reader is busy (a collection, a file rotation, a long line's store write) dockerd can write only
 * that much before it parks the container's copier, and each event-loop turn takes in at most what
 * arrived since the last. With a larger buffer dockerd goes on writing meanwhile, and shiplog takes
 * in more per turn, paying its per-turn costs (the journal's header, sealing sink batches) less often
 * (BENCHMARKS.md: 40 KiB lines 0.58 → 0.72× the null plugin's lines/s).
 *
 * Node has no fcntl binding; koffi, a maintained FFI with prebuilt binaries for Linux on x64, arm64,
 * arm and riscv64, calls libc's. It is loaded at the first call (3 MiB resident); where it cannot
 * load, every call answers with the reason and FIFOs keep the kernel's default.
 */
import { createRequire } from 'node:module';
import { constants } from 'node:os';

/** Linux's fcntl commands (the same on every architecture). */
const F_SETPIPE_SZ = 1031;
const F_GETPIPE_SZ = 1032;

/** The buffer's size after the call, or why the kernel (or the loading of koffi) refused. */
export type PipeSizeResult = { readonly bytes: number } | { readonly error: string };

interface Libc {
  fcntl(fd: number, cmd: number, arg: number): number;
  errno(): number;
}

/** What the calling process can do about each refusal, in the words of the knobs involved. */
const REASONS: Readonly<Record<string, string>> = {
  EPERM: 'EPERM: above fs.pipe-max-size without CAP_SYS_RESOURCE, or the pipes of the user that created the FIFO (dockerd\'s) passed fs.pipe-user-pages-soft',
  EBUSY: 'EBUSY: the pipe holds more bytes than that',
  ENOMEM: 'ENOMEM: more than the kernel allocates for one pipe',
  EINVAL: 'EINVAL: not a size the kernel takes',
  EBADF: 'EBADF: not a pipe',
};

let libc: Libc | string | undefined;

function loadLibc(): Libc | string {
  if (libc !== undefined) return libc;
  try {
    // koffi's typings are its own API's, not the data path's; only numbers cross this boundary.
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    const lib = koffi.load('libc.so.6');
    // fcntl is variadic in C: declared so, koffi passes the third argument as C varargs require.
    const fcntl = lib.func('int fcntl(int fd, int cmd, ...)');
    libc = {
      fcntl: (fd, cmd, arg) => fcntl(fd, cmd, 'int', arg) as number,
      errno: () => koffi.errno(),
    };
  } catch (err) {
    libc = `cannot call fcntl (koffi did not load: ${(err as Error).message})`;
  }
  return libc;
}

function errnoReason(errno: number): string {
  const name = Object.entries(constants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;
  return REASONS[name] ?? name;
}

function call(fd: number, cmd: number, arg: number): PipeSizeResult {
  const lib = loadLibc();
  if (typeof lib === 'string') return { error: lib };
  const result = lib.fcntl(fd, cmd, arg);
  return result < 0 ? { error: errnoReason(lib.errno()) } : { bytes: result };
}

/** Asks for a buffer of at least `bytes` (the kernel rounds up to a power of two pages). */
export function setPipeSize(fd: number, bytes: number): PipeSizeResult {
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes > 0x7fffffff) return { error: `not a pipe size: ${bytes}` };
  return call(fd, F_SETPIPE_SZ, bytes);
}

export function pipeSize(fd: number): PipeSizeResult {
  return call(fd, F_GETPIPE_SZ, 0);
}
