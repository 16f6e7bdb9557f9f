// End-to-end: real distribution upstream, real skopeo client, regcache in between.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';
import { readdir } from 'node:fs/promises';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { buildImage, buildMultiArchImage, pushImage, type BuiltImage } from '../support/images.js';
import { copyToDir, dirDigests, inspectRaw, skopeo } from '../support/skopeo.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const BLOB_PATH = /\/blobs\/sha256:/;
const MANIFEST_PATH = /\/manifests\//;

describe('pull through regcache (skopeo, distribution upstream)', () => {
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let cache: RunningRegcache;
  let work: string;
  let small: BuiltImage;
  let five: BuiltImage;
  let multi: BuiltImage;
  let v2s2: BuiltImage;

  before(async () => {
    work = await makeTempDir('e2e-pull-');
    upstream = await startRegistry();
    small = await buildImage({ dir: join(work, 'small'), layers: [4096], seed: 'small' });
    five = await buildImage({ dir: join(work, 'five'), layers: [300_000, 200_000, 100_000, 50_000, 2_000_000], seed: 'five' });
    multi = await buildMultiArchImage({
      dir: join(work, 'multi'),
      seed: 'multi',
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
      layers: [10_000],
    });
    v2s2 = await buildImage({ dir: join(work, 'v2s2'), layers: [20_000, 30_000], seed: 'v2s2' });
    await pushImage(small, upstream.host, 'library/small:1');
    await pushImage(five, upstream.host, 'team/five:1.0');
    await pushImage(multi, upstream.host, 'team/multi:latest', { all: true });
    await pushImage(v2s2, upstream.host, 'team/v2s2:1', { format: 'v2s2' });
    proxy = await startFaultProxy(upstream.url);
    cache = await startRegcache({ upstreamUrl: proxy.url, config: { regcache: { freshness: '1h' } } });
  });

  after(async () => {
    await cache?.stop();
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  async function pullAndCompare(ref: string, opts: { all?: boolean } = {}): Promise<Map<string, string>> {
    const viaCache = join(work, `via-${Math.random().toString(36).slice(2)}`);
    const direct = join(work, `direct-${Math.random().toString(36).slice(2)}`);
    await copyToDir(`docker://${cache.host}/${ref}`, viaCache, opts);
    await copyToDir(`docker://${upstream.host}/${ref}`, direct, opts);
    const a = await dirDigests(viaCache);
    const b = await dirDigests(direct);
    assert.deepEqual(a, b, `pull of ${ref} through the cache differs from a direct pull`);
    return a;
  }

  it('serves GET /v2/ with the API version header', async () => {
    const res = await fetch(`${cache.url}/v2/`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
    assert.deepEqual(await res.json(), {});
  });

  it('pulls every kind of image byte-identical to a direct pull', async () => {
    await pullAndCompare('library/small:1');
    await pullAndCompare('team/five:1.0');
    await pullAndCompare('team/multi:latest', { all: true });
    const files = await pullAndCompare('team/v2s2:1');
    assert.ok(files.size >= 4, 'files.size >= 4');
    const raw = await inspectRaw(`docker://${cache.host}/team/v2s2:1`);
    assert.equal(JSON.parse(raw.toString()).mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  });

  it('serves manifests with upstream bytes, content type and digest; HEAD and GET agree', async () => {
    for (const [repo, img] of [
      ['team/multi', multi],
      ['team/five', five],
    ] as const) {
      const url = `${cache.url}/v2/${repo}/manifests/${img.manifestDigest}`;
      const get = await fetch(url, { headers: { Accept: img.mediaType } });
      assert.equal(get.status, 200);
      const body = Buffer.from(await get.arrayBuffer());
      assert.equal(get.headers.get('docker-content-digest'), img.manifestDigest);
      assert.equal(get.headers.get('content-type'), img.mediaType);
      assert.equal(Number(get.headers.get('content-length')), body.length);
      const upstreamBytes = Buffer.from(await (await fetch(`${upstream.url}/v2/${repo}/manifests/${img.manifestDigest}`, { headers: { Accept: img.mediaType } })).arrayBuffer());
      assert.ok(body.equals(upstreamBytes), 'body.equals(upstreamBytes)');
      const head = await fetch(url, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('docker-content-digest'), img.manifestDigest);
      assert.equal(head.headers.get('content-length'), String(body.length));
    }
  });

  it('makes no upstream request for a warm pull within the freshness window', async () => {
    await pullAndCompare('team/five:1.0');
    proxy.reset();
    const dest = join(work, 'warm');
    await copyToDir(`docker://${cache.host}/team/five:1.0`, dest);
    assert.equal(proxy.count(), 0, `upstream saw: ${JSON.stringify(proxy.requests.map((r) => `${r.method} ${r.path}`))}`);
  });

  it('answers Range requests with 206 and the right bytes', async () => {
    const layer = five.manifests[0]!.layers[4]!;
    const full = Buffer.from(await (await fetch(`${cache.url}/v2/team/five/blobs/${layer.digest}`)).arrayBuffer());
    assert.equal(full.length, layer.size);
    const res = await fetch(`${cache.url}/v2/team/five/blobs/${layer.digest}`, { headers: { Range: 'bytes=100-1099' } });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get('content-range'), `bytes 100-1099/${layer.size}`);
    const part = Buffer.from(await res.arrayBuffer());
    assert.ok(part.equals(full.subarray(100, 1100)), 'part.equals(full.subarray(100, 1100))');
    const suffix = await fetch(`${cache.url}/v2/team/five/blobs/${layer.digest}`, { headers: { Range: 'bytes=-10' } });
    assert.equal(suffix.status, 206);
    assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(full.subarray(full.length - 10)), 'Buffer.from(await suffix.arrayBuffer()).equals(full.subarray(full.l...');
    const bad = await fetch(`${cache.url}/v2/team/five/blobs/${layer.digest}`, { headers: { Range: `bytes=${layer.size}-` } });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers.get('content-range'), `bytes */${layer.size}`);
  });

  it('HEAD on an uncached blob asks upstream with HEAD only and stores nothing', async () => {
    const layer = v2s2.manifests[0]!.layers[0]!;
    const fresh = await startRegcache({ upstreamUrl: proxy.url });
    try {
      proxy.reset();
      const res = await fetch(`${fresh.url}/v2/team/v2s2/blobs/${layer.digest}`, { method: 'HEAD' });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-length'), String(layer.size));
      assert.equal(proxy.count({ method: 'GET' }), 0);
      assert.equal(proxy.count({ method: 'HEAD', path: BLOB_PATH }), 1);
      assert.equal(await fresh.app.storage.statBlob(layer.digest), null);
    } finally {
      await fresh.stop();
    }
  });

  it('revalidates a tag after the freshness window with one HEAD and no GET', async () => {
    const fresh = await startRegcache({ upstreamUrl: proxy.url, config: { regcache: { freshness: '0s' } } });
    try {
      await copyToDir(`docker://${fresh.host}/team/five:1.0`, join(work, 'reval-1'));
      proxy.reset();
      const res = await fetch(`${fresh.url}/v2/team/five/manifests/1.0`, { headers: { Accept: five.mediaType } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('docker-content-digest'), five.manifestDigest);
      assert.equal(proxy.count({ method: 'HEAD', path: MANIFEST_PATH }), 1);
      assert.equal(proxy.count({ method: 'GET' }), 0);
    } finally {
      await fresh.stop();
    }
  });

  it('never stores or completes a blob whose bytes do not match its digest', async () => {
    const fresh = await startRegcache({ upstreamUrl: proxy.url });
    const layer = five.manifests[0]!.layers[0]!;
    try {
      proxy.setRules([{ method: 'GET', path: new RegExp(layer.digest), fault: { kind: 'corrupt' } }]);
      const res = await fetch(`${fresh.url}/v2/team/five/blobs/${layer.digest}`).catch((e: Error) => e);
      if (!(res instanceof Error)) {
        // Headers may already be out; the body must then fail rather than complete.
        const body = await res.arrayBuffer().catch((e: Error) => e);
        assert.ok(body instanceof Error || res.status >= 500, 'corrupt blob was delivered as complete');
      }
      assert.equal(await fresh.app.storage.statBlob(layer.digest), null);
      proxy.clearRules();
      const ok = await fetch(`${fresh.url}/v2/team/five/blobs/${layer.digest}`);
      assert.equal(ok.status, 200);
      assert.equal((await ok.arrayBuffer()).byteLength, layer.size);
      assert.deepEqual(await fresh.app.storage.statBlob(layer.digest), { size: layer.size });
    } finally {
      proxy.clearRules();
      await fresh.stop();
    }
  });

  it('refuses pushes with 405 UNSUPPORTED', async () => {
    const post = await fetch(`${cache.url}/v2/team/new/blobs/uploads/`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal((await post.json()).errors[0].code, 'UNSUPPORTED');
    const put = await fetch(`${cache.url}/v2/team/five/manifests/evil`, { method: 'PUT', body: '{}' });
    assert.equal(put.status, 405);
    const del = await fetch(`${cache.url}/v2/team/five/manifests/${five.manifestDigest}`, { method: 'DELETE' });
    assert.equal(del.status, 405);
    await assert.rejects(
      skopeo(['copy', '--dest-tls-verify=false', `oci:${small.layoutDir}:${small.ref}`, `docker://${cache.host}/team/pushed:1`], { timeoutMs: 60_000 }),
      /405|UNSUPPORTED|unsupported/i,
    );
  });

  it('validates names and references with OCI error codes', async () => {
    const cases: Array<[string, number, string]> = [
      ['/v2/Team/Upper/manifests/1', 400, 'NAME_INVALID'],
      ['/v2/team/..%2F..%2Fetc/manifests/1', 400, 'NAME_INVALID'],
      ['/v2/team/five/blobs/sha256:abc', 400, 'DIGEST_INVALID'],
      ['/v2/team/five/manifests/sha256:zz', 400, 'DIGEST_INVALID'],
      ['/v2/team/five/manifests/nope', 404, 'MANIFEST_UNKNOWN'],
      [`/v2/team/five/blobs/sha256:${'0'.repeat(64)}`, 404, 'BLOB_UNKNOWN'],
    ];
    for (const [path, status, code] of cases) {
      const res = await fetch(cache.url + path);
      assert.equal(res.status, status, path);
      assert.equal((await res.json()).errors[0].code, code, path);
    }
  });

  it('lists tags (proxied) and the catalog (what is cached), with pagination', async () => {
    const tags = await fetch(`${cache.url}/v2/team/five/tags/list`);
    assert.equal(tags.status, 200);
    assert.deepEqual((await tags.json()).tags, ['1.0']);
    const cat = await (await fetch(`${cache.url}/v2/_catalog`)).json();
    for (const r of ['library/small', 'team/five', 'team/multi', 'team/v2s2']) assert.ok(cat.repositories.includes(r), r);
    const page = await fetch(`${cache.url}/v2/_catalog?n=1`);
    assert.equal((await page.json()).repositories.length, 1);
    assert.match(page.headers.get('link') ?? '', /rel="next"/);
  });

  it('keeps serving cached content when the upstream is down, and fails fast for the rest', async () => {
    const own = await startFaultProxy(upstream.url);
    const fresh = await startRegcache({ upstreamUrl: own.url, config: { regcache: { freshness: '0s' } } });
    try {
      await copyToDir(`docker://${fresh.host}/team/five:1.0`, join(work, 'down-1'));
      await fetch(`${fresh.url}/v2/team/five/tags/list`);
      own.setRules([{ fault: { kind: 'status', status: 503 } }]);
      await pullAndCompareFrom(fresh, 'team/five:1.0', join(work, 'down-2'));
      await pullAndCompareFrom(fresh, `team/five@${five.manifestDigest}`, join(work, 'down-3'));
      const tags = await fetch(`${fresh.url}/v2/team/five/tags/list`);
      assert.equal(tags.status, 200);
      assert.deepEqual((await tags.json()).tags, ['1.0']);
      assert.ok(fresh.logs.some((l) => /stale/.test(String(l.msg))), 'stale serve is logged');
      const miss = await fetch(`${fresh.url}/v2/team/multi/manifests/latest`);
      assert.ok(miss.status === 503 || miss.status === 502, `status ${miss.status}`);
      assert.ok((await miss.json()).errors[0].code, '(await miss.json()).errors[0].code');
      await own.stop();
      const t0 = Date.now();
      const refused = await fetch(`${fresh.url}/v2/team/multi/manifests/latest`);
      assert.ok(refused.status >= 500, 'refused.status >= 500');
      assert.ok(Date.now() - t0 < 10_000, 'Date.now() - t0 < 10_000');
      await pullAndCompareFrom(fresh, 'team/five:1.0', join(work, 'down-4'));
    } finally {
      await fresh.stop();
      await own.stop();
    }
  });

  async function pullAndCompareFrom(c: RunningRegcache, ref: string, dest: string): Promise<void> {
    await copyToDir(`docker://${c.host}/${ref}`, dest);
    const names = await readdir(dest);
    assert.ok(names.includes('manifest.json'), 'names.includes(\'manifest.json\')');
    const digests = await dirDigests(dest);
    for (const l of five.manifests[0]!.layers) assert.ok([...digests.values()].includes(l.digest), '[...digests.values()].includes(l.digest)');
  }
});
