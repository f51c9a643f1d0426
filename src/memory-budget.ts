/**
 * One memory budget for every sink instance together. A per-instance bound alone multiplies with the
 * number of instances (one file-sink instance per container: 20 containers × 64 MiB), which is how a
 * burst into many slow sinks could exhaust the heap. Runners take bytes before they queue a record in
 * memory and give them back once it is delivered or moved to the spool; with no room left a runner
 * spools (or, with the spool off, drops and counts).
 *
 * While more than one instance is open, one instance may hold at most INSTANCE_SHARE of the budget:
 * an instance slower than its input (a backend that keeps answering, slowly) fills whatever it may
 * take, and without the cap it took everything, sending every healthy instance on the host to its
 * spool (BENCHMARKS.md, SINK_QUEUE_SIZE=8m). Alone, an instance may use all of it.
 */
export class MemoryBudget {
  private used = 0;
  private holders = 0;

  constructor(readonly limitBytes: number) {}

  /** An instance (sink runner) starts using the budget. */
  join(): void {
    this.holders++;
  }

  /** An instance is done with the budget (after giving back what it held). */
  leave(): void {
    this.holders = Math.max(0, this.holders - 1);
  }

  /** The most one instance may hold now: all of it when it is alone, INSTANCE_SHARE of it otherwise. */
  get instanceLimitBytes(): number {
    return this.holders > 1 ? Math.floor(this.limitBytes * INSTANCE_SHARE) : this.limitBytes;
  }

  get usedBytes(): number {
    return this.used;
  }

  get freeBytes(): number {
    return Math.max(0, this.limitBytes - this.used);
  }

  /** Takes `bytes` if they fit; false (and nothing taken) otherwise. */
  tryTake(bytes: number): boolean {
    if (this.used + bytes > this.limitBytes) return false;
    this.used += bytes;
    return true;
  }

  /** Takes `bytes` even past the limit (a single record bigger than what is free when nothing is held). */
  force(bytes: number): void {
    this.used += bytes;
  }

  give(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}

/** What one of several instances may hold: the rest stays free for the others. */
export const INSTANCE_SHARE = 3 / 4;
