import type { Logger } from 'pino';
import type { Coordinator, Leadership } from '../seams.js';
import { FallbackCoordinator } from './fallback.js';
import { tryLeadership } from './leader.js';
import { connectRedis, RedisCoordinator, type RedisSettings } from './redis.js';

export { FallbackCoordinator } from './fallback.js';
export { RedisCoordinator, RedisLease, connectRedis, KEY_PREFIX, type RedisSettings } from './redis.js';
export { tryLeadership, soleLeadership } from './leader.js';

/** Cross-replica coordination from `redis:` config: Redis locks that degrade to local ones when Redis fails. */
export interface ClusterCoordination {
  coordinator: Coordinator;
  /** Leader election for cluster-wide jobs (eviction sweeps). */
  leadership(name: string, ttlMs: number): Leadership;
  close(): Promise<void>;
}

export function createCoordination(settings: RedisSettings, logger: Logger): ClusterCoordination {
  const log = logger.child({ component: 'coordination' });
  const redis = new RedisCoordinator(connectRedis(settings, log));
  const leaders: Leadership[] = [];
  return {
    coordinator: new FallbackCoordinator(redis, log),
    leadership(name, ttlMs) {
      const l = tryLeadership(redis, name, ttlMs);
      leaders.push(l);
      return l;
    },
    async close() {
      await Promise.all(leaders.map((l) => l.close()));
      await redis.close();
    },
  };
}
