import type { Leadership } from '../seams.js';
import type { RedisCoordinator, RedisLease } from './redis.js';

/** A single replica (no Redis) always leads. */
export const soleLeadership: Leadership = { isLeader: () => true, close: async () => {} };

/**
 * Campaigns for `leader:<name>` (e.g. the eviction sweeper) among the replicas sharing one Redis: the holder
 * renews its lease every ttl/3, the others retry as often. At most one replica is leader at a time as long
 * as clocks run at the same rate; while Redis is unreachable nobody is (the lease lapses after ttl), so a job
 * guarded by it pauses instead of running on every replica.
 */
export function tryLeadership(coordinator: RedisCoordinator, name: string, ttlMs: number): Leadership {
  let lease: RedisLease | null = null;
  let stopped = false;
  let busy = false;
  const campaign = async (): Promise<void> => {
    if (busy || stopped || lease?.held) return;
    busy = true;
    try {
      await lease?.release();
      lease = await coordinator.tryAcquire(`leader:${name}`, ttlMs).catch(() => null);
      if (stopped) await lease?.release();
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void campaign(), Math.max(10, Math.floor(ttlMs / 3)));
  timer.unref();
  void campaign();
  return {
    isLeader: () => !stopped && (lease?.held ?? false),
    async close() {
      stopped = true;
      clearInterval(timer);
      await lease?.release();
    },
  };
}
