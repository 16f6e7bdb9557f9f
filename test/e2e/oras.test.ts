// The real oras CLI: artifacts (a signature and an SBOM) attached to an image on the upstream with
// `oras attach`, then discovered and pulled through regcache with `oras discover` / `oras pull`, byte-identical,
// and again with the upstream stopped (served from the cache). Two upstreams:
// - Debian's distribution 2.8, without the referrers API: oras attach falls back to the sha256-<hex> tag schema,
//   and through the mirror oras discover gets the spec's 404 and reads that tag;
// - an OCI 1.1 upstream with the API (test/support/referrers.ts): oras discover reads the referrers list.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startRegistry } from '../support/registry.js';
import { startReferrersUpstream } from '../support/referrers.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { haveOras, oras } from '../support/oras.js';
import { skipUnless } from '../support/skips.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const SIGNATURE = 'application/vnd.example.signature.v1';
const SBOM = 'application/vnd.example.sbom.v1';

interface Discovered {
  digest: string;
  referrers?: Array<{ digest: string; artifactType: string }>;
}

interface Upstream {
  host: string;
  /** tags of a repository, read from the upstream itself */
  tags(repo: string): Promise<string[]>;
  stop(): Promise<void>;
}

describe('oras through the mirror: attach on the upstream, discover and pull via regcache', { skip: skipUnless(haveOras(), 'oras', 'oras not built (scripts/tools.sh oras)') }, () => {
  let work: string;
  let img: BuiltImage;
  const files = { 'signature.json': '{"signature":"MEUCIQDexample"}\n', 'sbom.spdx.json': '{"spdxVersion":"SPDX-2.3","name":"app"}\n' };

  before(async () => {
    work = await makeTempDir('regcache-oras-');
    img = await buildImage({ dir: join(work, 'img'), layers: [4096], seed: 'oras-referrers' });
    for (const [name, content] of Object.entries(files)) await writeFile(join(work, name), content);
  });
  after(async () => {
    if (work) await removeDir(work);
  });

  /** `oras attach` both artifacts to <upstream>/app/x:1; returns their manifest digests. */
  async function attachBoth(up: Upstream, extra: string[]): Promise<{ sig: string; sbom: string }> {
    const attach = async (type: string, file: string, mediaType: string) => {
      const { stdout } = await oras(['attach', '--plain-http', ...extra, '--format', 'json', '--artifact-type', type, `${up.host}/app/x:1`, `${file}:${mediaType}`], { cwd: work });
      return (JSON.parse(stdout) as { digest: string }).digest;
    };
    return {
      sig: await attach(SIGNATURE, 'signature.json', 'application/vnd.example.signature.v1+json'),
      sbom: await attach(SBOM, 'sbom.spdx.json', 'application/spdx+json'),
    };
  }

  async function discover(cache: RunningRegcache, artifactType?: string): Promise<Array<[string, string]>> {
    const filter = artifactType ? ['--artifact-type', artifactType] : [];
    const { stdout } = await oras(['discover', '--plain-http', '--format', 'json', ...filter, `${cache.host}/app/x:1`]);
    const doc = JSON.parse(stdout) as Discovered;
    assert.equal(doc.digest, img.manifestDigest);
    return (doc.referrers ?? []).map((r) => [r.artifactType, r.digest] as [string, string]).sort();
  }

  /** `oras pull` one artifact by digest through the mirror; the file must be byte-identical to what was attached. */
  async function pullAndCompare(cache: RunningRegcache, digest: string, file: keyof typeof files, dir: string): Promise<void> {
    const out = join(work, dir);
    await oras(['pull', '--plain-http', '-o', out, `${cache.host}/app/x@${digest}`]);
    assert.ok((await readFile(join(out, file))).equals(Buffer.from(files[file])), `${file} pulled through the mirror differs`);
  }

  const requests = (cache: RunningRegcache) =>
    cache.logs.filter((l) => l.msg === 'request').map((l) => `${String(l.method)} ${String(l.path)} ${Number(l.status)}`);

  /**
   * The whole round: attach on the upstream, discover + pull through a regcache (freshness 0s: every
   * request revalidates), stop the upstream, discover + pull again through a new regcache on the same storage.
   */
  async function roundTrip(up: Upstream, attachFlags: string[], check: (cache: RunningRegcache, d: { sig: string; sbom: string }) => Promise<void>) {
    await pushImage(img, up.host, 'app/x:1');
    const d = await attachBoth(up, attachFlags);
    const root = await makeTempDir('regcache-oras-root-');
    try {
      const want = [[SBOM, d.sbom], [SIGNATURE, d.sig]].sort();
      const cache = await startRegcache({ upstreamUrl: `http://${up.host}`, root, config: { regcache: { freshness: '0s' } } });
      try {
        assert.deepEqual(await discover(cache), want);
        assert.deepEqual(await discover(cache, SBOM), [[SBOM, d.sbom]]);
        await pullAndCompare(cache, d.sig, 'signature.json', 'warm-sig');
        await pullAndCompare(cache, d.sbom, 'sbom.spdx.json', 'warm-sbom');
        await check(cache, d);
      } finally {
        await cache.app.close();
      }
      await up.stop();
      const offline = await startRegcache({ upstreamUrl: `http://${up.host}`, root, config: { regcache: { freshness: '0s' } } });
      try {
        assert.deepEqual(await discover(offline), want);
        assert.deepEqual(await discover(offline, SIGNATURE), [[SIGNATURE, d.sig]]);
        await pullAndCompare(offline, d.sig, 'signature.json', 'down-sig');
        await pullAndCompare(offline, d.sbom, 'sbom.spdx.json', 'down-sbom');
        assert.ok(offline.logs.some((l) => /stale|serving cached/.test(String(l.msg))), 'served stale from the cache');
      } finally {
        await offline.stop();
      }
    } finally {
      await removeDir(root);
    }
  }

  test('distribution 2.8 (no referrers API): the sha256-<hex> tag schema through the mirror, also with the upstream down', async () => {
    const reg = await startRegistry();
    const up: Upstream = {
      host: reg.host,
      tags: async (repo) => ((await (await fetch(`${reg.url}/v2/${repo}/tags/list`)).json()) as { tags: string[] }).tags,
      stop: () => reg.stop(),
    };
    try {
      const schemaTag = img.manifestDigest.replace(':', '-');
      // oras detects that 2.8 has no referrers API (no OCI-Subject on the manifest PUT) and keeps the index under the tag.
      await roundTrip(up, [], async (cache) => {
        assert.ok((await up.tags('app/x')).includes(schemaTag), 'oras attach used the tag schema on 2.8');
        const seen = requests(cache);
        assert.ok(seen.includes(`GET /v2/app/x/referrers/${img.manifestDigest} 404`), `no 404 referrers answer in ${JSON.stringify(seen)}`);
        assert.ok(seen.includes(`GET /v2/app/x/manifests/${schemaTag} 200`), `oras did not read the tag schema through the mirror: ${JSON.stringify(seen)}`);
      });
    } finally {
      await reg.stop();
    }
  });

  test('an OCI 1.1 upstream with the referrers API: the API through the mirror, also with the upstream down', async () => {
    const api = await startReferrersUpstream();
    const reg = api.registry;
    const up: Upstream = {
      host: api.host,
      tags: async (repo) => ((await (await fetch(`${reg.url}/v2/${repo}/tags/list`)).json()) as { tags: string[] }).tags,
      stop: () => api.stop(),
    };
    try {
      await roundTrip(up, [], async (cache) => {
        assert.deepEqual(await up.tags('app/x'), ['1'], 'oras attach used the referrers API (no sha256-<hex> tag)');
        const seen = requests(cache);
        assert.ok(seen.includes(`GET /v2/app/x/referrers/${img.manifestDigest} 200`), `no referrers answer in ${JSON.stringify(seen)}`);
        assert.ok(!seen.some((r) => r.includes('/manifests/sha256-')), 'no tag schema lookups');
        assert.ok(api.requests.some((r) => r.method === 'GET' && r.path.startsWith(`/v2/app/x/referrers/${img.manifestDigest}`)), 'the upstream was asked for its referrers');
      });
    } finally {
      await api.stop();
    }
  });
});
