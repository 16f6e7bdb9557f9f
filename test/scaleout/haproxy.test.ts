// Scale-out end to end: 3 regcache processes sharing one S3 bucket and one Redis, haproxy round-robining in
// front, distribution's docker-registry (behind a counting fault proxy) as upstream. Once per S3 implementation:
// s3rver as users get it, and moto's S3 server.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { stringify } from 'yaml';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { waitFor } from '../support/process.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { freePort, startRegcacheProcess } from '../support/regcache.js';
import { copyToDir, dirDigests } from '../support/skopeo.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import type { RunningS3 } from '../storage/s3server.js';
import { S3_IMPLEMENTATIONS } from '../storage/s3impls.js';
import { skipUnless } from '../support/skips.js';
import { startHaproxy, type RunningHaproxy } from './support/haproxy.js';
import { startRedis, type RunningRedis } from './support/redis.js';

const ROOT = 'scaleout';
const PART = 5 * 1024 * 1024;
/** regcache.freshness of the replicas: short, so that a test can let a tag's freshness expire. */
const FRESHNESS_MS = 3000;

type Replica = Awaited<ReturnType<typeof startRegcacheProcess>> & { spool: string; port: number; debugUrl: string };

const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

const sha256hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A pull over HTTP: the manifest by tag, then its config and layers, each checked against its digest. */
async function pullHttp(base: string, repo: string, tag: string): Promise<string> {
  const get = async (path: string, accept?: string): Promise<Buffer> => {
    let res = await request(`${base}/v2/${repo}/${path}`, { headers: accept ? { accept } : {} });
    if (res.statusCode === 307) {
      // A stored blob: the presigned S3 URL (storage.redirect).
      await res.body.dump();
      res = await request(String(res.headers.location));
    }
    const body = Buffer.from(await res.body.arrayBuffer());
    assert.equal(res.statusCode, 200, `GET ${path}: ${body.toString().slice(0, 200)}`);
    return body;
  };
  const bytes = await get(`manifests/${tag}`, ACCEPT);
  const m = JSON.parse(bytes.toString()) as { config: { digest: string }; layers: Array<{ digest: string }> };
  for (const d of [m.config.digest, ...m.layers.map((l) => l.digest)]) {
    assert.equal(`sha256:${sha256hex(await get(`blobs/${d}`))}`, d);
  }
  return `sha256:${sha256hex(bytes)}`;
}

async function prometheus(debugUrl: string): Promise<string> {
  const res = await request(`${debugUrl}/metrics`);
  return res.body.text();
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

for (const impl of S3_IMPLEMENTATIONS) {
  describe(`3 replicas behind haproxy over s3 (${impl.name}) + redis (real processes)`, { skip: skipUnless(impl.available(), impl.name, `${impl.name} is not installed (scripts/moto.sh)`) }, () => {
    let work: string;
    let upstream: RunningRegistry;
    let proxy: FaultProxy;
    let s3: RunningS3;
    let redis: RunningRedis;
    let redisClient: Redis;
    let lb: RunningHaproxy;
    let app: BuiltImage;
    let big: BuiltImage;
    const replicas: Replica[] = [];

    async function startReplica(i: number, ports?: { port: number; debugPort: number }): Promise<Replica> {
      const port = ports?.port ?? (await freePort());
      const debugPort = ports?.debugPort ?? (await freePort());
      const tmp = await makeTempDir(`scaleout-r${i}-`);
      const configYaml = stringify({
        version: 0.1,
        log: { level: 'info', formatter: 'json', accesslog: { disabled: true } },
        storage: { s3: { ...s3.yaml(`/${ROOT}`), chunksize: PART } },
        http: { addr: `127.0.0.1:${port}`, draintimeout: '30s', debug: { addr: `127.0.0.1:${debugPort}`, prometheus: { enabled: true } } },
        proxy: { remoteurl: proxy.url },
        redis: { addr: redis.addr },
        regcache: { freshness: `${FRESHNESS_MS}ms`, timeouts: { connect: '2s', headers: '10s', idle: '10s' } },
      });
      // Own TMPDIR per replica: its spool directory shows which replica is downloading.
      const r = await startRegcacheProcess({ configYaml, port, env: { TMPDIR: tmp } });
      return {
        ...r,
        port,
        debugUrl: `http://127.0.0.1:${debugPort}`,
        spool: join(tmp, 'regcache-spool'),
        stop: async () => (await r.stop(), await removeDir(tmp)),
      };
    }

    /** Every blob object in the bucket must hash to the digest its key names: nothing partial is ever visible. */
    async function assertBucketVerified(): Promise<number> {
      const objects = await s3.objects(`${ROOT}/blobs/`);
      for (const [key, bytes] of objects) {
        const hex = key.split('/').pop()!;
        assert.equal(sha256hex(bytes), hex, `object ${key} matches its digest`);
      }
      return objects.size;
    }

    const blobKey = (digest: string) => `${ROOT}/blobs/sha256/${digest.slice(7, 9)}/${digest.slice(7)}`;
    const manifestRequests = () => proxy.count({ path: /\/manifests\// });

    before(async () => {
      work = await makeTempDir('scaleout-e2e-');
      [upstream, s3, redis] = await Promise.all([startRegistry(), impl.start(), startRedis()]);
      redisClient = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true, maxRetriesPerRequest: 1 });
      redisClient.on('error', () => {}); // the last test kills redis-server
      await redisClient.connect();
      const layers = [3 * 1024 * 1024, 6 * 1024 * 1024, 64 * 1024];
      app = await buildImage({ dir: join(work, 'app'), layers, seed: `scaleout-app-${impl.name}` });
      big = await buildImage({ dir: join(work, 'big'), layers: [9 * 1024 * 1024], seed: `scaleout-big-${impl.name}` });
      await pushImage(app, upstream.host, 'team/app:1');
      await pushImage(big, upstream.host, 'team/big:1');
      proxy = await startFaultProxy(upstream.url);
      // Replica 0 first, so that it is the eviction sweeper's leader (the lease exists before the others campaign).
      replicas.push(await startReplica(0));
      await waitFor(async () => (await redisClient.exists('regcache:lock:leader:sweeper')) === 1, { what: 'replica 0 leading the sweeper' });
      replicas.push(...(await Promise.all([1, 2].map((i) => startReplica(i)))));
      // /readyz: a replica that loses Redis is drained; the backups keep serving when all of them lose it.
      lb = await startHaproxy(replicas.map((r) => r.port), { checkPath: '/readyz', backups: true });
    });

    after(async () => {
      redisClient?.disconnect();
      await lb?.stop();
      await Promise.all(replicas.map((r) => r.stop()));
      await proxy?.stop();
      await Promise.all([upstream?.stop(), s3?.stop(), redis?.stop()]);
      if (work) await removeDir(work);
    });

    it('12 concurrent cold pulls: one upstream GET per blob across all replicas, all byte-identical', async () => {
      const direct = join(work, 'app-direct');
      await copyToDir(`docker://${upstream.host}/team/app:1`, direct);
      proxy.reset();
      // Slow upstream blob responses, so the replicas' requests for a blob overlap.
      proxy.setRules([{ method: 'GET', path: /\/blobs\//, fault: { kind: 'delay', ms: 300 } }]);

      const dirs = Array.from({ length: 12 }, (_, i) => join(work, `app-${i}`));
      await Promise.all(dirs.map((d) => copyToDir(`docker://${lb.host}/team/app:1`, d, { timeoutMs: 120_000 })));
      const want = await dirDigests(direct);
      for (const d of dirs) assert.deepEqual(await dirDigests(d), want, `pull into ${d}`);

      for (const b of app.blobs) {
        assert.equal(proxy.count({ method: 'GET', path: new RegExp(`/blobs/${b.digest}`) }), 1, `upstream GETs of ${b.digest}`);
      }
      // The cold manifest: one GET for the cluster (the tag's lease holder), and its HEAD of the tag.
      console.log(`[scale-out report] ${impl.name}: 12 cold pulls through 3 replicas with redis: ${manifestRequests()} upstream manifest request(s)`);
      assert.ok(manifestRequests() <= 2, `upstream manifest requests: ${manifestRequests()}`);
      assert.ok((await assertBucketVerified()) >= app.blobs.length);
      assert.deepEqual(await s3.uploads(), []);
      proxy.clearRules();
    });

    it('30 concurrent pulls of a tag after its freshness expired: at most 2 upstream manifest requests for the cluster', async (t) => {
      await pullHttp(lb.url, 'team/app', '1');
      // Let the tag's freshness lapse on every replica (a time-based contract, not synchronisation).
      await sleep(FRESHNESS_MS + 200);
      proxy.reset();
      proxy.setRules([{ path: /\/manifests\//, fault: { kind: 'delay', ms: 300 } }]);
      const digests = await Promise.all(Array.from({ length: 30 }, () => pullHttp(lb.url, 'team/app', '1')));
      proxy.clearRules();
      assert.deepEqual(new Set(digests), new Set([app.manifests[0]!.digest]));
      const n = manifestRequests();
      t.diagnostic(`upstream manifest requests with redis (${impl.name}): ${n}`);
      console.log(`[scale-out report] ${impl.name}: 30 pulls of an expired tag through 3 replicas with redis: ${n} upstream manifest request(s)`);
      assert.ok(n >= 1 && n <= 2, `upstream manifest requests: ${n}`);
    });

    it('eviction by cluster-wide use: an image pulled only through replica 2 survives the leader\'s size-cap eviction, a colder one goes', async () => {
      const hot = await buildImage({ dir: join(work, 'hot'), layers: [1024 * 1024], seed: `scaleout-hot-${impl.name}` });
      const cold = await buildImage({ dir: join(work, 'cold'), layers: [1024 * 1024], seed: `scaleout-cold-${impl.name}` });
      await pushImage(hot, upstream.host, 'team/hot:1');
      await pushImage(cold, upstream.host, 'team/cold:1');
      const [leader, , r2] = replicas as [Replica, Replica, Replica];
      // hot: fetched first, through replica 2 only; cold: fetched later, through the leader; then hot used again
      // on replica 2. By fetch time (or by the leader's own accesses) hot is the colder one.
      await pullHttp(r2.url, 'team/hot', '1');
      await pullHttp(leader.url, 'team/cold', '1');
      const hotId = `${proxy.host}/team/hot@${hot.manifests[0]!.digest}`;
      const coldId = `${proxy.host}/team/cold@${cold.manifests[0]!.digest}`;
      await waitFor(async () => (await redisClient.zscore('regcache:access', coldId)) !== null, { what: 'the leader noting cold cluster-wide' });
      const coldAt = Number(await redisClient.zscore('regcache:access', coldId));
      await waitFor(async () => (await pullHttp(r2.url, 'team/hot', '1'), Number(await redisClient.zscore('regcache:access', hotId)) > coldAt), {
        timeoutMs: 20_000,
        intervalMs: 500,
        what: 'replica 2 noting hot cluster-wide, after cold',
      });

      // A size cap that one of the two images fits in: everything older goes (the earlier tests' images), then
      // the colder of the two.
      const cap = 1024 * 1024 + 64 * 1024;
      const res = await request(`${leader.debugUrl}/admin/cache/prune`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ maxSizeBytes: cap }),
      });
      const report = (await res.body.json()) as { planned: Array<{ unit: string }> };
      assert.equal(res.statusCode, 200, JSON.stringify(report));
      const planned = report.planned.map((p) => p.unit);
      assert.ok(planned.includes(coldId), `cold is evicted: ${JSON.stringify(planned)}`);
      assert.ok(!planned.includes(hotId), `hot survives: ${JSON.stringify(planned)}`);
      const keys = new Set((await s3.objects(`${ROOT}/blobs/`)).keys());
      assert.ok(keys.has(blobKey(hot.manifests[0]!.layers[0]!.digest)), 'hot layer kept');
      assert.ok(!keys.has(blobKey(cold.manifests[0]!.layers[0]!.digest)), 'cold layer removed');
      assert.equal(await pullHttp(lb.url, 'team/hot', '1'), hot.manifests[0]!.digest);
    });

    it('a replica killed mid-download: the pull completes after a retry, nothing partial is visible', async () => {
      proxy.reset();
      const layer = big.manifests[0]!.layers[0]!;
      const layerKey = blobKey(layer.digest);
      // The first upstream fetch of the layer trickles (~3 MiB/s), the takeover's runs at full speed.
      const drip = { kind: 'drip', bytesPerTick: 64 * 1024, tickMs: 20 } as const;
      proxy.setRules([{ method: 'GET', path: new RegExp(`/blobs/${layer.digest}`), fault: drip, times: 1 }]);
      const pull = (n: number) => copyToDir(`docker://${lb.host}/team/big:1`, join(work, `big-${n}`), { timeoutMs: 120_000 });
      const first = pull(0).then(
        () => true,
        () => false,
      );

      // The downloading replica is the one with a spool file past the first S3 part (a multipart upload is open).
      let victim: number | undefined;
      await waitFor(
        async () => {
          for (const [i, r] of replicas.entries()) {
            for (const f of await readdir(r.spool).catch(() => [] as string[])) {
              if (((await stat(join(r.spool, f)).catch(() => undefined))?.size ?? 0) > PART + 512 * 1024) victim = i;
            }
          }
          return victim !== undefined;
        },
        { timeoutMs: 60_000, intervalMs: 20, what: 'a replica downloading the big layer' },
      );
      const killed = replicas[victim!]!;
      process.kill(killed.proc.pid, 'SIGKILL');
      await killed.proc.exited;

      assert.ok((await s3.uploads()).includes(layerKey), 'the killed download left an incomplete multipart upload');
      assert.equal((await s3.objects(layerKey)).size, 0, 'which is not visible as an object');
      await assertBucketVerified();

      let ok = await first;
      for (let attempt = 1; !ok && attempt <= 3; attempt++) {
        ok = await pull(attempt).then(
          () => true,
          (e: Error) => (attempt === 3 ? Promise.reject(e) : false),
        );
      }
      assert.ok(ok);
      const direct = join(work, 'big-direct');
      await copyToDir(`docker://${upstream.host}/team/big:1`, direct);
      const attempts = (await readdir(work)).filter((n) => /^big-\d+$/.test(n)).sort();
      const last = join(work, attempts[attempts.length - 1]!);
      assert.deepEqual(await dirDigests(last), await dirDigests(direct));

      // The killed replica's fetch plus the one that took over after its lease expired; the direct pull is not counted.
      const cacheGets = proxy.requests.filter((r) => r.method === 'GET' && r.path.includes(`/blobs/${layer.digest}`)).length;
      assert.equal(cacheGets, 2, 'one fetch by the killed replica, one by the replica that took over');
      assert.equal(sha256hex((await s3.objects(layerKey)).get(layerKey)!), layer.digest.slice(7));
      await assertBucketVerified();

      // Back to three replicas on the same addresses (haproxy's servers).
      await killed.stop();
      replicas[victim!] = await startReplica(victim!, { port: killed.port, debugPort: Number(new URL(killed.debugUrl).port) });
    });

    it('a rolling restart during 12 concurrent pulls: every pull succeeds, byte-identical', async () => {
      const img = await buildImage({ dir: join(work, 'roll'), layers: [2 * 1024 * 1024, 1024 * 1024, 32 * 1024], seed: `scaleout-roll-${impl.name}` });
      await pushImage(img, upstream.host, 'team/roll:1');
      const direct = join(work, 'roll-direct');
      await copyToDir(`docker://${upstream.host}/team/roll:1`, direct);
      // Slow blobs: the pulls are still running while the replicas restart.
      proxy.setRules([{ method: 'GET', path: /\/blobs\//, fault: { kind: 'delay', ms: 1500 } }]);
      const dirs = Array.from({ length: 12 }, (_, i) => join(work, `roll-${i}`));
      const pulls = Promise.allSettled(dirs.map((d) => copyToDir(`docker://${lb.host}/team/roll:1`, d, { timeoutMs: 120_000 })));
      await waitFor(() => proxy.count({ method: 'GET', path: /\/blobs\// }) > 0, { timeoutMs: 30_000, what: 'the pulls under way' });
      for (let i = 0; i < replicas.length; i++) {
        const old = replicas[i]!;
        // SIGTERM: /readyz fails at once (haproxy stops sending), in-flight requests finish, then it exits.
        await old.stop();
        replicas[i] = await startReplica(i, { port: old.port, debugPort: Number(new URL(old.debugUrl).port) });
      }
      const results = await pulls;
      proxy.clearRules();
      const failed = results.filter((r) => r.status === 'rejected');
      assert.deepEqual(failed.map((r) => String((r as PromiseRejectedResult).reason).slice(0, 300)), [], 'every pull succeeded');
      const want = await dirDigests(direct);
      for (const d of dirs) assert.deepEqual(await dirDigests(d), want, `pull into ${d}`);
      await assertBucketVerified();
    });

    it('redis killed mid-run: pulls keep working, replicas report not ready and count their fallbacks', async (t) => {
      const img = await buildImage({ dir: join(work, 'noredis'), layers: [3 * 1024 * 1024, 2 * 1024 * 1024, 16 * 1024], seed: `scaleout-noredis-${impl.name}` });
      await pushImage(img, upstream.host, 'team/noredis:1');
      const direct = join(work, 'noredis-direct');
      await copyToDir(`docker://${upstream.host}/team/noredis:1`, direct);
      proxy.reset();
      proxy.setRules([{ method: 'GET', path: /\/blobs\//, fault: { kind: 'delay', ms: 800 } }]);
      const dirs = Array.from({ length: 12 }, (_, i) => join(work, `noredis-${i}`));
      const pulls = Promise.all(dirs.map((d) => copyToDir(`docker://${lb.host}/team/noredis:1`, d, { timeoutMs: 120_000 })));
      await waitFor(() => proxy.count({ method: 'GET', path: /\/blobs\// }) > 0, { timeoutMs: 30_000, what: 'the pulls under way' });
      process.kill(redis.proc.pid, 'SIGKILL');
      await redis.proc.exited;
      await pulls;
      proxy.clearRules();
      const want = await dirDigests(direct);
      for (const d of dirs) assert.deepEqual(await dirDigests(d), want, `pull into ${d}`);

      const gets = img.blobs.map((b) => proxy.count({ method: 'GET', path: new RegExp(`/blobs/${b.digest}`) }));
      // At worst one fetch per replica and blob (in-process coalescing still holds).
      for (const n of gets) assert.ok(n >= 1 && n <= replicas.length, `upstream GETs of a blob: ${n}`);
      const duplicates = gets.reduce((s, n) => s + n - 1, 0);

      // Readiness reflects Redis; /v2/ keeps serving.
      for (const r of replicas) {
        const ready = await request(`${r.url}/readyz`);
        assert.equal(ready.statusCode, 503);
        assert.match(await ready.body.text(), /redis .* unreachable/);
      }
      const fallbacks = (await Promise.all(replicas.map(async (r) => metric(await prometheus(r.debugUrl), 'regcache_coordination_fallbacks_total')))).reduce((s, n) => s + n, 0);
      assert.ok(fallbacks > 0, `fallbacks counted: ${fallbacks}`);

      // The freshness scenario again without Redis: each replica revalidates for itself.
      await sleep(FRESHNESS_MS + 200);
      proxy.reset();
      proxy.setRules([{ path: /\/manifests\//, fault: { kind: 'delay', ms: 300 } }]);
      await Promise.all(Array.from({ length: 30 }, () => pullHttp(lb.url, 'team/noredis', '1')));
      proxy.clearRules();
      const manifests = manifestRequests();
      t.diagnostic(`without redis (${impl.name}): ${duplicates} duplicate blob GET(s), ${manifests} upstream manifest request(s) for 30 pulls, ${fallbacks} fallback(s)`);
      console.log(
        `[scale-out report] ${impl.name}: redis killed mid-run: 12 pulls all byte-identical, blob GETs ${JSON.stringify(gets)} ` +
          `(${duplicates} duplicate); 30 pulls of an expired tag without redis: ${manifests} upstream manifest request(s); fallbacks ${fallbacks}`,
      );
      assert.ok(manifests <= 2 * replicas.length, `without redis at most one revalidation per replica: ${manifests}`);
    });
  });
}
