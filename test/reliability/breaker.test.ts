// The upstream circuit breaker end to end: a real registry behind the fault proxy, which stalls (accepts and
// never answers). Once the breaker is open, cached content (a stale tag included) is answered at once, misses get
// 503 at once, and nothing reaches the upstream but the half-open probe. docs/reliability.md "Circuit breaker".
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAX_OPEN_MS, OPEN_MS } from '../../src/upstream/breaker.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { waitFor } from '../support/process.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { scrape, value } from '../observability/prom.js';
import { ociErrorCode, request, type Outcome } from './support.js';

/** Generous bound for an answer while the breaker is open (the headers timeout below is 2 s). */
const FAST_MS = 1000;

describe('upstream circuit breaker (stalled upstream)', () => {
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let cache: RunningRegcache;
  let work: string;
  let app: BuiltImage;
  const cold: BuiltImage[] = [];
  let name: string;

  before(async () => {
    work = await makeTempDir('reliability-breaker-');
    upstream = await startRegistry();
    app = await buildImage({ dir: join(work, 'app'), layers: [40_000], seed: 'breaker-app' });
    await pushImage(app, upstream.host, 'team/app:1');
    for (let i = 0; i < 3; i++) {
      cold.push(await buildImage({ dir: join(work, `cold${i}`), layers: [20_000], seed: `breaker-cold-${i}` }));
      await pushImage(cold[i]!, upstream.host, `team/cold${i}:1`);
    }
    proxy = await startFaultProxy(upstream.url);
    cache = await startRegcache({
      upstreamUrl: proxy.url,
      config: {
        http: { debug: { addr: '127.0.0.1:0', prometheus: { enabled: true, path: '/metrics' } } },
        // freshness 0s: every request for the tag revalidates upstream, so while it stalls the tag is stale
        regcache: { freshness: '0s', timeouts: { connect: '1s', headers: '2s', idle: '2s' } },
      },
    });
    name = cache.config.upstreams[0]!.name;
  });

  after(async () => {
    await cache?.stop();
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  const state = async () => value(await scrape(`${cache.app.debugUrl}/metrics`), 'regcache_upstream_breaker_state', { upstream: name });
  const openings = async () =>
    value(await scrape(`${cache.app.debugUrl}/metrics`), 'regcache_upstream_breaker_openings_total', { upstream: name });
  const vars = async () => {
    const doc = (await (await fetch(`${cache.app.debugUrl}/debug/vars`)).json()) as {
      regcache: { upstreams: Record<string, { breaker: { state: string; openings: number; retryInMs: number } | null }> };
    };
    return doc.regcache.upstreams[name]!.breaker!;
  };
  const timed = async (path: string, headers: Record<string, string> = {}): Promise<Outcome & { ms: number }> => {
    const t0 = performance.now();
    const o = await request(cache.url + path, { headers });
    return { ...o, ms: performance.now() - t0 };
  };
  const coldBlob = (i: number) => `/v2/team/cold${i}/blobs/${cold[i]!.manifests[0]!.layers[0]!.digest}`;
  const coldTag = (i: number) => `/v2/team/cold${i}/manifests/1`;
  const appLayer = () => app.manifests[0]!.layers[0]!;

  it('opens after repeated timeouts; cache answered and misses refused at once; only the probe goes upstream', async (t) => {
    assert.equal(OPEN_MS, 5000);
    // warm: the tag and a layer are cached
    assert.equal((await timed('/v2/team/app/manifests/1', { accept: app.mediaType })).status, 200);
    assert.equal((await timed(`/v2/team/app/blobs/${appLayer().digest}`)).status, 200);
    assert.equal(await state(), 0, 'closed');
    assert.equal((await vars()).state, 'closed');

    // the upstream accepts connections and never answers
    proxy.reset();
    proxy.setRules([{ fault: { kind: 'stall' } }]);
    // five requests time out (headers, 2 s each): five consecutive failures open the breaker
    const trip = await Promise.all([coldBlob(0), coldBlob(1), coldBlob(2), coldTag(0), coldTag(1)].map((p) => timed(p)));
    for (const o of trip) assert.equal(o.status, 503, o.body.toString());
    assert.equal(await state(), 1, 'open');
    assert.equal(await openings(), 1);
    const v = await vars();
    assert.equal(v.state, 'open');
    assert.ok(v.retryInMs > 0 && v.retryInMs <= OPEN_MS, `retryInMs ${v.retryInMs}`);

    // while open: nothing reaches the upstream, whatever clients ask
    const mark = proxy.requests.length;
    const times = { staleTag: 0, cachedBlob: 0, uncachedBlob: 0, uncachedTag: 0 };
    for (let round = 0; round < 5; round++) {
      const tag = await timed('/v2/team/app/manifests/1', { accept: app.mediaType });
      assert.equal(tag.status, 200, `stale tag: ${tag.body.toString()}`);
      assert.equal(tag.headers['docker-content-digest'], app.manifestDigest);
      const blob = await timed(`/v2/team/app/blobs/${appLayer().digest}`);
      assert.equal(blob.status, 200);
      const missBlob = await timed(coldBlob(round % 3));
      assert.equal(missBlob.status, 503);
      assert.equal(ociErrorCode(missBlob, 'uncached blob'), 'UNAVAILABLE');
      assert.ok(Number(missBlob.headers['retry-after']) >= 1, 'Retry-After until the probe');
      const missTag = await timed(coldTag(round % 3));
      assert.equal(missTag.status, 503);
      assert.equal(ociErrorCode(missTag, 'uncached tag'), 'UNAVAILABLE');
      times.staleTag = Math.max(times.staleTag, tag.ms);
      times.cachedBlob = Math.max(times.cachedBlob, blob.ms);
      times.uncachedBlob = Math.max(times.uncachedBlob, missBlob.ms);
      times.uncachedTag = Math.max(times.uncachedTag, missTag.ms);
    }
    t.diagnostic(`slowest answer while open (ms): ${JSON.stringify(Object.fromEntries(Object.entries(times).map(([k, ms]) => [k, Math.round(ms)])))}`);
    for (const [what, ms] of Object.entries(times)) assert.ok(ms < FAST_MS, `${what} took ${Math.round(ms)} ms while open`);
    assert.equal(proxy.requests.length, mark, '20 client requests while open: no upstream request');
    assert.equal(await state(), 1, 'still open');

    // after the window: exactly one request goes through as the probe (and stalls); the others are refused at once
    await waitFor(async () => (await vars()).retryInMs === 0, { timeoutMs: OPEN_MS + 2000, intervalMs: 50, what: 'the end of the back-off window' });
    const probe = timed(coldBlob(0));
    await waitFor(() => proxy.requests.length === mark + 1, { what: 'the probe to reach the upstream' });
    assert.equal(await state(), 2, 'half-open while the probe is in flight');
    const during = await Promise.all([coldBlob(1), coldTag(2), '/v2/team/app/manifests/1'].map((p) => timed(p, { accept: app.mediaType })));
    assert.deepEqual(during.map((o) => o.status), [503, 503, 200]);
    for (const o of during) assert.ok(o.ms < FAST_MS, `took ${Math.round(o.ms)} ms during the probe`);
    assert.equal((await probe).status, 503, 'the probe timed out');
    assert.equal(proxy.requests.length, mark + 1, 'only the probe reached the upstream');
    assert.equal(await state(), 1, 're-opened after the failed probe');
    assert.equal(await openings(), 2);
    const reopened = await vars();
    assert.ok(reopened.retryInMs > OPEN_MS && reopened.retryInMs <= Math.min(2 * OPEN_MS, MAX_OPEN_MS), `longer back-off: ${reopened.retryInMs} ms`);

    // the upstream recovers: the next probe (after the longer window) closes the breaker
    proxy.clearRules();
    const beforeRecovery = proxy.requests.length;
    let polls = 0;
    await waitFor(
      async () => {
        polls++;
        return (await timed(coldBlob(1))).status === 200;
      },
      { timeoutMs: 2 * OPEN_MS + 5000, intervalMs: 250, what: 'a miss to be fetched after the upstream recovered' },
    );
    assert.ok(polls > 5, `requests were refused until the window ended (${polls} polls)`);
    assert.equal(proxy.requests.length, beforeRecovery + 1, `${polls} polls, one upstream request (the successful probe)`);
    assert.equal(await state(), 0, 'closed again');
    assert.equal((await vars()).state, 'closed');
    const fresh = await timed(coldTag(2), { accept: cold[2]!.mediaType });
    assert.equal(fresh.status, 200, 'misses are fetched again');
  });

  it('answers are not outages: 404, 429 and 500 never open the breaker', async () => {
    proxy.clearRules();
    const samples = await scrape(`${cache.app.debugUrl}/metrics`);
    assert.ok(samples.some((s) => s.name === 'regcache_upstream_breaker_state' && s.labels.upstream === name), 'state exported');
    const before = await openings();
    for (let i = 0; i < 8; i++) assert.equal((await timed(`/v2/team/nothing${i}/manifests/1`)).status, 404);
    proxy.setRules([{ fault: { kind: 'status', status: 429, headers: { 'retry-after': '3' } } }]);
    for (let i = 0; i < 8; i++) assert.equal((await timed(`/v2/team/rl${i}/manifests/1`)).status, 429);
    proxy.setRules([{ fault: { kind: 'status', status: 500 } }]);
    for (let i = 0; i < 8; i++) assert.equal((await timed(`/v2/team/err${i}/manifests/1`)).status, 502);
    proxy.clearRules();
    assert.equal(await state(), 0);
    assert.equal(await openings(), before);
  });
});
