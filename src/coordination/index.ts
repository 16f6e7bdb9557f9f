import type { Logger } from 'pino';
import type { AccessRecorder, Coordinator, Leadership } from '../seams.js';
import { RedisAccessRecorder } from './access.js';
import { FallbackCoordinator } from './fallback.js';
import { tryLeadership } from './leader.js';
import { connectRedis, RedisCoordinator, type RedisSettings } from './redis.js';

export { FallbackCoordinator } from './fallback.js';
export { RedisCoordinator, RedisLease, connectRedis, KEY_PREFIX, type RedisSettings } from './redis.js';
export { tryLeadership, soleLeadership } from './leader.js';
export { RedisAccessRecorder, ACCESS_KEY } from './access.js';

/** What the cache policy and lifecycle need from whatever coordinates several processes (Redis, or workers' IPC). */
export interface FetchCoordination {
  coordinator: Coordinator;
  /** Leader election for cluster-wide jobs (eviction sweeps). */
  leadership(name: string, ttlMs: number): Leadership;
  /** Cluster-wide access recency for the eviction plan. */
  access: AccessRecorder;
  close(): Promise<void>;
}

/** Cross-replica coordination from `redis:` config: Redis locks that degrade to local ones when Redis fails. */
export interface ClusterCoordination extends FetchCoordination {
  /** Coordination calls answered locally because Redis failed (regcache_coordination_fallbacks_total). */
  readonly fallbacks: number;
  /** Redis reachable: the connection is up (readiness). */
  readonly healthy: boolean;
  /** Where Redis is (host:port), for health messages. */
  readonly addr: string;
}

export function createCoordination(settings: RedisSettings, logger: Logger): ClusterCoordination {
  const log = logger.child({ component: 'coordination' });
  const redis = new RedisCoordinator(connectRedis(settings, log));
  const leaders: Leadership[] = [];
  const coordinator = new FallbackCoordinator(redis, log);
  const access = new RedisAccessRecorder(redis.redis, log);
  return {
    coordinator,
    access,
    get fallbacks() {
      return coordinator.failures;
    },
    get healthy() {
      return redis.redis.status === 'ready';
    },
    addr: settings.addr,
    leadership(name, ttlMs) {
      const l = tryLeadership(redis, name, ttlMs);
      leaders.push(l);
      return l;
    },
    async close() {
      await Promise.all(leaders.map((l) => l.close()));
      await access.close();
      await redis.close();
    },
  };
}
