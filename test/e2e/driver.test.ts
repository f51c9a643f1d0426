/**
 * The driver end to end on a real dockerd: `docker run --log-driver`, the file sink, and `docker logs`
 * with its flags, served by shiplog's ReadLogs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DRIVER_NAME, type DriverProcess, IMAGE, docker, dockerLogLines, dockerOk, fifoPipeBytes, readFileSink, startDriver, uniqueName, waitFor, waitForFileSink } from './harness.js';

let driver: DriverProcess;
const LD = ['--log-driver', DRIVER_NAME];

beforeAll(async () => {
  driver = await startDriver();
});

afterAll(async () => {
  const code = await driver.stop();
  expect(code).toBe(0);
});

/** Runs a container to completion with shiplog and returns its name. */
async function runToEnd(script: string, extra: string[] = []): Promise<string> {
  const name = uniqueName('c');
  await dockerOk(['run', '--name', name, ...LD, ...extra, IMAGE, 'sh', '-c', script]);
  return name;
}

describe('docker run --log-driver shiplog', () => {
  it('ships stdout and stderr lines to the file sink in order, with container fields', async () => {
    const name = await runToEnd('for i in 1 2 3; do echo out$i; echo err$i >&2; done', ['--label', 'team=core', '--log-opt', 'labels=team', '--log-opt', 'tag={{.Name}}/{{.ID}}']);
    const lines = await waitForFileSink(driver, name, 6);
    const inspect = JSON.parse((await dockerOk(['inspect', name])).stdout)[0] as { Id: string; Image: string };
    expect(lines.filter((l) => l.source === 'stdout').map((l) => l.message)).toEqual(['out1', 'out2', 'out3']);
    expect(lines.filter((l) => l.source === 'stderr').map((l) => l.message)).toEqual(['err1', 'err2', 'err3']);
    for (const l of lines) {
      expect(l.container_id).toBe(inspect.Id);
      expect(l.container_name).toBe(name);
      expect(l.image_name).toBe(IMAGE);
      expect(l.image_id).toBe(inspect.Image);
      expect(l.tag).toBe(`${name}/${inspect.Id.slice(0, 12)}`);
      expect(l.attrs).toEqual({ team: 'core' });
      expect(l.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    }
  });

  it('file-format=json-file writes the lines Docker\'s json-file driver writes for the same output (times aside)', async () => {
    const script = 'printf "plain\\n"; printf "tab\\there \\"q\\" \\303\\251 back\\\\slash\\n"; printf "err\\n" >&2; printf "\\n"; printf "<a&b>\\n"; printf "last\\n"';
    const opts = ['--label', 'team=core', '--log-opt', 'labels=team'];
    const reference = uniqueName('jsonfile');
    await dockerOk(['run', '--name', reference, '--log-driver', 'json-file', ...opts, IMAGE, 'sh', '-c', script]);
    const logPath = (await dockerOk(['inspect', '-f', '{{.LogPath}}', reference])).stdout.trim();
    const expected = fs.readFileSync(logPath, 'utf8').split('\n').filter((l) => l !== '');
    const name = await runToEnd(script, [...opts, '--log-opt', 'file-format=json-file']);
    await waitForFileSink(driver, name, expected.length);
    const got = fs.readFileSync(path.join(driver.filesDir, `${name}.log`), 'utf8').split('\n').filter((l) => l !== '');
    // Same bytes once the time is set aside (stdout and stderr are copied separately: compare as sets).
    const timeless = (l: string) => l.replace(/,"time":"[^"]*"\}$/, '}');
    expect(got.map(timeless).sort()).toEqual(expected.map(timeless).sort());
    expect(expected.map(timeless)).toContain('{"log":"plain\\n","stream":"stdout","attrs":{"team":"core"}}');
    for (const l of got) expect(l).toMatch(/,"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z"\}$/);
  });

  it('serves docker logs byte for byte, stdout and stderr on their own streams', async () => {
    const name = await runToEnd('printf "a\\nb\\n"; printf "e1\\n" >&2; printf "c\\r\\n"; printf "tab\\tend\\n"; printf "noeol"');
    const r = await dockerOk(['logs', name]);
    expect(r.stdout).toBe('a\nb\nc\r\ntab\tend\nnoeol');
    expect(r.stderr).toBe('e1\n');
  });

  it('keeps a 100 KiB line whole: one record in the file sink, intact in docker logs', async () => {
    const name = await runToEnd("head -c 102400 /dev/zero | tr '\\0' x; echo; echo after");
    const lines = await waitForFileSink(driver, name, 2);
    expect(lines).toHaveLength(2);
    expect(lines[0]?.message).toBe('x'.repeat(102400));
    expect(lines[0]?.truncated).toBeUndefined();
    expect(lines[1]?.message).toBe('after');
    const r = await dockerOk(['logs', name]);
    expect(r.stdout).toBe(`${'x'.repeat(102400)}\nafter\n`);
  });

  it('fails docker run with a message naming an unknown log-opt', async () => {
    const r = await docker(['run', '--rm', ...LD, '--log-opt', 'colour=blue', IMAGE, 'true']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('unknown log-opt "colour"');
  });

  it('fails docker run with a message naming a malformed log-opt value', async () => {
    const r = await docker(['run', '--rm', ...LD, '--log-opt', 'max-size=abc', IMAGE, 'true']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('"max-size"');
    expect(r.stderr).toContain('"abc" is not a size');
  });

  it('accepts the log-opts dockerd itself handles (mode, max-buffer-size)', async () => {
    const name = await runToEnd('echo nb', ['--log-opt', 'mode=non-blocking', '--log-opt', 'max-buffer-size=2m']);
    expect((await dockerOk(['logs', name])).stdout).toBe('nb\n');
  });
});

describe('docker logs flags', () => {
  let name: string;
  let stamped: { ts: string; line: string }[];

  beforeAll(async () => {
    name = await runToEnd('for i in $(seq 1 20); do echo line$i; done');
    const r = await dockerOk(['logs', '--timestamps', name]);
    stamped = r.stdout.trimEnd().split('\n').map((l) => {
      const [ts, line] = l.split(' ') as [string, string];
      return { ts, line };
    });
  });

  it('--timestamps prefixes each line with its RFC 3339 nanosecond time', () => {
    expect(stamped.map((s) => s.line)).toEqual(Array.from({ length: 20 }, (_, i) => `line${i + 1}`));
    for (const s of stamped) expect(s.ts).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$/);
  });

  it('--tail N prints the last N lines', async () => {
    expect((await dockerOk(['logs', '--tail', '5', name])).stdout).toBe('line16\nline17\nline18\nline19\nline20\n');
    expect((await dockerOk(['logs', '--tail', '0', name])).stdout).toBe('');
    expect((await dockerOk(['logs', '--tail', '100', name])).stdout.split('\n')).toHaveLength(21);
  });

  it('--since and --until select by time, inclusive', async () => {
    const since = stamped[14]?.ts as string;
    const until = stamped[4]?.ts as string;
    expect((await dockerOk(['logs', '--since', since, name])).stdout).toBe(stamped.slice(14).map((s) => `${s.line}\n`).join(''));
    expect((await dockerOk(['logs', '--until', until, name])).stdout).toBe(stamped.slice(0, 5).map((s) => `${s.line}\n`).join(''));
    expect((await dockerOk(['logs', '--since', since, '--tail', '2', name])).stdout).toBe('line19\nline20\n');
  });

  it('--details prints every line (plugins carry no attributes to show)', async () => {
    const r = await dockerOk(['logs', '--details', '--tail', '2', name]);
    expect(r.stdout.split('\n').filter((l) => l !== '').map((l) => l.trim())).toEqual(['line19', 'line20']);
  });

  it('--follow streams new lines and ends when the container exits', async () => {
    const c = uniqueName('follow');
    await dockerOk(['run', '-d', '--name', c, ...LD, IMAGE, 'sh', '-c', 'echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second; echo third >&2']);
    const { spawn } = await import('node:child_process');
    const { dockerEnv } = await import('./harness.js');
    const follower = spawn('docker', ['logs', '--follow', c], { env: dockerEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    follower.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    follower.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    const exited = new Promise<number | null>((resolve) => follower.on('exit', resolve));
    await waitFor('"first" through docker logs -f', () => (out.includes('first\n') ? true : undefined));
    await dockerOk(['exec', c, 'touch', '/tmp/go']);
    expect(await exited).toBe(0);
    expect(out).toBe('first\nsecond\n');
    expect(err).toBe('third\n');
  });
});

describe("the FIFO's buffer (PIPE_SIZE, 1 MiB by default)", () => {
  it('a container writes 1.6 MB while shiplog is frozen (SIGSTOP) instead of blocking after ~1.2 MB, and every line arrives after', async () => {
    const c = uniqueName('frozen');
    const pad = 'x'.repeat(89);
    await dockerOk(['run', '-d', '--name', c, ...LD, IMAGE, 'sh', '-c',
      `echo ready; while [ ! -e /tmp/go ]; do sleep 0.05; done; seq 0 15999 | awk '{printf "fill-%05d-${pad}\\n", $1}'; touch /tmp/written; while [ ! -e /tmp/end ]; do sleep 0.05; done`]);
    await waitForFileSink(driver, c, 1);
    const id = (await dockerOk(['inspect', '-f', '{{.Id}}', c])).stdout.trim();
    expect(fifoPipeBytes(driver.stateDir, id)).toBe(1 << 20);
    const pid = driver.child.pid as number;
    process.kill(pid, 'SIGSTOP');
    try {
      await dockerOk(['exec', c, 'touch', '/tmp/go']);
      // Before the FIFO, dockerd holds up to 1 MB of the container's output in memory (its BytesPipe)
      // and the pipes from the container ~200 KB. 16,000 lines of 100 bytes (frames of ~125 bytes)
      // fit there and in a 1 MiB FIFO; with a 64 KiB one the container would park after ~12,500
      // until shiplog reads again.
      await waitFor('the container to finish writing while shiplog is stopped', async () => ((await docker(['exec', c, 'test', '-e', '/tmp/written'])).code === 0 ? true : undefined));
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await dockerOk(['exec', c, 'touch', '/tmp/end']);
    await dockerOk(['wait', c]);
    const lines = await waitForFileSink(driver, c, 16001);
    expect(lines.slice(1).map((l) => l.message)).toEqual(Array.from({ length: 16000 }, (_, i) => `fill-${String(i).padStart(5, '0')}-${pad}`));
    expect(await dockerLogLines(c)).toHaveLength(16001);
  });
});

describe('containers that stop and start again', () => {
  it('docker logs works after the container stopped and after docker start, with no loss and no duplicates', async () => {
    // Each run prints its run number, kept in the container's own filesystem across starts.
    const name = await runToEnd('n=$(cat /tmp/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/n; echo run-$n; echo err-$n >&2');
    const first = await dockerOk(['logs', name]);
    expect([first.stdout, first.stderr]).toEqual(['run-1\n', 'err-1\n']);
    // docker logs on a stopped container makes dockerd open a fresh stream first: nothing may change.
    const again = await dockerOk(['logs', name]);
    expect([again.stdout, again.stderr]).toEqual(['run-1\n', 'err-1\n']);
    await dockerOk(['start', '-a', name]);
    const second = await dockerOk(['logs', name]);
    expect([second.stdout, second.stderr]).toEqual(['run-1\nrun-2\n', 'err-1\nerr-2\n']);
    const lines = await waitForFileSink(driver, name, 4);
    expect(lines.map((l) => l.message).sort()).toEqual(['err-1', 'err-2', 'run-1', 'run-2']);
  });
});

describe('many containers at once', () => {
  it('20 containers x 10k lines: every line in the file sink and in docker logs, in order', async () => {
    const names = Array.from({ length: 20 }, () => uniqueName('many'));
    await Promise.all(names.map((n) => dockerOk(['run', '-d', '--name', n, ...LD, IMAGE, 'sh', '-c', `seq 1 10000 | awk '{print "${n} " $1}'`])));
    await Promise.all(names.map((n) => dockerOk(['wait', n])));
    const expected = (n: string) => Array.from({ length: 10000 }, (_, i) => `${n} ${i + 1}`);
    for (const n of names) {
      const lines = await waitForFileSink(driver, n, 10000, 60_000);
      expect(lines.map((l) => l.message)).toEqual(expected(n));
      const logs = await dockerOk(['logs', n]);
      expect(logs.stdout).toBe(expected(n).map((l) => `${l}\n`).join(''));
    }
    expect(readFileSink(driver, names[0] as string)).toHaveLength(10000);
  });
});
