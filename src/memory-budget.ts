/**
 * One memory budget for every sink instance together. A per-instance bound alone multiplies with the
 * number of instances (one file-sink instance per container: 20 containers × 64 MiB), which is how a
 * burst into many slow sinks could exhaust the heap. Runners take bytes before they queue a record in
 * memory and give them back once it is delivered or moved to the spool; with no room left a runner
 * spools (or, with the spool off, drops and counts).
 */
export class MemoryBudget {
  private used = 0;

  constructor(readonly limitBytes: number) {}

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
