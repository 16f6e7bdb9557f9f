// Several in-process replicas over one S3 bucket (s3rver) and one Redis: one upstream fetch per blob between
// them, and when Redis goes away they keep serving (from storage, and with local coalescing).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { sha256, streamDigest } from '../support/digest.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { startS3, type RunningS3 } from '../storage/s3server.js';
import { startRedis, type RunningRedis } from './support/redis.js';

async function getBlob(base: string, repo: string, digest: string): Promise<{ status: number; digest: string }> {
  const res = await request(`${base}/v2/${repo}/blobs/${digest}`);
  return { status: res.statusCode, digest: (await streamDigest(res.body)).digest };
}

describe('replicas sharing s3 + redis (in-process)', () => {
  let work: string;
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let s3: RunningS3;
  let redis: RunningRedis;
  let img: BuiltImage;
  let spare: BuiltImage;
  const replicas: RunningRegcache[] = [];

  before(async () => {
    work = await makeTempDir('scaleout-replicas-');
    [upstream, s3, redis] = await Promise.all([startRegistry(), startS3(), startRedis()]);
    img = await buildImage({ dir: join(work, 'img'), layers: [6 * 1024 * 1024, 300_000], seed: 'replicas' });
    spare = await buildImage({ dir: join(work, 'spare'), layers: [200_000], seed: 'replicas-spare' });
    await pushImage(img, upstream.host, 'team/app:1');
    await pushImage(spare, upstream.host, 'team/spare:1');
    proxy = await startFaultProxy(upstream.url);
    for (let i = 0; i < 3; i++) {
      replicas.push(
        await startRegcache({
          upstreamUrl: proxy.url,
          config: {
            storage: { s3: { ...s3.yaml('/replicas'), chunksize: 5 * 1024 * 1024 }, redirect: { disable: true } },
            redis: { addr: redis.addr },
          },
        }),
      );
    }
  });

  after(async () => {
    for (const r of replicas) await r.stop();
    await proxy?.stop();
    await Promise.all([upstream?.stop(), s3?.stop(), redis?.stop()]);
    if (work) await removeDir(work);
  });

  it('fetches each blob from upstream once across replicas, however the requests are spread', async () => {
    // Slow upstream blob responses so that every replica's request arrives while the first fetch runs.
    proxy.setRules([{ method: 'GET', path: /\/blobs\//, fault: { kind: 'delay', ms: 400 } }]);
    const blobs = img.blobs;
    const requests = blobs.flatMap((b) =>
      Array.from({ length: 9 }, (_, i) => getBlob(replicas[i % 3]!.url, 'team/app', b.digest).then((r) => ({ ...r, want: b.digest }))),
    );
    const results = await Promise.all(requests);
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.equal(r.digest, r.want);
    }
    for (const b of blobs) {
      assert.equal(proxy.count({ method: 'GET', path: new RegExp(`/blobs/${b.digest}`) }), 1, `upstream GETs of ${b.digest}`);
    }
    const stored = await s3.objects('replicas/blobs/');
    for (const b of blobs) {
      const bytes = stored.get(`replicas/blobs/sha256/${b.digest.slice(7, 9)}/${b.digest.slice(7)}`);
      assert.ok(bytes, `${b.digest} stored`);
      assert.equal(sha256(bytes), b.digest);
    }
    assert.deepEqual(await s3.uploads(), [], 'no multipart upload left behind');
    const coalescedAcrossReplicas = replicas
      .flatMap((r) => r.logs)
      .filter((l) => l.msg === 'blob is being fetched by another replica; waiting').length;
    assert.ok(coalescedAcrossReplicas >= 1, 'some replica waited for another one');
    proxy.clearRules();
  });

  it('keeps serving when Redis is down: stored blobs, and new ones with local coalescing', async () => {
    await redis.proc.stop();
    const before = proxy.count({ method: 'GET', path: /\/blobs\// });
    for (const r of replicas) {
      const cached = await getBlob(r.url, 'team/app', img.blobs[1]!.digest);
      assert.equal(cached.status, 200);
      assert.equal(cached.digest, img.blobs[1]!.digest);
    }
    assert.equal(proxy.count({ method: 'GET', path: /\/blobs\// }), before, 'stored blobs need no upstream');

    proxy.setRules([{ method: 'GET', path: /\/blobs\//, fault: { kind: 'delay', ms: 300 } }]);
    const layer = spare.manifests[0]!.layers[0]!.digest;
    const same = await Promise.all(Array.from({ length: 4 }, () => getBlob(replicas[0]!.url, 'team/spare', layer)));
    for (const r of same) assert.deepEqual(r, { status: 200, digest: layer });
    assert.equal(proxy.count({ method: 'GET', path: new RegExp(`/blobs/${layer}`) }), 1, 'one replica still coalesces locally');
    assert.ok(
      replicas[0]!.logs.some((l) => String(l.msg).includes('falling back to local coalescing')),
      'the degradation is logged',
    );
    proxy.clearRules();
  });
});
