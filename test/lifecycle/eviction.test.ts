// Cache lifecycle against real components: distribution upstream, skopeo pulls, regcache with a size cap / TTL.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { waitFor } from '../support/process.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { copyToDir, dirDigests } from '../support/skopeo.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const LAYER = 200_000;
const CAP = 500_000;

async function storedDigests(cache: RunningRegcache): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const b of cache.app.storage.listBlobs()) out.set(b.digest, b.size);
  return out;
}

const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
const imageDigests = (img: BuiltImage) => [img.manifestDigest, ...img.blobs.map((b) => b.digest)];

describe('cache lifecycle: LRU eviction under a size cap, TTL expiry', () => {
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let work: string;
  const img: Record<'a' | 'b' | 'c' | 'big', BuiltImage> = {} as never;

  before(async () => {
    work = await makeTempDir('lifecycle-');
    upstream = await startRegistry();
    for (const k of ['a', 'b', 'c'] as const) {
      img[k] = await buildImage({ dir: join(work, k), layers: [LAYER], seed: `lru-${k}` });
      await pushImage(img[k], upstream.host, `lru/${k}:1`);
    }
    img.big = await buildImage({ dir: join(work, 'big'), layers: [24 * 1024 * 1024], seed: 'busy' });
    await pushImage(img.big, upstream.host, 'lru/big:1');
    proxy = await startFaultProxy(upstream.url);
  });

  after(async () => {
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  const pull = (cache: RunningRegcache, name: string) => copyToDir(`docker://${cache.host}/${name}`, join(work, `pull-${Math.random().toString(36).slice(2)}`));

  it('keeps the cache under maxsize, evicting least recently used images first, and re-fetches them on demand', async () => {
    const cache = await startRegcache({
      upstreamUrl: proxy.url,
      config: { regcache: { cache: { maxsize: CAP, lowwatermark: '90%' } } },
    });
    try {
      await pull(cache, 'lru/a:1');
      await pull(cache, 'lru/b:1');
      await pull(cache, 'lru/a:1'); // a is now more recently used than b
      await pull(cache, 'lru/c:1'); // over the cap: b must go
      await waitFor(async () => sum(await storedDigests(cache)) <= CAP * 0.9, { timeoutMs: 10_000, what: 'eviction below the low-water mark' });

      const stored = await storedDigests(cache);
      for (const d of imageDigests(img.a)) assert.ok(stored.has(d), `recently used image a lost ${d}`);
      for (const d of imageDigests(img.c)) assert.ok(stored.has(d), `newest image c lost ${d}`);
      for (const d of imageDigests(img.b)) assert.ok(!stored.has(d), `least recently used image b kept ${d}`);
      assert.equal(cache.app.lifecycle.index.totalBytes, sum(stored), 'index size agrees with storage');
      const catalog = (await (await fetch(`${cache.url}/v2/_catalog`)).json()) as { repositories: string[] };
      assert.deepEqual(catalog.repositories.sort(), ['lru/a', 'lru/c']);

      // b comes back transparently (fetched again), byte-identical; then a is the least recently used.
      proxy.reset();
      const again = join(work, 'b-again');
      await copyToDir(`docker://${cache.host}/lru/b:1`, again);
      const direct = join(work, 'b-direct');
      await copyToDir(`docker://${upstream.host}/lru/b:1`, direct);
      assert.deepEqual(await dirDigests(again), await dirDigests(direct));
      assert.equal(proxy.count({ method: 'GET', path: new RegExp(img.b.blobs[1]!.digest) }), 1, 'evicted layer fetched again once');
      await waitFor(async () => !(await storedDigests(cache)).has(img.a.blobs[1]!.digest), { timeoutMs: 10_000, what: 'eviction of a' });
      const after = await storedDigests(cache);
      assert.ok(sum(after) <= CAP, `cache ${sum(after)} bytes over the cap`);
      for (const d of [...imageDigests(img.b), ...imageDigests(img.c)]) assert.ok(after.has(d), `recent image lost ${d}`);

      const metrics = await cache.app.observability.metrics.prometheus();
      const evicted = /regcache_evicted_blobs_total\{reason="lru"\} (\d+)/.exec(metrics);
      assert.ok(evicted && Number(evicted[1]) >= 6, `eviction counted: ${evicted?.[0]}`);
    } finally {
      await cache.stop();
    }
  });

  it('never evicts a blob while it is being served', async () => {
    const cache = await startRegcache({ upstreamUrl: proxy.url });
    try {
      await pull(cache, 'lru/big:1');
      await pull(cache, 'lru/a:1');
      const layer = img.big.blobs[1]!;
      // A client that reads nothing: the server's stream stays open (24 MiB exceed the socket buffers).
      const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
        request(`${cache.url}/v2/lru/big/blobs/${layer.digest}`, resolve).on('error', reject).end();
      });
      res.pause();
      await waitFor(() => cache.app.proxy.blobs.isBusy(layer.digest), { what: 'blob being served' });
      const admin = cache.app.lifecycle.admin!;
      const first = await admin.prune({ maxSizeBytes: 0 });
      const stored = await storedDigests(cache);
      assert.ok(stored.has(layer.digest), 'blob being served was evicted');
      assert.ok(!stored.has(img.a.blobs[1]!.digest), 'idle image a was not evicted');
      assert.ok(first.planned.every((p) => !p.unit.includes(img.big.manifestDigest)), 'image in use was planned for removal');

      const hash = createHash('sha256');
      res.resume();
      for await (const c of res) hash.update(c as Buffer);
      assert.equal(`sha256:${hash.digest('hex')}`, layer.digest);
      await waitFor(() => !cache.app.proxy.blobs.isBusy(layer.digest), { what: 'stream closed' });
      await admin.prune({ maxSizeBytes: 0 });
      assert.equal((await storedDigests(cache)).size, 0, 'everything evicted once idle');
      assert.equal(cache.app.lifecycle.index.totalBytes, 0);
    } finally {
      await cache.stop();
    }
  });

  it('removes content older than proxy.ttl and fetches it again transparently', async () => {
    const cache = await startRegcache({ upstreamUrl: proxy.url, config: { proxy: { ttl: '2s' } } });
    try {
      const first = join(work, 'ttl-1');
      await copyToDir(`docker://${cache.host}/lru/c:1`, first);
      assert.ok((await storedDigests(cache)).has(img.c.blobs[1]!.digest), 'layer cached by the pull');
      await waitFor(async () => (await storedDigests(cache)).size === 0, { timeoutMs: 10_000, what: 'TTL expiry' });
      assert.equal(cache.app.lifecycle.index.totalBytes, 0);
      const tagFile = await cache.app.storage.getObject(`repositories/${cache.config.upstreams[0]!.name}/lru/c/_tags/1`);
      assert.equal(tagFile, null, 'tag removed with its image');

      proxy.reset();
      const second = join(work, 'ttl-2');
      await copyToDir(`docker://${cache.host}/lru/c:1`, second);
      assert.deepEqual(await dirDigests(second), await dirDigests(first));
      assert.equal(proxy.count({ method: 'GET', path: /\/manifests\// }), 1, 'manifest fetched again');
      assert.equal(proxy.count({ method: 'GET', path: /\/blobs\// }), 2, 'config and layer fetched again');
    } finally {
      await cache.stop();
    }
  });
});
