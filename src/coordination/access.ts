import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { AccessRecorder } from '../seams.js';

/** Sorted set of last access times (ms) by entry id, shared by every replica. */
export const ACCESS_KEY = 'regcache:access';
/** Accesses are sent to Redis at most this often, one pipelined ZADD per batch. */
const FLUSH_INTERVAL_MS = 2_000;
/** Ids per ZADD command. */
const BATCH = 500;
/** Pending ids kept in memory at most while Redis is unreachable (the most recent win). */
const MAX_PENDING = 100_000;

/**
 * Cluster-wide access recency for eviction: every replica notes what it served in memory (no I/O on the request
 * path) and sends the batch to one Redis sorted set every couple of seconds (`ZADD GT`: a time only moves
 * forward). The leader's eviction plan reads it, so an image hot on another replica is not evicted as cold.
 * When Redis is unreachable, the batch waits (bounded) and the next flush sends it.
 */
export class RedisAccessRecorder implements AccessRecorder {
  private pending = new Map<string, number>();
  private flushing: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
    flushIntervalMs = FLUSH_INTERVAL_MS,
  ) {
    this.timer = setInterval(() => void this.flush(), flushIntervalMs);
    this.timer.unref();
  }

  touched(id: string, at: number): void {
    const old = this.pending.get(id);
    if (old !== undefined && old >= at) return;
    if (old === undefined && this.pending.size >= MAX_PENDING) {
      const oldest = this.pending.keys().next().value;
      if (oldest !== undefined) this.pending.delete(oldest);
    }
    this.pending.delete(id);
    this.pending.set(id, at);
  }

  /** Sends what is pending; concurrent calls share one flush. */
  flush(): Promise<void> {
    this.flushing ??= this.send().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  private async send(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    try {
      const pipe = this.redis.pipeline();
      const entries = [...batch];
      for (let i = 0; i < entries.length; i += BATCH) {
        const args: Array<string | number> = [];
        for (const [id, at] of entries.slice(i, i + BATCH)) args.push(at, id);
        pipe.zadd(ACCESS_KEY, 'GT', ...args);
      }
      const results = (await pipe.exec()) ?? [];
      const failed = results.find(([err]) => err);
      if (failed) throw failed[0];
    } catch (e) {
      // Keep the batch for the next flush; newer times noted meanwhile win.
      for (const [id, at] of batch) this.touched(id, at);
      this.logger.debug({ err: (e as Error).message, pending: this.pending.size }, 'access times not sent to redis; retrying later');
    }
  }

  async lastAccesses(): Promise<Map<string, number>> {
    await this.flush();
    const out = new Map<string, number>();
    const flat = await this.redis.zrange(ACCESS_KEY, '0', '-1', 'WITHSCORES');
    for (let i = 0; i + 1 < flat.length; i += 2) out.set(flat[i]!, Number(flat[i + 1]));
    return out;
  }

  async forget(ids: string[]): Promise<void> {
    for (const id of ids) this.pending.delete(id);
    for (let i = 0; i < ids.length; i += BATCH) await this.redis.zrem(ACCESS_KEY, ...ids.slice(i, i + BATCH));
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush().catch(() => {});
  }
}
