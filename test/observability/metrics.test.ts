// /metrics, /debug/vars and the access log after a cold then a warm pull (real upstream, real skopeo).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { copyToDir } from '../support/skopeo.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { Metrics } from '../../src/observability/metrics.js';
import { parseProm, scrape, value, type Samples } from './prom.js';

describe('metrics and access log', () => {
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let cache: RunningRegcache;
  let work: string;
  let img: BuiltImage;
  let upstreamName: string;

  before(async () => {
    work = await makeTempDir('metrics-');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [50_000, 30_000], seed: 'metrics' });
    await pushImage(img, upstream.host, 'obs/app:1');
    proxy = await startFaultProxy(upstream.url);
    cache = await startRegcache({
      upstreamUrl: proxy.url,
      config: {
        http: { debug: { addr: '127.0.0.1:0', prometheus: { enabled: true, path: '/metrics' } } },
        regcache: { freshness: '1h', trustproxy: ['127.0.0.1'] },
      },
    });
    upstreamName = cache.config.upstreams[0]!.name;
  });

  after(async () => {
    await cache?.stop();
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  const blobBytes = () => img.blobs.reduce((s, b) => s + b.size, 0);
  const metrics = (): Promise<Samples> => scrape(`${cache.app.debugUrl}/metrics`);
  const vars = async () => (await (await fetch(`${cache.app.debugUrl}/debug/vars`)).json()) as {
    registry: { proxy: Record<'blobs' | 'manifests', Record<string, number>> };
    regcache: { cache: { bytes: number; blobs: number } };
  };

  it('counts a cold pull as misses fetched from upstream, a warm pull as hits served from cache', async () => {
    await copyToDir(`docker://${cache.host}/obs/app:1`, join(work, 'cold'));
    let m = await metrics();
    const n = img.blobs.length;
    assert.equal(value(m, 'regcache_cache_requests_total', { kind: 'blob', result: 'miss' }), n);
    assert.equal(value(m, 'regcache_cache_requests_total', { kind: 'blob', result: 'hit' }), 0);
    assert.equal(value(m, 'regcache_cache_requests_total', { kind: 'manifest', result: 'miss' }), 1);
    assert.equal(value(m, 'regcache_upstream_fetched_bytes_total', { upstream: upstreamName, kind: 'blob' }), blobBytes());
    assert.equal(value(m, 'regcache_upstream_fetched_bytes_total', { upstream: upstreamName, kind: 'manifest' }), img.manifestSize);
    assert.equal(value(m, 'regcache_served_bytes_total', { kind: 'blob', source: 'upstream' }), blobBytes());
    assert.equal(value(m, 'regcache_upstream_requests_total', { upstream: upstreamName, op: 'getBlob', outcome: 'ok' }), n);
    assert.equal(value(m, 'regcache_upstream_pulls_saved_total'), 0);
    assert.equal(value(m, 'regcache_http_requests_total', { method: 'GET', route: 'blobs', status: '200' }), n);
    assert.equal(value(m, 'regcache_http_request_duration_seconds_count', { method: 'GET', route: 'blobs' }), n);
    assert.equal(value(m, 'regcache_inflight_downloads'), 0);
    const upstreamCalls = value(m, 'regcache_upstream_requests_total');
    assert.equal(upstreamCalls, proxy.count(), 'every upstream request counted');

    proxy.reset();
    await copyToDir(`docker://${cache.host}/obs/app:1`, join(work, 'warm'));
    assert.equal(proxy.count(), 0, 'warm pull stays off upstream');
    m = await metrics();
    assert.equal(value(m, 'regcache_cache_requests_total', { kind: 'blob', result: 'hit' }), n);
    assert.equal(value(m, 'regcache_cache_requests_total', { kind: 'manifest', result: 'hit' }), 1);
    assert.equal(value(m, 'regcache_served_bytes_total', { kind: 'blob', source: 'cache' }), blobBytes());
    assert.equal(value(m, 'regcache_served_bytes_total', { kind: 'manifest', source: 'cache' }), img.manifestSize);
    assert.equal(value(m, 'regcache_served_bytes_total', { kind: 'manifest', source: 'upstream' }), img.manifestSize);
    assert.equal(value(m, 'regcache_upstream_pulls_saved_total', { upstream: upstreamName }), 1);
    assert.equal(value(m, 'regcache_upstream_requests_total'), upstreamCalls, 'no upstream request added');
    const stored = blobBytes() + img.manifestSize;
    assert.equal(value(m, 'regcache_cache_size_bytes'), stored);
    assert.equal(value(m, 'regcache_cache_blobs'), n + 1);
    assert.equal(value(m, 'regcache_storage_healthy'), 1);

    const v = await vars();
    assert.deepEqual(v.registry.proxy.blobs, { Requests: 2 * n, Hits: n, Misses: n, BytesPulled: blobBytes(), BytesPushed: 2 * blobBytes() });
    assert.equal(v.registry.proxy.manifests.Hits, 1);
    assert.equal(v.registry.proxy.manifests.Misses, 1);
    assert.deepEqual(v.regcache.cache, { bytes: stored, blobs: n + 1, maxBytes: null, lowWatermark: null });
  });

  it('counts coalesced waits: concurrent cold requests for one blob make one upstream fetch', async () => {
    const fresh = await startRegcache({
      upstreamUrl: proxy.url,
      config: { http: { debug: { addr: '127.0.0.1:0', prometheus: { enabled: true } } } },
    });
    try {
      const layer = img.blobs[1]!;
      proxy.reset();
      proxy.setRules([{ method: 'GET', path: new RegExp(layer.digest), fault: { kind: 'delay', ms: 300 } }]);
      const bodies = await Promise.all(
        Array.from({ length: 4 }, async () => (await fetch(`${fresh.url}/v2/obs/app/blobs/${layer.digest}`)).arrayBuffer()),
      );
      for (const b of bodies) assert.equal(b.byteLength, layer.size);
      assert.equal(proxy.count({ method: 'GET' }), 1);
      const m = await scrape(`${fresh.app.debugUrl}/metrics`);
      assert.equal(value(m, 'regcache_coalesced_waits_total', { kind: 'blob' }), 3);
      assert.equal(value(m, 'regcache_cache_requests_total', { kind: 'blob', result: 'coalesced' }), 3);
      assert.equal(value(m, 'regcache_upstream_fetched_bytes_total', { kind: 'blob' }), layer.size);
    } finally {
      proxy.clearRules();
      await fresh.stop();
    }
  });

  it('logs one access line per request with body bytes, cache result and the client address (trusted proxy)', async () => {
    const layer = img.blobs[1]!;
    const before = cache.logs.length;
    const res = await fetch(`${cache.url}/v2/obs/app/blobs/${layer.digest}`, { headers: { 'X-Forwarded-For': '198.51.100.4, 203.0.113.9' } });
    assert.equal((await res.arrayBuffer()).byteLength, layer.size);
    const ranged = await fetch(`${cache.url}/v2/obs/app/blobs/${layer.digest}`, { headers: { Range: 'bytes=0-99' } });
    assert.equal((await ranged.arrayBuffer()).byteLength, 100);
    await fetch(`${cache.url}/v2/obs/app/blobs/${layer.digest}`, { method: 'HEAD' });
    const manifest = await fetch(`${cache.url}/v2/obs/app/manifests/1`, { headers: { Accept: img.mediaType } });
    assert.equal((await manifest.arrayBuffer()).byteLength, img.manifestSize);
    const missing = await fetch(`${cache.url}/v2/obs/app/manifests/nope`);
    const missingBody = Buffer.from(await missing.arrayBuffer());
    const lines = cache.logs.slice(before).filter((l) => l.msg === 'request');
    assert.equal(lines.length, 5);
    // Log lines are written when each response closes: compare them as a set, not by arrival order.
    const byKey = (a: unknown[], b: unknown[]) => JSON.stringify(a).localeCompare(JSON.stringify(b));
    assert.deepEqual(
      lines.map((l) => [l.method, l.status, l.bytes, l.cache]).sort(byKey),
      [
        ['GET', 200, layer.size, 'hit'],
        ['GET', 206, 100, 'hit'],
        ['HEAD', 200, 0, 'hit'],
        ['GET', 200, img.manifestSize, 'hit'],
        ['GET', 404, missingBody.length, undefined],
      ].sort(byKey),
    );
    // Peer 127.0.0.1 is trusted, so the right-most untrusted X-Forwarded-For hop is the client.
    const full = lines.find((l) => l.status === 200 && l.bytes === layer.size && l.method === 'GET')!;
    const rangedLine = lines.find((l) => l.status === 206)!;
    assert.equal(full.remote, '203.0.113.9');
    assert.equal(rangedLine.remote, '127.0.0.1');
    assert.equal(full.path, `/v2/obs/app/blobs/${layer.digest}`);
    assert.equal(typeof full.ms, 'number');
  });

  it('exports each upstream rate limit (Docker Hub RateLimit-Remaining) as it last saw it', async () => {
    let remaining: number | undefined = 42;
    const m = new Metrics({
      upstreams: () => [
        { name: 'docker.io', rateLimit: () => (remaining === undefined ? undefined : { limit: 100, remaining, updatedAt: 0 }) },
        { name: 'ghcr.io', rateLimit: () => undefined },
      ],
      cache: () => ({ bytes: 0, blobs: 0 }),
      storageHealthy: () => true,
    });
    let samples = parseProm(await m.prometheus());
    assert.equal(value(samples, 'regcache_upstream_ratelimit_remaining', { upstream: 'docker.io' }), 42);
    assert.equal(value(samples, 'regcache_upstream_ratelimit_limit', { upstream: 'docker.io' }), 100);
    assert.equal(samples.filter((x) => x.labels.upstream === 'ghcr.io').length, 0);
    remaining = 7;
    samples = parseProm(await m.prometheus());
    assert.equal(value(samples, 'regcache_upstream_ratelimit_remaining', { upstream: 'docker.io' }), 7);
  });
});
