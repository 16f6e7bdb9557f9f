// One regcache, three real upstream registries: routing by containerd's ns=, by path prefix and by
// listener; shared layers stored once; allow/deny lists.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { copyToDir, dirDigests } from '../support/skopeo.js';
import { freePort } from '../support/ports.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

describe('one instance, many upstreams', () => {
  let hub: RunningRegistry;
  let ghcr: RunningRegistry;
  let quay: RunningRegistry;
  let cache: RunningRegcache;
  let quayPort: number;
  let work: string;
  let hubImg: BuiltImage;
  let ghcrImg: BuiltImage;
  let quayImg: BuiltImage;

  before(async () => {
    work = await makeTempDir('multi-');
    [hub, ghcr, quay] = await Promise.all([startRegistry(), startRegistry(), startRegistry()]);
    // Same seed and sizes → identical layer blobs on hub and ghcr (different tags/repos around them).
    hubImg = await buildImage({ dir: join(work, 'hub'), layers: [50_000, 7000], seed: 'shared' });
    ghcrImg = await buildImage({ dir: join(work, 'ghcr'), layers: [50_000, 7000], seed: 'shared', platform: { os: 'linux', architecture: 'arm64' } });
    quayImg = await buildImage({ dir: join(work, 'quay'), layers: [9000], seed: 'quay' });
    await pushImage(hubImg, hub.host, 'library/app:1');
    await pushImage(ghcrImg, ghcr.host, 'owner/app:1');
    await pushImage(ghcrImg, ghcr.host, 'secret/app:1');
    await pushImage(quayImg, quay.host, 'org/tool:2');
    quayPort = await freePort();
    cache = await startRegcache({
      config: {
        regcache: {
          upstreams: [
            { name: 'docker.io', remoteurl: hub.url, hosts: ['docker.io'], dockerhub: true, allow: ['library/*', 'myorg/*'] },
            { name: 'ghcr.io', remoteurl: ghcr.url, prefix: ['ghcr.io', 'ghcr'], hosts: ['ghcr.io'], deny: ['secret/*'] },
            { name: 'quay.io', remoteurl: quay.url, hosts: ['quay.io'], addr: `127.0.0.1:${quayPort}` },
          ],
        },
      },
    });
  });

  after(async () => {
    await cache?.stop();
    await Promise.all([hub?.stop(), ghcr?.stop(), quay?.stop()]);
    if (work) await removeDir(work);
  });

  async function manifestDigest(url: string, accept: string): Promise<{ status: number; digest: string | null; code?: string }> {
    const res = await fetch(url, { headers: { Accept: accept } });
    const out = { status: res.status, digest: res.headers.get('docker-content-digest') };
    if (res.status >= 400) return { ...out, code: ((await res.json()) as { errors: Array<{ code: string }> }).errors[0]!.code };
    await res.arrayBuffer();
    return out;
  }

  it('routes by containerd ns= to the configured upstream', async () => {
    const a = await manifestDigest(`${cache.url}/v2/library/app/manifests/1?ns=docker.io`, hubImg.mediaType);
    assert.deepEqual(a, { status: 200, digest: hubImg.manifestDigest });
    const b = await manifestDigest(`${cache.url}/v2/owner/app/manifests/1?ns=ghcr.io`, ghcrImg.mediaType);
    assert.deepEqual(b, { status: 200, digest: ghcrImg.manifestDigest });
    const unknown = await manifestDigest(`${cache.url}/v2/owner/app/manifests/1?ns=registry.example.com`, ghcrImg.mediaType);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.code, 'NAME_UNKNOWN');
  });

  it('routes by path prefix (host name or alias) — skopeo pulls mirror/ghcr.io/owner/app', async () => {
    for (const prefix of ['ghcr.io', 'ghcr']) {
      const dest = join(work, `prefix-${prefix}`);
      await copyToDir(`docker://${cache.host}/${prefix}/owner/app:1`, dest);
      const direct = join(work, `direct-${prefix}`);
      await copyToDir(`docker://${ghcr.host}/owner/app:1`, direct);
      assert.deepEqual(await dirDigests(dest), await dirDigests(direct));
    }
  });

  it('routes by listener: the quay.io upstream on its own port', async () => {
    const dest = join(work, 'quay-pull');
    await copyToDir(`docker://127.0.0.1:${quayPort}/org/tool:2`, dest);
    const digests = await dirDigests(dest);
    assert.ok([...digests.values()].includes(quayImg.manifests[0]!.layers[0]!.digest), '[...digests.values()].includes(quayImg.manifests[0]!.layers[0]!.dig...');
  });

  it('single names get library/ on a Docker Hub upstream', async () => {
    const r = await manifestDigest(`${cache.url}/v2/app/manifests/1`, hubImg.mediaType);
    assert.deepEqual(r, { status: 200, digest: hubImg.manifestDigest });
  });

  it('enforces allow and deny lists with DENIED', async () => {
    const notAllowed = await manifestDigest(`${cache.url}/v2/someone/else/manifests/1`, hubImg.mediaType);
    assert.equal(notAllowed.status, 403);
    assert.equal(notAllowed.code, 'DENIED');
    const denied = await manifestDigest(`${cache.url}/v2/ghcr.io/secret/app/manifests/1`, ghcrImg.mediaType);
    assert.equal(denied.status, 403);
    assert.equal(denied.code, 'DENIED');
  });

  it('stores identical layers once and keeps manifests of different upstreams apart', async () => {
    await copyToDir(`docker://${cache.host}/library/app:1`, join(work, 'hub-pull'));
    await copyToDir(`docker://${cache.host}/ghcr.io/owner/app:1`, join(work, 'ghcr-pull'));
    const layer = hubImg.manifests[0]!.layers[0]!.digest;
    assert.equal(layer, ghcrImg.manifests[0]!.layers[0]!.digest, 'fixture: the layer is shared');
    const hex = layer.slice('sha256:'.length);
    const files = await readdir(join(cache.root, 'blobs', 'sha256', hex.slice(0, 2)));
    assert.deepEqual(files.filter((f) => f === hex), [hex]);
    const repos = await readdir(join(cache.root, 'repositories'));
    assert.deepEqual(repos.sort(), ['docker.io', 'ghcr.io', 'quay.io']);
  });

  it('lists cached repositories with their upstream prefix in /v2/_catalog', async () => {
    const cat = (await (await fetch(`${cache.url}/v2/_catalog`)).json()) as { repositories: string[] };
    for (const r of ['library/app', 'ghcr.io/owner/app', 'quay.io/org/tool']) assert.ok(cat.repositories.includes(r), `${r} in ${cat.repositories}`);
  });
});
