import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import type { MetadataIndex } from '../metadata/index.js';
import type { AccessRecorder } from '../seams.js';
import type { BlobStore } from '../storage/blobstore.js';
import { clusterUnits, forgetRemoved } from './cluster.js';
import { Planner, type Reason } from './plan.js';
import { applyRemovals, type LiveCache, type RemoveReport } from './remove.js';
import type { Serial } from './serial.js';

export interface SweeperOptions {
  index: MetadataIndex;
  storage: BlobStore;
  live?: LiveCache;
  logger: Logger;
  /** proxy.ttl of an upstream (null: keep forever). */
  ttlOf(upstream: string | undefined): number | null;
  /** regcache.cache.maxsize; undefined: no cap. */
  maxSizeBytes?: number;
  /** regcache.cache.lowwatermark: eviction goes down to maxsize × this. */
  lowWatermark: number;
  /** How often the size is compared with the cap (cheap) and expired content looked for (at most every ttlIntervalMs). */
  checkIntervalMs?: number;
  ttlIntervalMs?: number;
  /** Several replicas: only the leader sweeps. */
  isLeader?(): boolean;
  onRemoved?(reason: Reason, blobs: number, bytes: number): void;
  now?(): number;
  /** Shared with the admin operations so that removals never run concurrently. */
  serial?: Serial;
  /**
   * Several replicas over one storage: cluster-wide access times. The leader then learns what the others stored
   * (reconcile with storage) every clusterRefreshMs, and plans with everyone's last accesses.
   */
  access?: AccessRecorder;
  clusterRefreshMs?: number;
}

/** How often the leader catches up with what other replicas stored (a listing of the storage). */
const CLUSTER_REFRESH_MS = 60_000;

/** proxy.ttl of the upstream a piece of content came from (the default upstream's when unknown). */
export function ttlResolver(config: Pick<Config, 'upstreams'>): (upstream: string | undefined) => number | null {
  const byName = new Map(config.upstreams.map((u) => [u.name, u.ttlMs]));
  const fallback = config.upstreams[0]?.ttlMs ?? null;
  return (name) => (name !== undefined && byName.has(name) ? byName.get(name)! : fallback);
}

/** TTL sweeps run this often: a tenth of the shortest ttl, between 250 ms and 5 min. */
export function ttlInterval(ttls: Array<number | null>): number | undefined {
  const set = ttls.filter((t): t is number => t !== null);
  if (set.length === 0) return undefined;
  return Math.min(300_000, Math.max(250, Math.floor(Math.min(...set) / 10)));
}

/**
 * Background cache lifecycle: removes content past its upstream's proxy.ttl, and when the cache grows past
 * maxsize evicts least-recently-used images down to the low-water mark. One sweep at a time, on a timer, so
 * requests never wait for it; each removal is a separate async file operation.
 */
export class Sweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private lastTtlSweep = 0;
  private lastClusterRefresh = 0;
  private readonly now: () => number;

  constructor(private readonly opts: SweeperOptions) {
    this.now = opts.now ?? Date.now;
  }

  start(): void {
    const every = Math.min(this.opts.checkIntervalMs ?? 1000, this.opts.ttlIntervalMs ?? Infinity);
    this.timer = setInterval(() => this.tick(), every);
    this.timer.unref();
  }

  private tick(): void {
    if (this.running || (this.opts.isLeader && !this.opts.isLeader())) return;
    const ttlDue = this.opts.ttlIntervalMs !== undefined && this.now() - this.lastTtlSweep >= this.opts.ttlIntervalMs;
    const over = this.opts.maxSizeBytes !== undefined && this.opts.index.totalBytes > this.opts.maxSizeBytes;
    // A capped cache shared by replicas: this index sees only what this replica stored since it last looked.
    const refreshDue =
      this.opts.access !== undefined &&
      this.opts.maxSizeBytes !== undefined &&
      this.now() - this.lastClusterRefresh >= (this.opts.clusterRefreshMs ?? CLUSTER_REFRESH_MS);
    if (!ttlDue && !over && !refreshDue) return;
    this.running = this.sweep({ ttl: ttlDue })
      .then(
        () => undefined,
        (e: unknown) => this.opts.logger.error({ err: (e as Error).message }, 'cache sweep failed'),
      )
      .finally(() => (this.running = undefined));
  }

  /** One sweep: expiry (when `ttl`), then LRU eviction when over the cap. */
  sweep(what: { ttl: boolean } = { ttl: true }): Promise<RemoveReport> {
    return this.opts.serial ? this.opts.serial.run(() => this.sweepNow(what)) : this.sweepNow(what);
  }

  private async sweepNow(what: { ttl: boolean }): Promise<RemoveReport> {
    const { index, logger } = this.opts;
    const now = this.now();
    if (this.opts.access) this.lastClusterRefresh = now;
    const planner = new Planner(index, await clusterUnits(this.opts), (d) => this.opts.live?.isBusy(d) ?? false);
    if (what.ttl) {
      this.lastTtlSweep = now;
      planner.expire(now, this.opts.ttlOf);
    }
    const max = this.opts.maxSizeBytes;
    if (max !== undefined && planner.remainingBytes > max) planner.shrinkTo(Math.floor(max * this.opts.lowWatermark));
    const report = await applyRemovals(planner.removals, { ...this.opts });
    await forgetRemoved(this.opts, planner.removals);
    if (report.units > 0 || report.skipped > 0) {
      logger.info({ ...report, cacheBytes: index.totalBytes, maxBytes: max }, 'cache sweep');
    }
    return report;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
