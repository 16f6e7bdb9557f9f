// Serving blobs from S3 storage: streamed with Range support, or (storage.redirect, on by default as in
// distribution) answered with a 307 to a presigned URL once the blob is stored.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { copyToDir, dirDigests } from '../support/skopeo.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { startS3, type RunningS3 } from './s3server.js';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await request(url, { headers });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body };
}

describe('serving from s3 storage', () => {
  let work: string;
  let upstream: RunningRegistry;
  let s3: RunningS3;
  let img: BuiltImage;
  let redirecting: RunningRegcache;
  let streaming: RunningRegcache;

  before(async () => {
    work = await makeTempDir('s3-serving-');
    [upstream, s3] = await Promise.all([startRegistry(), startS3()]);
    img = await buildImage({ dir: join(work, 'img'), layers: [7 * 1024 * 1024, 50_000], seed: 's3-serving' });
    await pushImage(img, upstream.host, 'team/app:1');
    redirecting = await startRegcache({ upstreamUrl: upstream.url, config: { storage: { s3: s3.yaml('/redirecting') } } });
    streaming = await startRegcache({
      upstreamUrl: upstream.url,
      config: { storage: { s3: s3.yaml('/streaming'), redirect: { disable: true } } },
    });
  });

  after(async () => {
    await redirecting?.stop();
    await streaming?.stop();
    await Promise.all([upstream?.stop(), s3?.stop()]);
    if (work) await removeDir(work);
  });

  it('streams a miss, then redirects to a presigned URL that serves the bytes and ranges', async () => {
    const layer = img.manifests[0]!.layers[0]!;
    const url = `${redirecting.url}/v2/team/app/blobs/${layer.digest}`;
    const miss = await get(url);
    assert.equal(miss.status, 200);
    assert.equal(sha256(miss.body), layer.digest);

    const hit = await request(url);
    await hit.body.dump();
    assert.equal(hit.statusCode, 307);
    assert.equal(hit.headers['docker-content-digest'], layer.digest);
    assert.equal(hit.headers['cache-control'], 'no-store', 'a presigned URL expires: the redirect must not be cached');
    const location = String(hit.headers.location);
    assert.ok(location.startsWith(`${s3.endpoint}/`) && location.includes('X-Amz-Signature='), location);

    const direct = await get(location);
    assert.equal(direct.status, 200);
    assert.equal(sha256(direct.body), layer.digest);
    const part = await get(location, { range: 'bytes=100-199' });
    assert.equal(part.status, 206);
    assert.ok(part.body.equals(direct.body.subarray(100, 200)));

    const head = await request(url, { method: 'HEAD' });
    await head.body.dump();
    assert.equal(head.statusCode, 200, 'HEAD is answered by the cache');
    assert.equal(head.headers['content-length'], String(layer.size));
  });

  it('skopeo pulls through a redirecting cache byte-identical to a direct pull', async () => {
    const via = join(work, 'via');
    const direct = join(work, 'direct');
    await copyToDir(`docker://${redirecting.host}/team/app:1`, via);
    await copyToDir(`docker://${upstream.host}/team/app:1`, direct);
    assert.deepEqual(await dirDigests(via), await dirDigests(direct));
  });

  it('with storage.redirect.disable streams stored blobs from S3, honouring Range', async () => {
    const layer = img.manifests[0]!.layers[0]!;
    const url = `${streaming.url}/v2/team/app/blobs/${layer.digest}`;
    const first = await get(url);
    assert.equal(sha256(first.body), layer.digest);
    const again = await get(url);
    assert.equal(again.status, 200);
    assert.equal(again.headers['content-length'], String(layer.size));
    assert.equal(sha256(again.body), layer.digest);
    const tail = await get(url, { range: `bytes=${layer.size - 1000}-` });
    assert.equal(tail.status, 206);
    assert.equal(tail.headers['content-range'], `bytes ${layer.size - 1000}-${layer.size - 1}/${layer.size}`);
    assert.ok(tail.body.equals(first.body.subarray(layer.size - 1000)));
    const mid = await get(url, { range: 'bytes=5242000-5243999' }); // across the 5 MiB part boundary
    assert.equal(mid.status, 206);
    assert.ok(mid.body.equals(first.body.subarray(5242000, 5244000)));
  });
});
