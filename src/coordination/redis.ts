import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Coordinator, FetchLease } from '../seams.js';

export interface RedisSettings {
  /** host:port */
  addr: string;
  password?: string;
  db: number;
  tls: boolean;
}

/** Deletes the key only while it still holds our token (a lease that expired and was taken over is not ours). */
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
/** Extends the key's expiry only while it still holds our token. */
const RENEW = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

export const KEY_PREFIX = 'regcache:lock:';

/**
 * A Redis client for coordination: commands fail fast while the connection is down (no offline queue,
 * 2 s command timeout) so a request never waits on Redis; it keeps reconnecting in the background.
 */
export function connectRedis(s: RedisSettings, logger: Logger): Redis {
  const i = s.addr.lastIndexOf(':');
  const host = s.addr.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(s.addr.slice(i + 1));
  const redis = new Redis({
    host,
    port,
    password: s.password,
    db: s.db,
    tls: s.tls ? { servername: host } : undefined,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 2000,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  let lastError = 0;
  redis.on('error', (err: Error) => {
    // ioredis reports every failed reconnect; one line per 30 s is enough.
    if (Date.now() - lastError < 30_000) return;
    lastError = Date.now();
    logger.warn({ redis: s.addr, err: err.message }, 'redis connection error');
  });
  redis.on('ready', () => {
    if (lastError) logger.info({ redis: s.addr }, 'redis connection restored');
    lastError = 0;
  });
  return redis;
}

/** A held key, renewed every ttl/3 until released; `held` turns false once renewal fails for a whole ttl. */
export class RedisLease implements FetchLease {
  private validUntil: number;
  private released = false;
  private lost = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly redis: Redis,
    readonly key: string,
    private readonly token: string,
    private readonly ttlMs: number,
    acquiredAt: number,
  ) {
    this.validUntil = acquiredAt + ttlMs;
    this.timer = setInterval(() => void this.renew(), Math.max(10, Math.floor(ttlMs / 3)));
    this.timer.unref();
  }

  get held(): boolean {
    return !this.released && !this.lost && Date.now() < this.validUntil;
  }

  private async renew(): Promise<void> {
    const started = Date.now();
    try {
      const ok = await this.redis.eval(RENEW, 1, this.key, this.token, String(this.ttlMs));
      if (ok === 1) this.validUntil = started + this.ttlMs;
      else {
        this.lost = true;
        clearInterval(this.timer);
      }
    } catch {
      // Redis unreachable: the key expires by itself; `held` turns false at validUntil.
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    if (this.lost) return;
    await this.redis.eval(RELEASE, 1, this.key, this.token).catch(() => {});
  }
}

/**
 * Coordination of upstream fetches across replicas through Redis: a lease is `SET key token NX PX ttl`,
 * renewed while held, released by compare-and-delete. Errors propagate (see FallbackCoordinator).
 */
export class RedisCoordinator implements Coordinator {
  constructor(
    readonly redis: Redis,
    private readonly opts: { pollMs?: number; prefix?: string } = {},
  ) {}

  private k(key: string): string {
    return (this.opts.prefix ?? KEY_PREFIX) + key;
  }

  async tryAcquire(key: string, ttlMs: number): Promise<RedisLease | null> {
    const token = randomUUID();
    const started = Date.now();
    const ok = await this.redis.set(this.k(key), token, 'PX', ttlMs, 'NX');
    return ok === 'OK' ? new RedisLease(this.redis, this.k(key), token, ttlMs, started) : null;
  }

  async waitReleased(key: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const poll = this.opts.pollMs ?? 150;
    for (;;) {
      if ((await this.redis.exists(this.k(key))) === 0) return;
      const left = deadline - Date.now();
      if (left <= 0) return;
      await sleep(Math.min(poll, left));
    }
  }

  async close(): Promise<void> {
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }
}
