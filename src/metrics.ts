/**
 * shiplog's Prometheus metrics. Almost everything is read at scrape time from counters the core
 * keeps anyway (LogStream.stats, SinkRunner.stats, the store's size) through prom-client `collect()`
 * callbacks, so the per-line path pays nothing; totals of ended streams and closed sink instances are
 * kept by the Driver and the TrackedSinkPool, so counters never go back when a container stops.
 * Per-container series exist only for containers with a live stream (bounded by what runs).
 * Plugin API calls are counted by fastify hooks added to the plugin server.
 */
import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { Driver } from './driver.js';
import type { LogStreamStats } from './log-stream.js';
import type { SinkInstanceHealth, SinkTotals, TrackedSinkPool } from './sink-health.js';
import type { LogStore } from './store/store.js';

export interface MetricsSources {
  readonly driver: Driver;
  readonly sinks: TrackedSinkPool;
  readonly store: LogStore;
  readonly storeBudgetBytes: number;
}

export interface HealthReport {
  /** ok: every sink instance is ok; degraded: at least one is retrying. */
  readonly status: 'ok' | 'degraded';
  readonly streams: number;
  readonly storeBytes: number;
  readonly sinks: readonly SinkInstanceHealth[];
}

/** Reasons a FIFO frame is skipped, as LogStream counts them → the `reason` label. */
const SKIP_REASONS = {
  corrupt: 'corrupt',
  oversize: 'oversize',
  badSource: 'bad_source',
  truncatedAtEof: 'truncated_at_eof',
} as const satisfies Partial<Record<keyof LogStreamStats['skipped'], string>>;

/** Plugin API calls get their own label value; anything else is `other`, so the label stays bounded. */
const CALLS = new Set(['/Plugin.Activate', '/LogDriver.Capabilities', '/LogDriver.StartLogging', '/LogDriver.StopLogging', '/LogDriver.ReadLogs']);

export class ShiplogMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'call'>;
  private readonly readLogsOpen: Gauge;

  constructor(private readonly src: MetricsSources, opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    const streams = (): LogStreamStats[] => [src.driver.endedStreamStats, ...[...src.driver.liveStreamStats()].map((s) => s.stats)];
    const sum = (pick: (s: LogStreamStats) => number): number => streams().reduce((n, s) => n + pick(s), 0);

    new Counter({
      name: 'shiplog_fifo_read_bytes_total', help: "Bytes read from dockerd's logging FIFOs", registers,
      collect() { this.reset(); this.inc(sum((s) => s.bytes)); },
    });
    new Counter({
      name: 'shiplog_fifo_entries_total', help: 'Log entries (dockerd messages, before partial lines are joined) decoded from the FIFOs', registers,
      collect() { this.reset(); this.inc(sum((s) => s.entries)); },
    });
    new Counter({
      name: 'shiplog_lines_total', help: 'Lines handed to the sinks, after joining partial entries', registers,
      collect() { this.reset(); this.inc(sum((s) => s.records)); },
    });
    new Counter({
      name: 'shiplog_fifo_frames_skipped_total', help: 'FIFO frames skipped, by reason (corrupt, oversize, bad_source, truncated_at_eof)', labelNames: ['reason'] as const, registers,
      collect() {
        this.reset();
        for (const [key, reason] of Object.entries(SKIP_REASONS) as [keyof typeof SKIP_REASONS, string][]) this.inc({ reason }, sum((s) => s.skipped[key]));
      },
    });
    new Counter({
      name: 'shiplog_fifo_resync_skipped_bytes_total', help: 'Bytes skipped to find the next frame after re-attaching to a FIFO following a crash', registers,
      collect() { this.reset(); this.inc(sum((s) => s.skipped.resyncBytes)); },
    });
    new Counter({
      name: 'shiplog_fifo_pipe_resize_refused_total', help: "FIFOs that kept the kernel's 64 KiB buffer because it refused the PIPE_SIZE resize (the reason is in shiplog's log)", registers,
      collect() { this.reset(); this.inc(src.driver.pipeResizeRefusals); },
    });
    new Gauge({
      name: 'shiplog_streams', help: 'FIFO streams being read (one per running container, briefly two around a restart)', registers,
      collect() { this.set(src.driver.liveStreams); },
    });
    new Counter({
      name: 'shiplog_container_read_bytes_total', help: 'Bytes read per container with a live stream (series end when the container stops logging)',
      labelNames: ['container_id', 'container_name'] as const, registers,
      collect() {
        this.reset();
        for (const s of src.driver.liveStreamStats()) this.inc({ container_id: s.container.id.slice(0, 12), container_name: s.container.name }, s.stats.bytes);
      },
    });
    new Counter({
      name: 'shiplog_container_lines_total', help: 'Lines per container with a live stream (series end when the container stops logging)',
      labelNames: ['container_id', 'container_name'] as const, registers,
      collect() {
        this.reset();
        for (const s of src.driver.liveStreamStats()) this.inc({ container_id: s.container.id.slice(0, 12), container_name: s.container.name }, s.stats.records);
      },
    });

    const sinkCounter = (name: string, help: string, pick: (t: SinkTotals) => number): void => {
      new Counter({
        name, help, labelNames: ['sink'] as const, registers,
        collect() {
          this.reset();
          for (const [sink, t] of src.sinks.totals()) this.inc({ sink }, pick(t));
        },
      });
    };
    sinkCounter('shiplog_sink_records_received_total', 'Records handed to a sink (every line once per sink it goes to)', (t) => t.received);
    sinkCounter('shiplog_sink_records_delivered_total', 'Records the sink backend accepted', (t) => t.delivered);
    sinkCounter('shiplog_sink_records_retried_total', 'Record deliveries retried after a retryable failure (one record retried twice counts 2)', (t) => t.retried);
    sinkCounter('shiplog_sink_records_dead_lettered_total', 'Records written to the dead-letter file (refused for good, or retries exhausted)', (t) => t.deadLettered);
    sinkCounter('shiplog_sink_records_spooled_total', 'Records written to the disk spool (past the memory bound, or still undelivered at a stop)', (t) => t.spooled);
    new Counter({
      name: 'shiplog_sink_records_dropped_total', help: 'Records dropped, by sink and reason (spool-full, disk-full, spool-corrupt, spool-error; without a spool: queue-full, shutdown)',
      labelNames: ['sink', 'reason'] as const, registers,
      collect() {
        this.reset();
        for (const [sink, t] of src.sinks.totals()) for (const [reason, n] of Object.entries(t.dropped)) this.inc({ sink, reason }, n);
      },
    });
    const perInstance = (name: string, help: string, pick: (h: SinkInstanceHealth) => number): void => {
      new Gauge({
        name, help, labelNames: ['sink'] as const, registers,
        collect() {
          this.reset();
          for (const h of src.sinks.instances()) this.inc({ sink: h.sink }, pick(h));
        },
      });
    };
    perInstance('shiplog_sink_queued_bytes', 'Bytes of records waiting in memory for a sink, summed over its instances', (h) => h.backlogBytes);
    perInstance('shiplog_sink_spool_bytes', 'Bytes of the disk spools of a sink, summed over its instances', (h) => h.spoolBytes);
    perInstance('shiplog_sink_in_flight_batches', 'Batches being written or waiting to retry', (h) => h.inFlightBatches);
    new Gauge({
      name: 'shiplog_sink_instances', help: 'Open sink instances by state (ok, retrying: the last write failed and records wait)',
      labelNames: ['sink', 'state'] as const, registers,
      collect() {
        this.reset();
        for (const h of src.sinks.instances()) this.inc({ sink: h.sink, state: h.state });
      },
    });

    new Gauge({
      name: 'shiplog_store_bytes', help: 'Bytes on disk in the local store (docker logs)', registers,
      collect() { this.set(src.store.totalBytes); },
    });
    new Gauge({
      name: 'shiplog_store_budget_bytes', help: 'The local store budget (STORE_BUDGET)', registers,
      collect() { this.set(src.storeBudgetBytes); },
    });
    new Gauge({
      name: 'shiplog_store_segments_to_compress', help: 'Rotated local-store files waiting to be gzipped (they wait until their container pauses logging for 1 s, 30 s at most) or being gzipped', registers,
      collect() { this.set(src.store.segmentsToCompress); },
    });
    new Counter({
      name: 'shiplog_store_failed_write_bytes_total', help: 'Bytes of entries the local store could not write (disk full, I/O error), by error code', labelNames: ['code'], registers,
      collect() {
        this.reset();
        for (const [code, bytes] of Object.entries(src.store.failedAppendBytes)) this.inc({ code }, bytes);
      },
    });

    this.requests = new Counter({ name: 'shiplog_plugin_requests_total', help: 'Plugin API calls from dockerd, by call', labelNames: ['call'] as const, registers });
    for (const call of CALLS) this.requests.inc({ call: call.slice(1) }, 0);
    this.readLogsOpen = new Gauge({ name: 'shiplog_readlogs_streams', help: 'ReadLogs answers (docker logs) being streamed, follows included', registers });

    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Counts the plugin calls dockerd makes and the ReadLogs answers in progress. Call before the server is ready. */
  instrument(app: FastifyInstance): void {
    app.addHook('onRequest', (req, reply, done) => {
      const url = req.url.split('?')[0] ?? '';
      const call = CALLS.has(url) ? url.slice(1) : 'other';
      this.requests.inc({ call });
      if (call === 'LogDriver.ReadLogs') {
        this.readLogsOpen.inc();
        reply.raw.once('close', () => this.readLogsOpen.dec());
      }
      done();
    });
  }

  health(): HealthReport {
    const sinks = this.src.sinks.instances();
    return {
      status: sinks.every((s) => s.state === 'ok') ? 'ok' : 'degraded',
      streams: this.src.driver.liveStreams,
      storeBytes: this.src.store.totalBytes,
      sinks,
    };
  }
}
