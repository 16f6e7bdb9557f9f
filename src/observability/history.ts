import type { Metrics } from './metrics.js';

/** How often the history samples the counters. */
export const HISTORY_INTERVAL_MS = 5_000;
/** Samples kept: 3 hours at the default interval. */
export const HISTORY_SAMPLES = 2_160;

/** Columns of each sample: cumulative counters (the same as in /metrics and /debug/vars), plus the cache size. */
export const HISTORY_COLUMNS = ['t', 'cacheBytes', 'hit', 'miss', 'coalesced', 'revalidated', 'stale', 'servedCache', 'servedUpstream'] as const;

/**
 * An in-memory ring buffer of counter samples for the dashboard's charts (hit ratio, bytes from cache vs upstream,
 * requests per second by result). It stores cumulative values; rates are differences of neighbours, so a missed
 * tick costs resolution, never correctness. Memory: HISTORY_SAMPLES × 9 numbers (about 150 kB).
 */
export class History {
  private readonly ring: number[][] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly metrics: Pick<Metrics, 'totals'> & Partial<Pick<Metrics, 'refreshPeers'>>,
    private readonly intervalMs = HISTORY_INTERVAL_MS,
    private readonly capacity = HISTORY_SAMPLES,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    if (this.timer) return;
    this.sample();
    // Several workers: the others' counters first (a failed gather samples what is known).
    const tick = (): void => void (this.metrics.refreshPeers?.() ?? Promise.resolve()).catch(() => {}).then(() => this.sample());
    this.timer = setInterval(tick, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  sample(): void {
    const { results: r, served, cacheBytes } = this.metrics.totals();
    this.ring.push([this.now(), cacheBytes, r.hit, r.miss, r.coalesced, r.revalidated, r.stale, served.cache, served.upstream]);
    if (this.ring.length > this.capacity) this.ring.shift();
  }

  /** Samples newer than `since` (ms since the epoch), oldest first. */
  since(since = 0): { intervalMs: number; columns: readonly string[]; samples: number[][] } {
    let i = this.ring.length;
    while (i > 0 && this.ring[i - 1]![0]! > since) i--;
    return { intervalMs: this.intervalMs, columns: HISTORY_COLUMNS, samples: this.ring.slice(i) };
  }
}
