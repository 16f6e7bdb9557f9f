// Scale-out end to end: 3 regcache processes sharing one S3 bucket (s3rver) and one Redis, haproxy
// round-robining in front, distribution's docker-registry (behind a counting fault proxy) as upstream.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { waitFor } from '../support/process.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { freePort, startRegcacheProcess } from '../support/regcache.js';
import { copyToDir, dirDigests } from '../support/skopeo.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { startS3, type RunningS3 } from '../storage/s3server.js';
import { startHaproxy, type RunningHaproxy } from './support/haproxy.js';
import { startRedis, type RunningRedis } from './support/redis.js';

const ROOT = 'scaleout';
const PART = 5 * 1024 * 1024;

type Replica = Awaited<ReturnType<typeof startRegcacheProcess>> & { spool: string };

describe('3 replicas behind haproxy over s3 + redis (real processes)', () => {
  let work: string;
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let s3: RunningS3;
  let redis: RunningRedis;
  let lb: RunningHaproxy;
  let app: BuiltImage;
  let big: BuiltImage;
  const replicas: Replica[] = [];

  async function startReplica(i: number): Promise<Replica> {
    const port = await freePort();
    const tmp = await makeTempDir(`scaleout-r${i}-`);
    const configYaml = stringify({
      version: 0.1,
      log: { level: 'info', formatter: 'json', accesslog: { disabled: true } },
      storage: { s3: { ...s3.yaml(`/${ROOT}`), chunksize: PART } },
      http: { addr: `127.0.0.1:${port}`, draintimeout: '2s' },
      proxy: { remoteurl: proxy.url },
      redis: { addr: redis.addr },
      regcache: { timeouts: { connect: '2s', headers: '10s', idle: '10s' } },
    });
    // Own TMPDIR per replica: its spool directory shows which replica is downloading.
    const r = await startRegcacheProcess({ configYaml, port, env: { TMPDIR: tmp } });
    return { ...r, spool: join(tmp, 'regcache-spool'), stop: async () => (await r.stop(), await removeDir(tmp)) };
  }

  /** Every blob object in the bucket must hash to the digest its key names: nothing partial is ever visible. */
  async function assertBucketVerified(): Promise<number> {
    const objects = await s3.objects(`${ROOT}/blobs/`);
    for (const [key, bytes] of objects) {
      const hex = key.split('/').pop()!;
      assert.equal(createHash('sha256').update(bytes).digest('hex'), hex, `object ${key} matches its digest`);
    }
    return objects.size;
  }

  before(async () => {
    work = await makeTempDir('scaleout-e2e-');
    [upstream, s3, redis] = await Promise.all([startRegistry(), startS3(), startRedis()]);
    const layers = [3 * 1024 * 1024, 6 * 1024 * 1024, 64 * 1024];
    app = await buildImage({ dir: join(work, 'app'), layers, seed: 'scaleout-app' });
    big = await buildImage({ dir: join(work, 'big'), layers: [9 * 1024 * 1024], seed: 'scaleout-big' });
    await pushImage(app, upstream.host, 'team/app:1');
    await pushImage(big, upstream.host, 'team/big:1');
    proxy = await startFaultProxy(upstream.url);
    replicas.push(...(await Promise.all([0, 1, 2].map(startReplica))));
    lb = await startHaproxy(replicas.map((r) => Number(new URL(r.url).port)));
  });

  after(async () => {
    await lb?.stop();
    await Promise.all(replicas.map((r) => r.stop()));
    await proxy?.stop();
    await Promise.all([upstream?.stop(), s3?.stop(), redis?.stop()]);
    if (work) await removeDir(work);
  });

  it('12 concurrent cold pulls: one upstream GET per blob across all replicas, all byte-identical', async () => {
    const direct = join(work, 'app-direct');
    await copyToDir(`docker://${upstream.host}/team/app:1`, direct);
    // Slow upstream blob responses, so the replicas' requests for a blob overlap.
    proxy.setRules([{ method: 'GET', path: /\/blobs\//, fault: { kind: 'delay', ms: 300 } }]);

    const dirs = Array.from({ length: 12 }, (_, i) => join(work, `app-${i}`));
    await Promise.all(dirs.map((d) => copyToDir(`docker://${lb.host}/team/app:1`, d, { timeoutMs: 120_000 })));
    const want = await dirDigests(direct);
    for (const d of dirs) assert.deepEqual(await dirDigests(d), want, `pull into ${d}`);

    for (const b of app.blobs) {
      assert.equal(proxy.count({ method: 'GET', path: new RegExp(`/blobs/${b.digest}`) }), 1, `upstream GETs of ${b.digest}`);
    }
    assert.ok((await assertBucketVerified()) >= app.blobs.length);
    assert.deepEqual(await s3.uploads(), []);
    proxy.clearRules();
  });

  it('a replica killed mid-download: the pull completes after a retry, nothing partial is visible', async () => {
    const layer = big.manifests[0]!.layers[0]!;
    const layerKey = `${ROOT}/blobs/sha256/${layer.digest.slice(7, 9)}/${layer.digest.slice(7)}`;
    // The first upstream fetch of the layer trickles (~3 MiB/s), the takeover's runs at full speed.
    const drip = { kind: 'drip', bytesPerTick: 64 * 1024, tickMs: 20 } as const;
    proxy.setRules([{ method: 'GET', path: new RegExp(`/blobs/${layer.digest}`), fault: drip, times: 1 }]);
    const pull = (n: number) => copyToDir(`docker://${lb.host}/team/big:1`, join(work, `big-${n}`), { timeoutMs: 120_000 });
    const first = pull(0).then(
      () => true,
      () => false,
    );

    // The downloading replica is the one with a spool file past the first S3 part (a multipart upload is open).
    let victim: Replica | undefined;
    await waitFor(
      async () => {
        for (const r of replicas) {
          for (const f of await readdir(r.spool).catch(() => [] as string[])) {
            if (((await stat(join(r.spool, f)).catch(() => undefined))?.size ?? 0) > PART + 512 * 1024) victim = r;
          }
        }
        return victim !== undefined;
      },
      { timeoutMs: 60_000, intervalMs: 20, what: 'a replica downloading the big layer' },
    );
    process.kill(victim!.proc.pid, 'SIGKILL');
    await victim!.proc.exited;

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
    assert.equal(createHash('sha256').update((await s3.objects(layerKey)).get(layerKey)!).digest('hex'), layer.digest.slice(7));
    await assertBucketVerified();
  });
});
