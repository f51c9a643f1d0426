/** Builders for records and container metadata in unit tests. */
import type { ContainerMeta, LogRecord } from '../../sinks/sink.js';
import { bigIntToParts } from '../../src/time.js';

export const container: ContainerMeta = {
  id: 'e882a436c6b317a6ecf0bfdb77cdf7b2c3dc27dc1f80ad9b6159a3769e94cb10',
  name: 'demo', imageName: 'busybox', imageId: 'sha256:455044c7b7a3a94b04eba71c25a35d138afdafad3c1d65099e2721ae5d48e1ac',
  tag: 'e882a436c6b3', attrs: {}, labels: {}, hostname: 'host1',
};

export function record(line: string, i = 0, overrides: Partial<LogRecord> = {}): LogRecord {
  return {
    container, source: 'stdout', timeNano: bigIntToParts(1795452233042059423n + BigInt(i)),
    line: Buffer.from(line), truncated: false, seq: 0, ...overrides,
  };
}
