// health.storagedriver: storage write/read check flips /, /v2/ and /readyz to 503 after `threshold` failures, and back.
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '../support/process.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { scrape, value } from './prom.js';

const THRESHOLD = 3;

describe('storage health check', () => {
  let upstream: RunningRegistry;
  let cache: RunningRegcache;

  before(async () => {
    upstream = await startRegistry();
    cache = await startRegcache({
      upstreamUrl: upstream.url,
      config: {
        health: { storagedriver: { enabled: true, interval: '100ms', threshold: THRESHOLD } },
        http: { debug: { addr: '127.0.0.1:0', prometheus: { enabled: true } } },
      },
    });
  });

  after(async () => {
    await cache?.stop();
    await upstream?.stop();
  });

  const status = async (url: string): Promise<number> => (await fetch(url)).status;

  it('reports healthy, then 503 after threshold consecutive failures, then recovers by itself', async () => {
    const debug = cache.app.debugUrl!;
    assert.equal(await status(`${cache.url}/`), 200);
    assert.equal(await status(`${cache.url}/v2/`), 200);
    assert.equal(await status(`${cache.url}/readyz`), 200);
    assert.equal(await status(`${debug}/debug/health`), 200);

    // Storage writes go through <root>/_uploads: a file in its place makes every write fail (root ignores chmod).
    const uploads = join(cache.root, '_uploads');
    const logStart = cache.logs.length;
    await rm(uploads, { recursive: true, force: true });
    await writeFile(uploads, 'not a directory');
    try {
      await waitFor(async () => (await status(`${cache.url}/v2/`)) === 503, { timeoutMs: 10_000, what: '/v2/ to report 503' });
      const v2 = await fetch(`${cache.url}/v2/`);
      assert.equal(v2.status, 503);
      assert.equal(((await v2.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'UNAVAILABLE');
      const root = await fetch(`${cache.url}/`);
      assert.equal(root.status, 503);
      assert.match(Object.keys((await root.json()) as object).join(), /^storagedriver_filesystem$/);
      assert.equal(await status(`${cache.url}/readyz`), 503);
      assert.equal(await status(`${cache.url}/healthz`), 200, 'liveness is not readiness');
      assert.equal(await status(`${debug}/debug/health`), 503);
      assert.equal(await status(`${debug}/readyz`), 503);
      assert.equal(value(await scrape(`${debug}/metrics`), 'regcache_storage_healthy'), 0);

      const records = cache.logs.slice(logStart).filter((l) => String(l.msg).startsWith('storage health check'));
      const flip = records.findIndex((l) => String(l.msg).includes('reporting unhealthy'));
      assert.ok(flip >= 0, 'unhealthy transition logged');
      assert.equal(records[flip]!.failures, THRESHOLD, 'unhealthy exactly at the threshold');
      assert.equal(records.slice(0, flip).length, THRESHOLD - 1, 'earlier failures only warned');
    } finally {
      await rm(uploads, { force: true });
      await mkdir(uploads, { recursive: true });
    }
    await waitFor(async () => (await status(`${cache.url}/v2/`)) === 200, { timeoutMs: 10_000, what: 'recovery' });
    assert.equal(await status(`${cache.url}/`), 200);
    assert.equal(await status(`${cache.url}/readyz`), 200);
    assert.equal(value(await scrape(`${debug}/metrics`), 'regcache_storage_healthy'), 1);
  });
});
