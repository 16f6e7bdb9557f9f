// OCI 1.1 referrers through the mirror: from a referrers-capable upstream (an OCI 1.1 stand-in) with the artifactType filter, cached with the tag freshness rules and served stale when the
// upstream is down; from an upstream without the API (Debian's distribution 2.8), 404 as the spec says, so
// clients fall back to the sha256-<hex> tag schema, which the mirror serves as ordinary tags.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { startRegcache } from '../support/regcache.js';
import { startStandIn } from '../support/standin.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { sha256 } from '../support/digest.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const INDEX = 'application/vnd.oci.image.index.v1+json';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const EMPTY = Buffer.from('{}');

/** Pushes an artifact (one blob) whose subject is `subject`; optionally tagged. Returns its manifest digest. */
async function attach(reg: RunningRegistry, repo: string, subject: BuiltImage, artifactType: string, content: string, tag?: string): Promise<string> {
  const blob = Buffer.from(content);
  for (const b of [EMPTY, blob]) {
    const start = await fetch(`${reg.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    assert.equal(start.status, 202, await start.text());
    const loc = new URL(start.headers.get('location')!, reg.url);
    loc.searchParams.set('digest', sha256(b));
    const res = await fetch(loc, { method: 'PUT', headers: { 'Content-Type': 'application/octet-stream' }, body: b });
    assert.equal(res.status, 201, await res.text());
  }
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MANIFEST,
    artifactType,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(EMPTY), size: 2 },
    layers: [{ mediaType: 'text/plain', digest: sha256(blob), size: blob.length }],
    subject: { mediaType: subject.mediaType, digest: subject.manifestDigest, size: subject.manifestSize },
  }));
  const digest = sha256(manifest);
  const res = await fetch(`${reg.url}/v2/${repo}/manifests/${tag ?? digest}`, { method: 'PUT', headers: { 'Content-Type': MANIFEST }, body: manifest });
  assert.equal(res.status, 201, await res.text());
  return digest;
}

describe('referrers through the mirror', () => {
  let work: string;
  let img: BuiltImage;
  before(async () => {
    work = await makeTempDir('regcache-referrers-');
    img = await buildImage({ dir: join(work, 'img'), layers: [2048], seed: 'referrers' });
  });
  after(async () => {
    if (work) await removeDir(work);
  });

  // distribution v3.1.2 (the latest v3 release, built by scripts/tools.sh) has no referrers API either, so the
  // API path uses a small OCI 1.1 stand-in that answers it the way the spec says.
  test('a referrers-capable upstream: listed, filtered by artifactType, cached, served stale when it is down', async () => {
    const sig = { mediaType: MANIFEST, digest: sha256('sig-manifest'), size: 12, artifactType: 'application/vnd.example.signature' };
    const sbom = { mediaType: MANIFEST, digest: sha256('sbom-manifest'), size: 13, artifactType: 'application/vnd.example.sbom' };
    const up = await startStandIn((req, res) => {
      const m = /^\/v2\/(.+)\/referrers\/([^/?]+)/.exec(req.url!);
      if (!m) {
        res.writeHead(404).end();
        return;
      }
      const manifests = m[1] === 'app/x' && m[2] === img.manifestDigest ? [sig, sbom] : [];
      res.writeHead(200, { 'Content-Type': INDEX }).end(JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests }));
    });
    const cache = await startRegcache({ upstreamUrl: up.url, config: { regcache: { freshness: '1h' } } });
    try {
      const list = async (q = '') => {
        const res = await fetch(`${cache.url}/v2/app/x/referrers/${img.manifestDigest}${q}`);
        const body = (await res.json()) as { manifests?: Array<{ digest: string; artifactType: string }> };
        return { status: res.status, type: res.headers.get('content-type'), filters: res.headers.get('oci-filters-applied'), digests: (body.manifests ?? []).map((m) => m.digest).sort() };
      };
      assert.deepEqual(await list(), { status: 200, type: INDEX, filters: null, digests: [sig.digest, sbom.digest].sort() });
      assert.deepEqual(await list('?artifactType=application/vnd.example.sbom'), { status: 200, type: INDEX, filters: 'artifactType', digests: [sbom.digest] });
      const asked = () => up.requests.filter((r) => r.path.includes('/referrers/')).length;
      assert.equal(asked(), 1, 'within the freshness window the cached list answers every filter');
      // An unknown subject: an empty index, never 404 (the API is there).
      const none = await fetch(`${cache.url}/v2/app/x/referrers/sha256:${'0'.repeat(64)}`);
      assert.equal(none.status, 200);
      assert.deepEqual(((await none.json()) as { manifests: unknown[] }).manifests, []);
      const bad = await fetch(`${cache.url}/v2/app/x/referrers/sha256:nothex`);
      assert.equal(bad.status, 400);
      await bad.arrayBuffer();
    } finally {
      await cache.stop();
    }
    // Past the freshness window with the upstream down: the last list, logged as stale.
    const root = await makeTempDir('regcache-referrers-root-');
    try {
      const first = await startRegcache({ upstreamUrl: up.url, root, config: { regcache: { freshness: '0s' } } });
      assert.equal((await fetch(`${first.url}/v2/app/x/referrers/${img.manifestDigest}`)).status, 200);
      await first.app.close();
      await up.close();
      const second = await startRegcache({ upstreamUrl: up.url, root, config: { regcache: { freshness: '0s' } } });
      try {
        const res = await fetch(`${second.url}/v2/app/x/referrers/${img.manifestDigest}?artifactType=application/vnd.example.signature`);
        assert.equal(res.status, 200);
        assert.deepEqual(((await res.json()) as { manifests: Array<{ digest: string }> }).manifests.map((m) => m.digest), [sig.digest]);
        assert.ok(second.logs.some((l) => l.msg === 'upstream failed; serving cached referrers'), 'logged as stale');
      } finally {
        await second.stop();
      }
    } finally {
      await removeDir(root);
    }
  });

  test('an upstream without the API (distribution 2.8): 404, and the sha256-<hex> tag schema works as tags', async () => {
    const up = await startRegistry();
    const cache = await startRegcache({ upstreamUrl: up.url });
    try {
      await pushImage(img, up.host, 'app/y:1');
      const tag = img.manifestDigest.replace(':', '-');
      const artifact = await attach(up, 'app/y', img, 'application/vnd.example.signature', 'signature', tag);
      const res = await fetch(`${cache.url}/v2/app/y/referrers/${img.manifestDigest}`);
      assert.equal(res.status, 404);
      const body = (await res.json()) as { errors: Array<{ code: string; message: string }> };
      assert.match(body.errors[0]!.message, /no referrers API/);
      const viaTag = await fetch(`${cache.url}/v2/app/y/manifests/${tag}`, { headers: { Accept: MANIFEST } });
      assert.equal(viaTag.status, 200);
      assert.equal(viaTag.headers.get('docker-content-digest'), artifact);
      await viaTag.arrayBuffer();
      const tags = (await (await fetch(`${cache.url}/v2/app/y/tags/list`)).json()) as { tags: string[] };
      assert.ok(tags.tags.includes(tag));
    } finally {
      await cache.stop();
      await up.stop();
    }
  });
});
