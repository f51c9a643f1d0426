/**
 * shiplog's entry point: read settings, open the local store, listen on the plugin socket, and shut
 * down gracefully on SIGTERM/SIGINT (stop taking calls, stop reading FIFOs — unread bytes stay in the
 * pipes — hand what was read to store and sinks, let sinks deliver within shutdown-timeout, exit 0).
 */
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { Driver } from './driver.js';
import { StreamJournal } from './journal.js';
import { ShiplogMetrics } from './metrics.js';
import { type MetricsServer, startMetricsServer } from './metrics-server.js';
import { buildServer } from './server.js';
import { readSettings } from './settings.js';
import { TrackedSinkPool } from './sink-health.js';
import { LogStore } from './store/store.js';
import { applyV8Flags } from './v8-flags.js';

/** How long past shutdown-timeout a shutdown may take before the process exits anyway (exit code 1). */
const SHUTDOWN_GRACE_MS = 5_000;
/** At shutdown, how long plugin API calls still open once everything else is closed may go on before their connections are cut. */
const API_CALLS_GRACE_MS = 1_000;

async function main(): Promise<void> {
  const settings = readSettings(process.env);
  const v8Flags = applyV8Flags(settings);
  // stdout, not stderr: dockerd logs a managed plugin's stderr at error level.
  const logger = pino({ level: settings['log-level'], base: { name: 'shiplog' } });

  const stateDir = settings['state-dir'];
  await fs.promises.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const store = new LogStore({ root: path.join(stateDir, 'containers'), budgetBytes: settings['store-budget'], logger: logger.child({ part: 'store' }) });
  await store.init();
  const sinks = new TrackedSinkPool(stateDir, logger, settings['sink-queue-size'], settings['shutdown-timeout'], { spoolMaxBytes: settings['spool-max-size'], spoolWriteThrough: settings['spool-write-through'] });
  // Sink instances that left records in their spool come back and deliver them, before any stream can ask for them.
  const recoveredSpools = await sinks.recoverSpools();
  const journal = new StreamJournal(path.join(stateDir, 'streams'));
  await journal.init();
  const driver = new Driver({ settings, env: process.env, store, sinks, logger, journal });
  const app = buildServer(driver, logger);
  const metricsAddress = settings['metrics-address'];
  const metrics = metricsAddress !== undefined ? new ShiplogMetrics({ driver, sinks, store, storeBudgetBytes: settings['store-budget'] }) : undefined;
  metrics?.instrument(app);

  const socket = settings.socket;
  await fs.promises.mkdir(path.dirname(socket), { recursive: true });
  await fs.promises.rm(socket, { force: true }); // a stale socket file makes listen fail with EADDRINUSE
  await app.listen({ path: socket });
  await fs.promises.chmod(socket, 0o600);
  // Re-attach before announcing: dockerd kept writing into the journalled FIFOs while shiplog was away.
  const reattached = await driver.reattach();
  logger.info({ socket, stateDir, reattached, recoveredSpools, v8Flags }, 'shiplog listening');
  // A metrics address that cannot be bound must not stop the logging: say so and go on without it.
  let metricsServer: MetricsServer | undefined;
  if (metrics !== undefined && metricsAddress !== undefined) {
    metricsServer = await startMetricsServer(metricsAddress, metrics, logger).catch((err: unknown) => {
      logger.error({ err, address: process.env.METRICS_ADDRESS }, 'cannot serve metrics; going on without them');
      return undefined;
    });
  }

  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // Every step is bounded (sinks by shutdown-timeout) or should be; if one still hangs, say which
    // and exit rather than leave dockerd waiting on a plugin that never stops.
    let step = 'closing the metrics server';
    const watchdog = setTimeout(() => {
      logger.error({ step }, 'shutdown did not finish in time; exiting anyway (sinks kept what they held in their spools)');
      logger.flush();
      process.exit(1);
    }, settings['shutdown-timeout'] + SHUTDOWN_GRACE_MS);
    const closing = app.close();
    await metricsServer?.close();
    step = 'ending the FIFO streams';
    await driver.shutdown();
    step = 'closing the sinks';
    await sinks.closeAll(settings['shutdown-timeout']);
    step = 'closing the store';
    await store.close();
    // By now the streams, sinks and store are done; a call still open (a request dockerd had not
    // finished sending, a response it stopped reading) would hold the server's close until Node's
    // request timeout, minutes away.
    step = 'waiting for plugin API calls in flight';
    const cutCalls = setTimeout(() => app.server.closeAllConnections(), API_CALLS_GRACE_MS);
    await closing;
    clearTimeout(cutCalls);
    clearTimeout(watchdog);
    logger.info('shut down cleanly');
    logger.flush();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  // Before the logger exists (bad settings) or when start-up fails: say why and exit non-zero.
  process.stdout.write(`${JSON.stringify({ level: 60, msg: 'shiplog failed to start', err: err instanceof Error ? err.message : String(err) })}\n`);
  process.exit(1);
});
