// The Redis coordinator against a real redis-server: exclusive leases, renewal, expiry after a crash,
// compare-and-delete release, waiting, leader election, and degrading to local leases when Redis is gone.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { ACCESS_KEY, FallbackCoordinator, KEY_PREFIX, RedisAccessRecorder, RedisCoordinator, connectRedis, tryLeadership } from '../../src/coordination/index.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/process.js';
import { startRedis, type RunningRedis } from './support/redis.js';

function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

describe('redis coordination', () => {
  let redis: RunningRedis;
  let admin: Redis;
  const clients: RedisCoordinator[] = [];
  const { logger } = captureLogger();

  const coordinator = (): RedisCoordinator => {
    const c = new RedisCoordinator(connectRedis({ addr: redis.addr, db: 0, tls: false }, logger), { pollMs: 20 });
    clients.push(c);
    return c;
  };
  const ready = async (c: RedisCoordinator) => {
    await waitFor(() => c.redis.status === 'ready', { what: 'redis connection' });
  };

  before(async () => {
    redis = await startRedis();
    admin = new Redis({ host: '127.0.0.1', port: redis.port });
  });
  after(async () => {
    for (const c of clients) await c.close();
    admin?.disconnect();
    await redis?.stop();
  });

  it('gives a key to one holder at a time and releases it', async () => {
    const a = coordinator();
    const b = coordinator();
    await Promise.all([ready(a), ready(b)]);
    const results = await Promise.all([a.tryAcquire('blob:x', 10_000), b.tryAcquire('blob:x', 10_000)]);
    assert.equal(results.filter(Boolean).length, 1, 'exactly one of two concurrent acquirers wins');
    const lease = results.find(Boolean)!;
    assert.equal(await a.tryAcquire('blob:x', 10_000), null);
    await lease.release();
    assert.equal(await admin.exists(`${KEY_PREFIX}blob:x`), 0);
    const again = await b.tryAcquire('blob:x', 10_000);
    assert.ok(again);
    await again.release();
  });

  it('renews a held lease past its ttl', async () => {
    const a = coordinator();
    await ready(a);
    const lease = await a.tryAcquire('blob:renew', 300);
    assert.ok(lease);
    const until = Date.now() + 1200; // four ttls
    while (Date.now() < until) {
      assert.equal(await admin.exists(`${KEY_PREFIX}blob:renew`), 1, 'still held');
      assert.ok(lease.held);
      await new Promise((r) => setTimeout(r, 50));
    }
    await lease.release();
    assert.equal(lease.held, false);
  });

  it('a crashed holder’s lease expires and another replica takes over; waitReleased notices', async () => {
    const crashed = coordinator();
    const other = coordinator();
    await Promise.all([ready(crashed), ready(other)]);
    const lease = await crashed.tryAcquire('blob:crash', 400);
    assert.ok(lease);
    crashed.redis.disconnect(); // no release, no more renewals: the process "died"
    assert.equal(await other.tryAcquire('blob:crash', 400), null);
    const started = Date.now();
    await other.waitReleased('blob:crash', 5000);
    const waited = Date.now() - started;
    assert.ok(waited < 2000, `released by expiry after ${waited} ms`);
    const taken = await other.tryAcquire('blob:crash', 5000);
    assert.ok(taken);
    await taken.release();
  });

  it('release never deletes a lease another holder took over', async () => {
    const a = coordinator();
    await ready(a);
    const lease = await a.tryAcquire('blob:stolen', 10_000);
    assert.ok(lease);
    await admin.set(`${KEY_PREFIX}blob:stolen`, 'someone-else', 'PX', 10_000);
    await lease.release();
    assert.equal(await admin.get(`${KEY_PREFIX}blob:stolen`), 'someone-else');
    await admin.del(`${KEY_PREFIX}blob:stolen`);
  });

  it('waitReleased gives up after its timeout while the key is held', async () => {
    const a = coordinator();
    await ready(a);
    const lease = await a.tryAcquire('blob:held', 10_000);
    assert.ok(lease);
    const started = Date.now();
    await a.waitReleased('blob:held', 300);
    const waited = Date.now() - started;
    assert.ok(waited >= 250 && waited < 2000, `waited ${waited} ms`);
    assert.equal(await admin.exists(`${KEY_PREFIX}blob:held`), 1);
    await lease.release();
  });

  it('elects one leader at a time and hands over when it goes away', async () => {
    const a = coordinator();
    const b = coordinator();
    await Promise.all([ready(a), ready(b)]);
    const la = tryLeadership(a, 'sweeper', 300);
    const lb = tryLeadership(b, 'sweeper', 300);
    await waitFor(() => la.isLeader() || lb.isLeader(), { what: 'a leader' });
    const [leader, follower] = la.isLeader() ? [la, lb] : [lb, la];
    for (let i = 0; i < 10; i++) {
      assert.ok(!(la.isLeader() && lb.isLeader()), 'never two leaders');
      await new Promise((r) => setTimeout(r, 50));
    }
    await leader.close();
    await waitFor(() => follower.isLeader(), { timeoutMs: 3000, what: 'the follower to take over' });
    assert.equal(leader.isLeader(), false);
    await follower.close();
  });

  it('without Redis, leases are granted locally, failures are counted and logged, and nothing hangs', async () => {
    const cap = captureLogger();
    const deadPort = await freePort();
    const inner = new RedisCoordinator(connectRedis({ addr: `127.0.0.1:${deadPort}`, db: 0, tls: false }, cap.logger));
    const c = new FallbackCoordinator(inner, cap.logger);
    try {
      const started = Date.now();
      const lease = await c.tryAcquire('blob:any', 10_000);
      assert.ok(lease, 'a pull is never refused because Redis is down');
      await lease.release();
      await c.waitReleased('blob:any', 10_000);
      assert.ok(Date.now() - started < 5000, 'fails fast');
      assert.ok(c.failures >= 2);
      assert.ok(c.isDegraded);
      assert.ok(cap.lines.some((l) => String(l.msg).includes('falling back to local coalescing')));
    } finally {
      await c.close();
    }
  });

  it('recovers when Redis comes back', async () => {
    const cap = captureLogger();
    const c = new FallbackCoordinator(coordinator(), cap.logger);
    const inner = clients[clients.length - 1]!;
    await ready(inner);
    assert.ok(await c.tryAcquire('blob:r1', 1000).then((l) => l?.release().then(() => true)));
    assert.equal(c.isDegraded, false);
    await redis.proc.stop(); // Redis goes away (its temp dir is removed by redis.stop() below)
    const lease = await c.tryAcquire('blob:r2', 1000);
    assert.ok(lease);
    assert.equal(c.isDegraded, true);
    await redis.stop();
    redis = await startRedis({ port: redis.port });
    await waitFor(() => inner.redis.status === 'ready', { timeoutMs: 10_000, what: 'reconnect' });
    const l2 = await c.tryAcquire('blob:r3', 1000);
    assert.ok(l2);
    assert.equal(c.isDegraded, false);
    assert.ok(cap.lines.some((l) => String(l.msg).includes('available again')));
    await l2.release();
    admin.disconnect();
    admin = new Redis({ host: '127.0.0.1', port: redis.port });
  });

  it('access times: noted in memory, sent in batches, only moving forward, shared by every replica', async () => {
    const a = coordinator();
    const b = coordinator();
    await Promise.all([ready(a), ready(b)]);
    // A long flush interval: nothing reaches Redis until flush() (or lastAccesses()) is called.
    const ra = new RedisAccessRecorder(a.redis, logger, 3_600_000);
    const rb = new RedisAccessRecorder(b.redis, logger, 3_600_000);
    try {
      ra.touched('up/x@sha256:1', 1000);
      ra.touched('up/x@sha256:1', 900); // older: ignored
      ra.touched('blob:sha256:2', 2000);
      assert.equal(await admin.exists(ACCESS_KEY), 0, 'nothing sent on touched()');
      await ra.flush();
      rb.touched('up/x@sha256:1', 500); // another replica's older access does not move it back
      rb.touched('blob:sha256:2', 3000);
      const seen = await rb.lastAccesses();
      assert.equal(seen.get('up/x@sha256:1'), 1000);
      assert.equal(seen.get('blob:sha256:2'), 3000);
      assert.deepEqual(await ra.lastAccesses(), seen, 'both replicas see the same times');
      await ra.forget(['blob:sha256:2']);
      assert.equal((await rb.lastAccesses()).has('blob:sha256:2'), false);
    } finally {
      await ra.close();
      await rb.close();
      await admin.del(ACCESS_KEY);
    }
  });
});
