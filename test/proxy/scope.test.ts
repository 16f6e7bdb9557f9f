// Blobs are scoped like distribution's repository links: a blob stored once is served for repository R of
// upstream U only when U/R is known to reference it; otherwise it is a miss on U, so U's credentials,
// allow-list and errors apply. Real registries: a public one and a private one (htpasswd).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { streamDigest } from '../support/digest.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { copyToDir } from '../support/skopeo.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const USER = 'robot';
const PASSWORD = 'private-pw-123';

async function blob(url: string, method: 'GET' | 'HEAD' = 'GET'): Promise<{ status: number; digest?: string; code?: string }> {
  const res = await request(url, { method });
  if (res.statusCode >= 400) {
    const text = await res.body.text();
    return { status: res.statusCode, code: text ? (JSON.parse(text) as { errors: Array<{ code: string }> }).errors[0]!.code : undefined };
  }
  if (method === 'HEAD') {
    await res.body.dump();
    return { status: res.statusCode };
  }
  return { status: res.statusCode, digest: (await streamDigest(res.body)).digest };
}

describe('blob scoping (repository links)', () => {
  let pub: RunningRegistry;
  let priv: RunningRegistry;
  let pubProxy: FaultProxy;
  let privProxy: FaultProxy;
  let cache: RunningRegcache;
  let work: string;
  let secret: BuiltImage;
  let open: BuiltImage;
  let secretLayer: string;

  before(async () => {
    work = await makeTempDir('scope-');
    [pub, priv] = await Promise.all([startRegistry(), startRegistry({ htpasswd: { username: USER, password: PASSWORD } })]);
    secret = await buildImage({ dir: join(work, 'secret'), layers: [40_000, 3000], seed: 'scope-secret' });
    // Shares its first layer with nothing private; a second, public image shares the secret image's base.
    open = await buildImage({ dir: join(work, 'open'), layers: [20_000], seed: 'scope-open' });
    await pushImage(secret, priv.host, 'corp/app:1', { creds: `${USER}:${PASSWORD}` });
    await pushImage(open, pub.host, 'team/tool:1');
    [pubProxy, privProxy] = await Promise.all([startFaultProxy(pub.url), startFaultProxy(priv.url)]);
    cache = await startRegcache({
      config: {
        regcache: {
          upstreams: [
            { name: 'public', remoteurl: pubProxy.url, prefix: ['pub'], allow: ['team/*'] },
            { name: 'private', remoteurl: privProxy.url, prefix: ['priv'], username: USER, password: PASSWORD },
          ],
        },
      },
    });
    await copyToDir(`docker://${cache.host}/priv/corp/app:1`, join(work, 'pulled-secret'));
    await copyToDir(`docker://${cache.host}/pub/team/tool:1`, join(work, 'pulled-open'));
    secretLayer = secret.manifests[0]!.layers[0]!.digest;
  });

  after(async () => {
    await cache?.stop();
    await Promise.all([pubProxy?.stop(), privProxy?.stop(), pub?.stop(), priv?.stop()]);
    if (work) await removeDir(work);
  });

  it('serves a cached blob for the repository that references it, without asking upstream', async () => {
    privProxy.reset();
    assert.deepEqual(await blob(`${cache.url}/v2/priv/corp/app/blobs/${secretLayer}`), { status: 200, digest: secretLayer });
    assert.deepEqual(await blob(`${cache.url}/v2/priv/corp/app/blobs/${secretLayer}`, 'HEAD'), { status: 200 });
    assert.equal(privProxy.requests.length, 0, 'a hit costs no upstream request');
  });

  it("a private blob is not served under another upstream's allowed name: that upstream answers", async () => {
    pubProxy.reset();
    assert.deepEqual(await blob(`${cache.url}/v2/pub/team/anything/blobs/${secretLayer}`), { status: 404, code: 'BLOB_UNKNOWN' });
    assert.deepEqual(await blob(`${cache.url}/v2/pub/team/anything/blobs/${secretLayer}`, 'HEAD'), { status: 404, code: undefined });
    assert.ok(pubProxy.count({ path: new RegExp(`/v2/team/anything/blobs/${secretLayer}`) }) >= 1, 'the public upstream was asked');
  });

  it('nor under another repository of the same private upstream that does not hold it', async () => {
    privProxy.reset();
    const other = await blob(`${cache.url}/v2/priv/corp/other/blobs/${secretLayer}`);
    assert.equal(other.status, 404);
    assert.equal(other.code, 'BLOB_UNKNOWN');
    assert.ok(privProxy.count({ path: new RegExp(`/v2/corp/other/blobs/`) }) >= 1, 'the private upstream was asked, with its credentials');
  });

  it("the allow-list of the upstream still applies (DENIED before any blob lookup)", async () => {
    const res = await blob(`${cache.url}/v2/pub/evil/x/blobs/${secretLayer}`);
    assert.deepEqual(res, { status: 403, code: 'DENIED' });
  });

  it('a blob the upstream confirms for a repository is served from the one stored copy, no second download', async () => {
    // The private image pushed to the public registry too: the same layer under public/team/copy.
    await pushImage(secret, pub.host, 'team/copy:1');
    pubProxy.reset();
    assert.deepEqual(await blob(`${cache.url}/v2/pub/team/copy/blobs/${secretLayer}`), { status: 200, digest: secretLayer });
    assert.equal(pubProxy.count({ method: 'GET', path: /\/blobs\// }), 0, 'not downloaded again');
    assert.equal(pubProxy.count({ method: 'HEAD', path: /\/blobs\// }), 1, 'one HEAD confirmed it');
    assert.deepEqual(await blob(`${cache.url}/v2/pub/team/copy/blobs/${secretLayer}`), { status: 200, digest: secretLayer });
    assert.equal(pubProxy.requests.length, 1, 'the confirmation is remembered');
  });
});
