import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');

/**
 * shiplog as a process (dist/src/main.js, as `npm start` runs it): a plugin call dockerd left open
 * — here a request whose body never finishes — must not hold a SIGTERM shutdown. Before, the server's
 * close waited for it (Node's request timeout, minutes), which is how an e2e run's driver once
 * outlived its test's 180 s hook.
 */
it('a plugin call left half-sent does not hold shutdown: its connection is cut and shiplog exits 0', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shiplog-shutdown-'));
  const socket = path.join(dir, 'shiplog.sock');
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/src/main.js')], {
    env: { ...process.env, SOCKET: socket, STATE_DIR: path.join(dir, 'state'), SHUTDOWN_TIMEOUT: '1s', NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const listening = new Promise<void>((resolve, reject) => {
    const onData = (b: Buffer): void => {
      output += b.toString();
      if (output.includes('shiplog listening')) resolve();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`shiplog exited ${code} before listening: ${output}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await listening;
    const call = net.connect(socket);
    await new Promise<void>((resolve) => call.once('connect', resolve));
    const closed = new Promise<void>((resolve) => call.once('close', () => resolve()));
    call.on('error', () => undefined);
    call.write('POST /LogDriver.StopLogging HTTP/1.1\r\nHost: plugin\r\nContent-Length: 100\r\n\r\n{"File":');
    // The server has the request's head once a second call on another connection is answered.
    const probe = await fetchOverSocket(socket, '/LogDriver.Capabilities');
    expect(probe).toContain('"ReadLogs":true');
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await closed;
    expect(output).toContain('shut down cleanly');
    expect(output).not.toContain('shutdown did not finish in time');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** One POST over the unix socket; resolves with the answer's body. */
function fetchOverSocket(socket: string, url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, path: url, method: 'POST' }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => { body += c; }).on('end', () => resolve(body));
    });
    req.on('error', reject).end();
  });
}
