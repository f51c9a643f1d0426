/**
 * The spool through the whole plugin path (FIFO → driver → runner → Elasticsearch sink → fake-es):
 * Elasticsearch down while a container logs, shiplog stopped, started again with Elasticsearch back.
 */
import { describe, expect, it } from 'vitest';
import { CID, driverFixture, entryFrame, info } from './support/driver-fixture.js';
import { startFakeEs } from './support/fake-es.js';

describe('spool through the plugin', () => {
  it('lines logged while Elasticsearch is down reach it once each, in order, after shiplog restarts', async () => {
    const es = await startFakeEs();
    try {
      const outage = es.faults.request({ fault: { kind: 'status', status: 503, reason: 'down for the test' } });
      const env = { SINK_QUEUE_SIZE: '8k' };
      const first = await driverFixture(env);
      const config = { 'sinks': 'elasticsearch', 'es-url': es.url, 'es-flush-interval': '10ms', 'es-backoff-max': '20ms', 'es-batch-docs': '50', 'es-concurrency': '1' };
      const fifo = first.makeFifo();
      expect((await first.post('/LogDriver.StartLogging', { File: fifo.file, Info: info(config) })).json()).toEqual({ Err: '' });
      const n = 1000;
      fifo.write(Buffer.concat(Array.from({ length: n }, (_, i) => entryFrame(`line ${i}`, i))));
      expect((await first.post('/LogDriver.StopLogging', { File: fifo.file })).json()).toEqual({ Err: '' });
      fifo.close();
      await first.driver.whenEnded(fifo.file);
      const [runner] = first.sinks.runners();
      expect(runner?.stats.spooled).toBeGreaterThan(n - 40); // 8 kB of memory holds ~30 of them
      expect(runner?.stats.dropped).toEqual({});
      await first.close(); // SIGTERM: the deadline passes with Elasticsearch still down
      expect(es.docs()).toEqual([]);

      outage.remove();
      const second = await driverFixture(env, first.dir);
      expect(await second.sinks.recoverSpools()).toBe(1);
      await es.waitForDocs(n);
      await second.sinks.runners()[0]?.idle();
      const docs = es.docs();
      expect(docs.map((d) => d._source['message'])).toEqual(Array.from({ length: n }, (_, i) => `line ${i}`));
      expect(new Set(docs.map((d) => d._id)).size).toBe(n);
      expect(docs.every((d) => d._id.startsWith(CID.slice(0, 32)))).toBe(true);
      await second.close();
    } finally {
      await es.close();
    }
  });
});
