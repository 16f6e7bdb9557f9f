/**
 * Failed-login throttle: a token bucket per client address. Each failure takes a token; with the
 * bucket empty the address is refused before any password check (so no bcrypt work either) until a
 * token has refilled. Other addresses are unaffected. The map is bounded: full buckets carry no
 * information and are dropped first, then the least recently failed.
 */
export interface ThrottleOptions {
  /** Failures allowed in a burst (default 10). */
  burst?: number;
  /** Tokens regained per second (default 1). */
  perSecond?: number;
  /** Addresses tracked at most (default 10000). */
  maxEntries?: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class FailureThrottle {
  private readonly buckets = new Map<string, Bucket>();
  private readonly burst: number;
  private readonly perSecond: number;
  private readonly maxEntries: number;

  constructor(opts: ThrottleOptions = {}, private readonly now: () => number = Date.now) {
    this.burst = opts.burst ?? 10;
    this.perSecond = opts.perSecond ?? 1;
    this.maxEntries = opts.maxEntries ?? 10_000;
  }

  /** 0 when the address may try; else whole seconds until it may. */
  retryAfterSeconds(address: string): number {
    const b = this.refilled(address);
    if (!b || b.tokens >= 1) return 0;
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perSecond));
  }

  /** Records a failure; returns true when this failure emptied the bucket. */
  fail(address: string): boolean {
    const b = this.refilled(address) ?? { tokens: this.burst, at: this.now() };
    b.tokens = Math.max(0, b.tokens - 1);
    this.buckets.delete(address); // re-insert: Map order is least recently failed first
    this.buckets.set(address, b);
    if (this.buckets.size > this.maxEntries) this.evict();
    return b.tokens < 1;
  }

  get size(): number {
    return this.buckets.size;
  }

  private refilled(address: string): Bucket | undefined {
    const b = this.buckets.get(address);
    if (!b) return undefined;
    const now = this.now();
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    return b;
  }

  private evict(): void {
    // Down to 90% so that the scan runs once per maxEntries/10 new addresses, not on every failure.
    const target = Math.floor(this.maxEntries * 0.9);
    for (const address of [...this.buckets.keys()]) {
      if (this.buckets.size <= target) return;
      if (this.refilled(address)!.tokens >= this.burst) this.buckets.delete(address);
    }
    for (const address of [...this.buckets.keys()]) {
      if (this.buckets.size <= target) return;
      this.buckets.delete(address);
    }
  }
}
