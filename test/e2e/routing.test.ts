// containerd configured the usual way (hosts.toml for docker.io pointing at the mirror, so every request
// carries ?ns=docker.io) pulls through regcache whose upstream is a plain distribution, not Docker Hub:
// - one upstream: served whatever ns= says, as distribution does; the first mismatch logged once at info;
// - a declared Docker Hub mirror (regcache.dockerhub for the proxy: upstream): answers ns=docker.io next
//   to other upstreams, and single-component names get library/;
// - several upstreams, none standing for docker.io: refused with an OCI error naming the config key.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { startRegcache, type RunningRegcache, TEST_WORKERS } from '../support/regcache.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { canRunContainerd, containerdPullThroughMirror, startContainerd, type Containerd } from '../support/containerd.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { skipUnless } from '../support/skips.js';

const REF = 'docker.io/library/routefixture:1';

async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await res.json()) as { errors: Array<{ code: string; message: string }> };
  return { status: res.status, code: body.errors[0]!.code, message: body.errors[0]!.message };
}

describe('containerd with a docker.io hosts.toml, through a non-Hub upstream', { skip: skipUnless(canRunContainerd(), 'containerd', 'needs root, containerd and ctr') }, () => {
  let upstream: RunningRegistry;
  let other: RunningRegistry;
  let img: BuiltImage;
  let ctrd: Containerd;
  let work: string;

  before(async () => {
    work = await makeTempDir('regcache-routing-');
    [upstream, other] = await Promise.all([startRegistry(), startRegistry()]);
    img = await buildImage({ dir: join(work, 'img'), layers: [4096, 1500], seed: 'routing' });
    await pushImage(img, upstream.host, 'library/routefixture:1');
    ctrd = await startContainerd();
  });
  after(async () => {
    await ctrd?.stop();
    await Promise.all([upstream?.stop(), other?.stop()]);
    if (work) await removeDir(work);
  });

  test('one upstream: ns=docker.io is served from it, the mismatch logged once at info', async () => {
    const cache: RunningRegcache = await startRegcache({ upstreamUrl: upstream.url });
    try {
      const digest = await containerdPullThroughMirror(ctrd, cache.url, ['docker.io'], REF);
      assert.equal(digest, img.manifestDigest);
      const served = cache.logs.filter((l) => l.msg === 'request' && String(l.query ?? '').includes('ns=docker.io') && l.status === 200);
      assert.ok(served.length >= 3, `manifest and blobs served with ns=docker.io: ${served.length}`);
      const notes = cache.logs.filter((l) => String(l.msg).startsWith('a client asked for another registry'));
      // once per process: with several workers, at most once by each of them
      assert.ok(notes.length >= 1 && notes.length <= TEST_WORKERS, `logged once, not per request: ${notes.length}`);
      assert.equal(new Set(notes.map((n) => n.worker)).size, notes.length, 'at most once per worker');
      assert.equal(notes[0]!.level, 30, 'at info');
      assert.equal(notes[0]!.ns, 'docker.io');
    } finally {
      await cache.stop();
    }
  });

  test('a declared Docker Hub mirror (regcache.dockerhub on proxy:) answers ns=docker.io beside another upstream', async () => {
    const cache = await startRegcache({
      upstreamUrl: upstream.url,
      config: { regcache: { dockerhub: true, upstreams: [{ name: 'ghcr.io', remoteurl: other.url }] } },
    });
    try {
      const digest = await containerdPullThroughMirror(ctrd, cache.url, ['docker.io'], REF);
      assert.equal(digest, img.manifestDigest);
      // Single-component names get library/, as on Docker Hub.
      const res = await fetch(`${cache.url}/v2/routefixture/manifests/1?ns=docker.io`, { headers: { Accept: img.mediaType } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('docker-content-digest'), img.manifestDigest);
      await res.arrayBuffer();
      assert.equal(cache.logs.filter((l) => String(l.msg).startsWith('a client asked for another registry')).length, 0);
    } finally {
      await cache.stop();
    }
  });

  test('several upstreams, none standing for docker.io: refused with the config key that fixes it', async () => {
    // The same repository exists on the other registry: it must not be served in docker.io's name.
    await pushImage(img, other.host, 'library/routefixture:1');
    const cache = await startRegcache({
      upstreamUrl: upstream.url,
      config: { regcache: { upstreams: [{ name: 'ghcr.io', remoteurl: other.url }] } },
    });
    try {
      await assert.rejects(containerdPullThroughMirror(ctrd, cache.url, ['docker.io'], 'docker.io/library/routefixture:1'));
      const refused = cache.logs.filter((l) => l.msg === 'request' && String(l.query ?? '').includes('ns=docker.io'));
      assert.ok(refused.length > 0 && refused.every((l) => l.status === 404), JSON.stringify(refused));
      const e = await errorOf(await fetch(`${cache.url}/v2/library/routefixture/manifests/1?ns=docker.io`));
      assert.equal(e.status, 404);
      assert.equal(e.code, 'NAME_UNKNOWN');
      assert.match(e.message, /regcache\.dockerhub/);
      assert.match(e.message, /regcache\.upstreams\[\]\.hosts/);
      const q = await errorOf(await fetch(`${cache.url}/v2/library/routefixture/manifests/1?ns=quay.io`));
      assert.equal(q.code, 'NAME_UNKNOWN');
      assert.match(q.message, /"quay\.io".*regcache\.hosts for the proxy: upstream, regcache\.upstreams\[\]\.hosts/);
    } finally {
      await cache.stop();
    }
  });
});
