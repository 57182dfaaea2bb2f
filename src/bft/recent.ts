// The latest few samples of a duration (in ticks) and their quantiles: what the core's adaptive timers
// (leader-pace.ts, the request timer in request-intake.ts) learn from. Bounded; pure.

export class RecentSamples {
  private readonly xs: number[] = [];
  private next = 0;
  private sorted: number[] | null = null;

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.xs.length;
  }

  add(x: number): void {
    if (this.xs.length < this.capacity) this.xs.push(x);
    else this.xs[this.next] = x;
    this.next = (this.next + 1) % this.capacity;
    this.sorted = null;
  }

  /** The q-quantile (0..1) of the samples held, or 0 when there are none. */
  quantile(q: number): number {
    if (this.xs.length === 0) return 0;
    this.sorted ??= [...this.xs].sort((a, b) => a - b);
    return this.sorted[Math.min(this.sorted.length - 1, Math.floor(this.sorted.length * q))] as number;
  }
}
