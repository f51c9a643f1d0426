/**
 * A Driver + plugin server over fastify.inject, with FIFOs made in a temp dir and written the way
 * dockerd does (it holds an O_RDWR fd; closing it is the EOF the plugin sees after StopLogging).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { frame, encodeEntry } from '../../src/entry.js';
import { Driver } from '../../src/driver.js';
import { StreamJournal } from '../../src/journal.js';
import { buildServer } from '../../src/server.js';
import { readSettings } from '../../src/settings.js';
import { SinkPool } from '../../src/sink-pool.js';
import { LogStore } from '../../src/store/store.js';
import { bigIntToParts } from '../../src/time.js';

/** `reuseDir`: start a second driver over the state and FIFO dirs of an earlier one (a restart). */
export async function driverFixture(env: Record<string, string> = {}, reuseDir?: string) {
  const dir = reuseDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'shiplog-fx-'));
  const fifoDir = path.join(dir, 'logging');
  fs.mkdirSync(fifoDir, { recursive: true });
  const fullEnv = { STATE_DIR: path.join(dir, 'state'), LOG_OPT_FILE_PATH: path.join(dir, 'files', '{{.Name}}.log'), ...env };
  const settings = readSettings(fullEnv);
  const logger = pino({ level: 'silent' });
  const store = new LogStore({ root: path.join(settings['state-dir'], 'containers'), budgetBytes: settings['store-budget'], logger });
  await store.init();
  const sinks = new SinkPool(settings['state-dir'], logger, settings['sink-queue-size'], 1000);
  const journal = new StreamJournal(path.join(settings['state-dir'], 'streams'));
  await journal.init();
  const driver = new Driver({ settings, env: fullEnv, store, sinks, logger, fifoDir, journal });
  const app = buildServer(driver, logger);
  await app.ready();

  const makeFifo = fifoMaker(fifoDir);

  return {
    dir, driver, app, store, sinks, makeFifo,
    post: (url: string, body?: unknown) => app.inject({ method: 'POST', url, payload: body === undefined ? '' : JSON.stringify(body) }),
    close: async () => { await app.close(); await driver.shutdown(); await sinks.closeAll(1000); await store.close(); },
  };
}

/**
 * Makes FIFOs in `fifoDir` and opens them as dockerd does (O_RDWR; close() is the EOF the plugin sees
 * after StopLogging). `write` is synchronous, for writes that fit the pipe; `writeAsync` goes through
 * the threadpool, so a write larger than the pipe cannot block the reader in this same process.
 */
export function fifoMaker(fifoDir: string) {
  let n = fs.readdirSync(fifoDir).length;
  return function makeFifo() {
    n++;
    const file = path.join(fifoDir, `${'f'.repeat(60)}${String(n).padStart(4, '0')}`);
    execFileSync('mkfifo', ['-m', '0700', file]);
    const fd = fs.openSync(file, fs.constants.O_RDWR);
    return {
      file,
      write: (buf: Buffer): void => { fs.writeSync(fd, buf); },
      writeAsync: async (buf: Buffer): Promise<void> => {
        for (let off = 0; off < buf.length;) off += await new Promise<number>((resolve, reject) => fs.write(fd, buf, off, buf.length - off, null, (err, w) => (err ? reject(err) : resolve(w))));
      },
      close: (): void => fs.closeSync(fd),
    };
  };
}

export const CID = 'e882a436c6b317a6ecf0bfdb77cdf7b2c3dc27dc1f80ad9b6159a3769e94cb10';

export function info(config: Record<string, string> = {}) {
  return {
    Config: config, ContainerID: CID, ContainerName: '/demo', ContainerEntrypoint: 'sh', ContainerArgs: ['-c', 'x'],
    ContainerImageID: 'sha256:455044c7b7a3a94b04eba71c25a35d138afdafad3c1d65099e2721ae5d48e1ac', ContainerImageName: 'busybox',
    ContainerCreated: '2026-11-23T16:43:52.342094954Z', ContainerEnv: ['A=1'], ContainerLabels: { team: 'core' }, LogPath: '', DaemonName: 'docker',
  };
}

export function entryFrame(line: string, i: number, source = 'stdout'): Buffer {
  return frame(encodeEntry(source, bigIntToParts(1795452233042059423n + BigInt(i)), Buffer.from(line)));
}

/** Splits a ReadLogs body into decoded (source, line) pairs. */
export { decodeEntry } from '../../src/entry.js';
