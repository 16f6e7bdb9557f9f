// The metadata index: journal persistence (torn tail, compaction) and a full rebuild from a real storage directory.
import assert from 'node:assert/strict';
import { appendFile, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { JOURNAL_FILE, MetadataIndex } from '../../src/metadata/index.js';
import { reconcile } from '../../src/metadata/reconcile.js';
import { openStorage } from '../../src/storage/index.js';
import { buildImage, buildMultiArchImage, pushImage, type BuiltImage } from '../support/images.js';
import { startRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { copyToDir } from '../support/skopeo.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const D = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

function snapshot(index: MetadataIndex) {
  const sort = <T>(xs: T[], key: (x: T) => string) => xs.sort((a, b) => key(a).localeCompare(key(b)));
  return {
    total: index.totalBytes,
    blobs: sort(
      [...index.blobs()].map((b) => ({ digest: b.digest, size: b.size, upstream: b.upstream, repos: [...b.repos].sort() })),
      (b) => b.digest,
    ),
    manifests: sort(
      [...index.manifests()].map((m) => ({ id: `${m.upstream}/${m.repo}@${m.digest}`, size: m.size, mediaType: m.mediaType, refs: [...m.refs].sort(), fetchedAt: m.fetchedAt })),
      (m) => m.id,
    ),
    tags: sort(
      [...index.tags()].map((t) => ({ id: `${t.upstream}/${t.repo}:${t.tag}`, digest: t.digest })),
      (t) => t.id,
    ),
  };
}

describe('metadata index journal', () => {
  let dir: string;
  before(async () => {
    dir = await makeTempDir('meta-');
  });
  after(async () => {
    await removeDir(dir);
  });

  it('survives a torn last line (crash mid-append) and keeps appending after it', async () => {
    const a = await MetadataIndex.open({ dir });
    a.blobFetched(D(1), 100, 'up', 'team/app', 1000);
    a.manifestFetched('up', 'team/app', D(2), 'application/vnd.oci.image.manifest.v1+json', Buffer.from(JSON.stringify({ schemaVersion: 2, config: { digest: D(3) }, layers: [{ digest: D(1) }] })), 1000);
    a.tagValidated('up', 'team/app', 'v1', D(2), 1000);
    a.blobAccessed(D(1), 'up', 'other/repo', 2000);
    await a.close();
    await appendFile(join(dir, JOURNAL_FILE), '{"b":{"digest":"sha256:tor');

    const b = await MetadataIndex.open({ dir });
    assert.equal(b.blob(D(1))?.lastAccess, 2000);
    assert.deepEqual(b.blob(D(1))?.repos, ['up/team/app', 'up/other/repo']);
    assert.deepEqual(b.manifest('up', 'team/app', D(2))?.refs, [D(3), D(1)]);
    assert.equal(b.tag('up', 'team/app', 'v1')?.digest, D(2));
    b.removeBlob(D(1));
    b.blobFetched(D(4), 7, 'up', 'team/app', 3000);
    await b.close();

    const c = await MetadataIndex.open({ dir });
    assert.equal(c.blob(D(1)), undefined);
    assert.equal(c.blob(D(4))?.size, 7);
    assert.equal(c.totalBytes, 7 + c.blob(D(2))!.size);
    await c.close();
  });

  it('compacts a journal of mostly superseded lines into one line per record', async () => {
    const idx = await MetadataIndex.open({ dir: join(dir, 'compact') });
    idx.blobFetched(D(9), 10, 'up', 'r', 1);
    for (let i = 0; i < 1500; i++) {
      idx.blobAccessed(D(9), 'up', 'r', 2 + i);
      await idx.flush();
    }
    await idx.close();
    const lines = (await readFile(join(dir, 'compact', JOURNAL_FILE), 'utf8')).split('\n').filter(Boolean);
    assert.ok(lines.length < 1100, `journal compacted (${lines.length} lines)`);
    const again = await MetadataIndex.open({ dir: join(dir, 'compact') });
    assert.equal(again.blob(D(9))?.lastAccess, 1501);
    await again.close();
  });
});

describe('metadata index rebuilt from storage', () => {
  let upstream: RunningRegistry;
  let work: string;
  let multi: BuiltImage;
  let single: BuiltImage;

  before(async () => {
    work = await makeTempDir('meta-rebuild-');
    upstream = await startRegistry();
    multi = await buildMultiArchImage({
      dir: join(work, 'multi'),
      seed: 'rebuild',
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
      layers: [5000],
    });
    single = await buildImage({ dir: join(work, 'single'), layers: [3000, 4000], seed: 'rebuild-single' });
    await pushImage(multi, upstream.host, 'meta/multi:1');
    await pushImage(single, upstream.host, 'meta/single:1');
  });

  after(async () => {
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  it('recreates blobs, sizes, repositories, manifest references and tags from the storage directory alone', async () => {
    const root = join(work, 'data');
    const cache = await startRegcache({ upstreamUrl: upstream.url, root });
    let live;
    try {
      await copyToDir(`docker://${cache.host}/meta/multi:1`, join(work, 'p1'), { all: true });
      await copyToDir(`docker://${cache.host}/meta/single:1`, join(work, 'p2'));
      live = snapshot(cache.app.lifecycle.index);
    } finally {
      await cache.stop();
    }
    assert.equal(live.manifests.length, 4, 'index + 2 platform manifests + single');
    assert.equal(live.tags.length, 2);

    await rm(join(root, '_metadata'), { recursive: true });
    const storage = await openStorage({ driver: 'filesystem', rootdirectory: root });
    const rebuilt = await MetadataIndex.open({ dir: join(root, '_metadata') });
    try {
      const report = await reconcile(rebuilt, storage);
      assert.equal(report.blobsAdded, live.blobs.length);
      const again = snapshot(rebuilt);
      // Fetch times come from the manifest link files, written a moment before the live index heard of them.
      for (const [i, m] of again.manifests.entries()) {
        assert.ok(Math.abs(m.fetchedAt - live.manifests[i]!.fetchedAt) < 1000, m.id);
        m.fetchedAt = live.manifests[i]!.fetchedAt;
      }
      assert.deepEqual(again, live);
    } finally {
      await rebuilt.close();
      await storage.close();
    }
  });
});
