/**
 * Plugin-wide settings, read once from the environment (config.json `env`, changed with
 * `docker plugin set`; or the shell for a plain process). Per-container log-opt defaults are also
 * taken from the environment (log-opt `max-size` ← `LOG_OPT_MAX_SIZE`, see option-table.ts); this table is
 * only what is not per container. Precedence: built-in default < environment < per-container log-opt.
 */
import { parseListenAddress } from './metrics-server.js';
import { opt, parseTable, plainEnvName, type ParsedOptions } from './option-table.js';

export const settingsTable = {
  'log-level': opt.oneOf('info', "shiplog's own log level (its logs go to stdout, which dockerd relays into its log)", ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
  'socket': opt.string('/run/docker/plugins/shiplog.sock', 'Unix socket dockerd dials. The file name is the driver name for a plain process (shiplog.sock → --log-driver shiplog)'),
  'state-dir': opt.string('/var/lib/shiplog', 'Where the local store (docker logs), journal, spool and dead letters live'),
  'store-budget': opt.size('1g', 'Total size of the local store across containers; past it the oldest files of stopped containers go first'),
  'sink-queue-size': opt.size('32m', 'Bytes of records waiting in memory, as their sinks encoded them (a JSON line, a bulk action + document), all sink instances together (an instance may use all of it while it is the only one, three quarters of it while others are open; an Elasticsearch instance with a spool keeps at most (es-concurrency + 2) × es-batch-docs records in memory besides); past it records go to their instance\'s disk spool (dropped and counted when SPOOL_MAX_SIZE is 0)'),
  'spool-max-size': opt.size('1g', 'Disk spool per sink instance, under STATE_DIR/spool: records that do not fit in SINK_QUEUE_SIZE wait there, in order, also across restarts. When full, its oldest segments are dropped and counted (spool-full). 0 = no spool'),
  'spool-write-through': opt.bool('true', 'Every record also goes to its sink instance\'s disk spool (the file sink\'s: unless acknowledged within the event-loop turn that read it), and the spool\'s checkpoint follows acknowledgements: a crash (kill -9) loses no line for sinks, the next start sends what was not acknowledged again (same ids). false = memory first: the spool is used past SINK_QUEUE_SIZE and at a stop only, and a crash loses what was only in memory'),
  'pipe-size': opt.size('1m', "Kernel buffer of each container's FIFO (F_SETPIPE_SZ), between dockerd's writes and shiplog's reads: while shiplog is busy (a collection, a rotation) dockerd goes on writing up to this much instead of blocking the container, and shiplog takes in more per event-loop turn. Linux's default is 64 KiB; the kernel rounds up to a power of two pages. Above fs.pipe-max-size (1 MiB) only with CAP_SYS_RESOURCE; where the kernel refuses (also once the pipes of dockerd's user pass fs.pipe-user-pages-soft), the FIFO keeps its 64 KiB and a warning is logged. 0 = leave the kernel's default"),
  'shutdown-timeout': opt.duration('10s', 'On SIGTERM, how long sinks may go on delivering; what they still hold then is kept in their spool for the next start'),
  'host-name': opt.string('', "Host name put on records ({{.Hostname}}, host.name); empty = this machine's"),
  'incremental-marking': opt.bool('false', "V8's incremental marking of the old generation. false: V8 collects it in one pause when it is full (10–20 ms at shiplog's heap size); with it on, long lines (their bytes live outside the JavaScript heap, and V8 counts them against the old generation's limit) started a collection every few tens of milliseconds, a third of shiplog's CPU with 40 KiB lines. true: shorter pauses, and 7–30 MiB less peak memory with the Elasticsearch sink"),
  'metrics-address': opt.custom('', 'Where to serve Prometheus metrics (/metrics) and sink health (/health): host:port (127.0.0.1:9464, [::1]:9464, :9464 = every interface) or an absolute unix socket path. Empty = off', 'address', parseListenAddress),
} as const;

export type Settings = ParsedOptions<typeof settingsTable>;

export function readSettings(env: Readonly<Record<string, string | undefined>>): Settings {
  return parseTable(settingsTable, {}, env, plainEnvName);
}
