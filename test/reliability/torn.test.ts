// A torn or empty small record in storage (tag, manifest link, tag list) is a cache miss that is refetched,
// not a permanent 500.
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';

async function get(url: string): Promise<{ status: number; digest?: string; body: string }> {
  const res = await request(url, { headers: { Accept: ACCEPT } });
  return { status: res.statusCode, digest: res.headers['docker-content-digest'] as string | undefined, body: await res.body.text() };
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath, e.name));
  return out;
}

describe('torn records in storage', () => {
  let upstream: RunningRegistry;
  let work: string;
  let img: BuiltImage;

  before(async () => {
    work = await makeTempDir('torn-');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [1000], seed: 'torn' });
    await pushImage(img, upstream.host, 'team/torn:1');
  });

  after(async () => {
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  it('an empty tag file, a torn manifest link and a torn tag list are refetched', async () => {
    const root = join(work, 'data');
    const first = await startRegcache({ upstreamUrl: upstream.url, root });
    try {
      assert.equal((await get(`${first.url}/v2/team/torn/manifests/1`)).status, 200);
      assert.equal((await get(`${first.url}/v2/team/torn/tags/list`)).status, 200);
    } finally {
      await first.stop();
    }
    const records = await filesUnder(join(root, 'repositories'));
    const tag = records.find((f) => f.includes('/_tags/'));
    const link = records.find((f) => f.includes('/_manifests/'));
    const list = records.find((f) => f.endsWith('/_taglist'));
    assert.ok(tag && link && list, `records in storage: ${records.join(', ')}`);
    await writeFile(tag, '');
    await writeFile(link, '{"mediaType":"applic');
    await writeFile(list, '{"tags":["1"');

    const second = await startRegcache({ upstreamUrl: upstream.url, root });
    try {
      const byTag = await get(`${second.url}/v2/team/torn/manifests/1`);
      assert.equal(byTag.status, 200, byTag.body);
      assert.equal(byTag.digest, img.manifestDigest);
      const byDigest = await get(`${second.url}/v2/team/torn/manifests/${img.manifestDigest}`);
      assert.equal(byDigest.status, 200, byDigest.body);
      const tags = await get(`${second.url}/v2/team/torn/tags/list`);
      assert.equal(tags.status, 200, tags.body);
      assert.deepEqual(JSON.parse(tags.body).tags, ['1']);
      assert.ok(second.logs.some((l) => String(l.msg).includes('treating it as a miss')), 'the torn record is logged');
    } finally {
      await second.stop();
    }
  });
});
