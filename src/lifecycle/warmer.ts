import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { PullThroughCache, UpstreamHandle } from '../proxy/index.js';
import { parseImageRef } from './warm.js';

/** Below this many remaining upstream pulls (ratelimit-remaining), a scheduled warm waits for the next round. */
export const WARM_MIN_REMAINING = 10;
/** ... or below this share of the limit, whichever is more: warming must never eat the pulls clients need. */
const WARM_MIN_REMAINING_SHARE = 0.2;

export interface WarmSchedule {
  images: string[];
  intervalMs: number;
}

export interface WarmRound {
  warmed: number;
  /** Tags that moved upstream (new digest fetched). */
  moved: number;
  deferred: number;
  failed: number;
}

interface Descriptor {
  digest?: unknown;
  platform?: unknown;
}

/**
 * `regcache.warm`: keeps a list of images warm in the running server. Every interval, each image's tag is
 * revalidated with its upstream (a HEAD, freshness ignored) and, when it moved, the new manifest and every
 * blob it needs are fetched — through the cache policy itself, as a client pull would, so scoping, metrics and
 * the index are the same. Only the process that owns the cache's lifecycle warms (`isOwner`). An upstream that
 * reported few remaining pulls (rate-limit headers) or whose circuit breaker is open is skipped this round.
 */
export class ScheduledWarmer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly schedule: WarmSchedule,
    private readonly deps: {
      proxy: PullThroughCache;
      resolve(name: string): { upstream: UpstreamHandle; repo: string };
      isOwner(): boolean;
      logger: Logger;
    },
  ) {}

  start(): void {
    if (this.schedule.images.length === 0 || this.timer) return;
    const tick = (): void => {
      if (this.stopped || this.running) return;
      this.running = this.round()
        .then((r) => {
          if (r) this.deps.logger.info(r, 'scheduled warm done');
        })
        .catch((e: unknown) => this.deps.logger.warn({ err: (e as Error).message }, 'scheduled warm failed'))
        .finally(() => (this.running = undefined));
    };
    this.timer = setInterval(tick, this.schedule.intervalMs);
    this.timer.unref();
    setImmediate(tick); // the first round at start: the list is warm before anyone asks
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass over the list; undefined when this process does not own the cache. */
  async round(): Promise<WarmRound | undefined> {
    if (!this.deps.isOwner()) return undefined;
    const r: WarmRound = { warmed: 0, moved: 0, deferred: 0, failed: 0 };
    for (const image of this.schedule.images) {
      if (this.stopped) break;
      try {
        const outcome = await this.warmOne(image);
        if (outcome === 'deferred') r.deferred++;
        else {
          r.warmed++;
          if (outcome === 'moved') r.moved++;
        }
      } catch (e) {
        r.failed++;
        this.deps.logger.warn({ image, err: (e as Error).message }, 'scheduled warm of an image failed');
      }
    }
    return r;
  }

  private lowOnPulls(h: UpstreamHandle): { remaining: number; limit?: number } | undefined {
    const rl = h.client.rateLimit();
    if (rl?.remaining === undefined) return undefined;
    const floor = Math.max(WARM_MIN_REMAINING, rl.limit !== undefined ? Math.ceil(rl.limit * WARM_MIN_REMAINING_SHARE) : 0);
    return rl.remaining < floor ? { remaining: rl.remaining, limit: rl.limit } : undefined;
  }

  private async warmOne(image: string): Promise<'deferred' | 'moved' | 'same'> {
    const { name, reference } = parseImageRef(image);
    const { upstream, repo } = this.deps.resolve(name);
    const client = upstream.client;
    const low = this.lowOnPulls(upstream);
    const breaker = client.breaker?.();
    if (low || (breaker && breaker.state === 'open')) {
      this.deps.logger.info({ image, upstream: client.name, ...low, breaker: breaker?.state }, 'scheduled warm deferred: upstream rate limit low or upstream down');
      return 'deferred';
    }
    const manifests = this.deps.proxy.manifests;
    // Freshness 0: always ask the upstream whether the tag moved (one HEAD when it did not).
    const top = await manifests.get(client, 0, repo, reference);
    const moved = top.result === 'miss';
    const parsed = JSON.parse(top.bytes.toString('utf8')) as { manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] };
    const blobs = new Set<string>();
    const images = [parsed];
    if (Array.isArray(parsed.manifests)) {
      images.length = 0;
      for (const c of parsed.manifests) {
        if (typeof c.digest !== 'string') continue;
        const child = await manifests.get(client, 0, repo, c.digest);
        images.push(JSON.parse(child.bytes.toString('utf8')) as typeof parsed);
      }
    }
    for (const m of images) for (const d of [m.config, ...(m.layers ?? [])]) if (typeof d?.digest === 'string') blobs.add(d.digest);
    for (const digest of blobs) {
      if (await this.deps.proxy.storage.statBlob(digest)) continue;
      const src = await this.deps.proxy.blobs.get(client, repo, digest);
      const stream: Readable = src.kind === 'download' ? src.open() : await src.open();
      for await (const _ of stream) {
        // drained: the cache commits the blob as it passes
      }
    }
    if (moved) this.deps.logger.info({ image, upstream: client.name, digest: top.digest }, 'scheduled warm fetched a new digest');
    return moved ? 'moved' : 'same';
  }
}
