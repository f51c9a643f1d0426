/**
 * The null plugin: the floor for any Docker logging plugin written in Node. It answers the plugin API
 * minimally (Capabilities ReadLogs false) and reads each FIFO the way shiplog does (an O_NONBLOCK fd in
 * a net.Socket, 'data' events), discarding the bytes. Whatever shiplog costs on top of this is
 * shiplog's own work. `POST /Bench.Stats` returns its counters so the benchmark knows when every
 * stream reached EOF. No dependencies (node:http), but with PIPE_SIZE=<bytes> it raises each FIFO's
 * kernel buffer with shiplog's own setPipeSize (dist/src/pipe-size.js: F_SETPIPE_SZ through koffi).
 *
 *   SOCKET=/run/docker/plugins/nullplugin-bench.sock node bench/null-plugin.mjs
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

const socketPath = process.env.SOCKET ?? '/run/docker/plugins/nullplugin-bench.sock';
const stats = { started: 0, ended: 0, bytes: 0, chunks: 0 };
const open = new Map();

const pipeBytes = Number(process.env.PIPE_SIZE ?? 0);
/** Raises a FIFO's buffer to PIPE_SIZE, when it asks for it; a refusal fails the run rather than measure the default. */
const enlargePipe = pipeBytes > 0 ? await (async () => {
  const { setPipeSize } = await import('../dist/src/pipe-size.js');
  return (fd) => {
    const result = setPipeSize(fd, pipeBytes);
    if ('error' in result) throw new Error(`F_SETPIPE_SZ ${pipeBytes}: ${result.error}`);
  };
})() : undefined;

/** FIFO paths, one a line, so the benchmark can drain them if this process dies mid-run. */
const fifoLog = process.env.BENCH_FIFO_LOG;

function startLogging(file) {
  if (fifoLog !== undefined) fs.appendFileSync(fifoLog, `${file}\n`);
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  enlargePipe?.(fd);
  const socket = new net.Socket({ fd, readable: true, writable: false, allowHalfOpen: true });
  stats.started++;
  open.set(file, socket);
  socket.on('data', (chunk) => { stats.bytes += chunk.length; stats.chunks++; });
  const done = () => {
    if (!open.has(file)) return;
    open.delete(file);
    stats.ended++;
    socket.destroy();
  };
  socket.on('end', done);
  socket.on('error', done);
}

const server = http.createServer((req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (s) => { body += s; });
  req.on('end', () => {
    let answer = { Err: '' };
    try {
      const parsed = body.trim() === '' ? {} : JSON.parse(body);
      switch (req.url) {
        case '/Plugin.Activate': answer = { Implements: ['LogDriver'] }; break;
        case '/LogDriver.Capabilities': answer = { Cap: { ReadLogs: false } }; break;
        case '/LogDriver.StartLogging': startLogging(parsed.File); break;
        case '/LogDriver.StopLogging': break; // keep reading until dockerd closes its end
        case '/Bench.Stats': answer = { ...stats, open: open.size }; break;
        default: res.statusCode = 404; answer = { Err: `not implemented: ${req.url}` };
      }
    } catch (err) {
      answer = { Err: String(err?.message ?? err) };
    }
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(answer));
  });
});

fs.rmSync(socketPath, { force: true });
server.listen(socketPath, () => {
  process.stdout.write(`nullplugin listening on ${socketPath}\n`);
});
const stop = () => {
  for (const s of open.values()) s.destroy();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
