// Eviction planning over the metadata index: image units, shared blobs, multi-arch children, busy blobs, TTL.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildUnits, Planner } from '../../src/lifecycle/plan.js';
import { MetadataIndex } from '../../src/metadata/index.js';

const D = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;
const OCI = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';

function image(index: MetadataIndex, repo: string, tag: string, manifest: number, blobs: Array<[number, number]>, at: number): void {
  for (const [d, size] of blobs) index.blobFetched(D(d), size, 'up', repo, at);
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { digest: D(blobs[0]![0]) }, layers: blobs.slice(1).map(([d]) => ({ digest: D(d) })) }));
  index.manifestFetched('up', repo, D(manifest), OCI, bytes, at);
  index.tagValidated('up', repo, tag, D(manifest), at);
}

describe('eviction planning', () => {
  it('evicts the least recently used image; a layer shared with a kept image stays', async () => {
    const index = await MetadataIndex.open();
    image(index, 'old', 'v1', 100, [[1, 10], [2, 1000], [3, 5000]], 1000); // 3 = shared base layer
    image(index, 'new', 'v1', 200, [[4, 10], [5, 2000], [3, 5000]], 2000);
    const planner = new Planner(index, buildUnits(index));
    planner.shrinkTo(index.totalBytes - 1);
    assert.equal(planner.removals.length, 1);
    const r = planner.removals[0]!;
    assert.equal(r.unit.repo, 'old');
    assert.deepEqual(r.blobs.map((b) => b.digest).sort(), [D(1), D(2), D(100)].sort());
    assert.deepEqual(r.tags.map((t) => t.tag), ['v1']);
    assert.deepEqual(r.manifests.map((m) => m.digest), [D(100)]);
    assert.equal(r.bytes, 10 + 1000 + index.blob(D(100))!.size);
  });

  it('treats a multi-arch index with its platform manifests as one unit', async () => {
    const index = await MetadataIndex.open();
    image(index, 'multi', 'amd', 11, [[12, 10], [13, 100]], 1000);
    image(index, 'multi', 'arm', 21, [[22, 10], [23, 100]], 1000);
    index.removeTag('up', 'multi', 'amd');
    index.removeTag('up', 'multi', 'arm');
    const list = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ digest: D(11) }, { digest: D(21) }] }));
    index.manifestFetched('up', 'multi', D(1), INDEX, list, 1000);
    index.tagValidated('up', 'multi', 'latest', D(1), 1000);
    const units = buildUnits(index);
    assert.equal(units.length, 1);
    assert.deepEqual(units[0]!.manifests.map((m) => m.digest).sort(), [D(1), D(11), D(21)].sort());
    const planner = new Planner(index, units);
    planner.shrinkTo(0);
    assert.equal(planner.remainingBytes, 0);
    assert.equal(planner.removals[0]!.manifests.length, 3);
  });

  it('skips an image whose blob is busy, and loose blobs count as their own units', async () => {
    const index = await MetadataIndex.open();
    image(index, 'a', 'v1', 100, [[1, 10], [2, 1000]], 1000);
    index.blobFetched(D(50), 300, 'up', 'a', 500); // pulled by digest only
    const planner = new Planner(index, buildUnits(index), (d) => d === D(2));
    planner.shrinkTo(0);
    assert.deepEqual(planner.removals.map((r) => r.unit.id), [`blob:${D(50)}`]);
  });

  it('expires by each upstream ttl counted from fetch time; null keeps forever', async () => {
    const index = await MetadataIndex.open();
    image(index, 'a', 'v1', 100, [[1, 10]], 1000);
    index.manifestAccessed('up', 'a', D(100), 9000); // recent use does not extend proxy.ttl
    const keep = new Planner(index, buildUnits(index));
    keep.expire(10_000, () => null);
    assert.equal(keep.removals.length, 0);
    const fresh = new Planner(index, buildUnits(index));
    fresh.expire(10_000, () => 9500);
    assert.equal(fresh.removals.length, 0);
    const expired = new Planner(index, buildUnits(index));
    expired.expire(10_000, () => 8000);
    assert.equal(expired.removals.length, 1);
    assert.equal(expired.removals[0]!.reason, 'ttl');
  });
});
