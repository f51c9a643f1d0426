/**
 * Which segment the store deletes next when it is over its byte budget (`docker rm` tells the plugin
 * nothing, so old logs would otherwise pile up): the oldest segment of a container with no open
 * writer, and only when there is none, the oldest rotated segment of a live container. The current
 * file of a live container is never a candidate. Within a container, segments go oldest first.
 */
import type { ContainerLog, SegmentState } from './container-log.js';

export interface EvictionCandidate {
  container: ContainerLog;
  segment: SegmentState;
}

/** Unknown times sort first: an unreadable or empty segment is the cheapest loss. */
function age(segment: SegmentState): bigint {
  return segment.lastTime ?? -1n;
}

export function nextSegmentToEvict(containers: Iterable<ContainerLog>): EvictionCandidate | undefined {
  let stopped: EvictionCandidate | undefined;
  let live: EvictionCandidate | undefined;
  for (const container of containers) {
    const oldest = container.segments[0];
    if (oldest === undefined) continue;
    if (container.writerCount === 0) {
      if (stopped === undefined || age(oldest) < age(stopped.segment)) stopped = { container, segment: oldest };
    } else if (oldest.seq !== container.currentSeq) {
      if (live === undefined || age(oldest) < age(live.segment)) live = { container, segment: oldest };
    }
  }
  return stopped ?? live;
}
