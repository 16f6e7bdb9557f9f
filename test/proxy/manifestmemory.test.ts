// regcache.cache.manifestmemory bounds the in-memory manifest LRU by bytes: a manifest pushed out of memory by
// others is read from storage again (counted as storage reads, not timed); within the bound it is not.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { join } from 'node:path';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const MANIFEST_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';

/** Storage reads so far (driver get + read operations), from the server's own metrics. */
async function storageReads(c: RunningRegcache): Promise<number> {
  const text = await c.app.observability.metrics.registry.metrics();
  let n = 0;
  for (const m of text.matchAll(/^regcache_storage_operation_seconds_count\{[^}]*op="(get|read)"[^}]*\} (\d+)$/gm)) n += Number(m[2]);
  return n;
}

async function getManifest(c: RunningRegcache, repo: string, digest: string): Promise<void> {
  const res = await fetch(`${c.url}/v2/${repo}/manifests/${digest}`, { headers: { accept: MANIFEST_ACCEPT } });
  const body = await res.text();
  assert.equal(res.status, 200, `${repo}@${digest}: ${body}`);
  assert.equal(res.headers.get('docker-content-digest'), digest);
}

/** Storage reads caused by each step of: A, A again, B, A again. */
async function readsPerStep(c: RunningRegcache, a: BuiltImage, b: BuiltImage): Promise<number[]> {
  const steps: Array<[string, string]> = [
    ['mem/a', a.manifestDigest],
    ['mem/a', a.manifestDigest],
    ['mem/b', b.manifestDigest],
    ['mem/a', a.manifestDigest],
  ];
  const out: number[] = [];
  for (const [repo, digest] of steps) {
    const before = await storageReads(c);
    await getManifest(c, repo, digest);
    out.push((await storageReads(c)) - before);
  }
  return out;
}

describe('regcache.cache.manifestmemory', () => {
  let upstream: RunningRegistry;
  let work: string;
  let a: BuiltImage;
  let b: BuiltImage;

  before(async () => {
    work = await makeTempDir('manifestmemory-');
    upstream = await startRegistry();
    a = await buildImage({ dir: join(work, 'a'), layers: [1024], seed: 'manifest-memory-a' });
    b = await buildImage({ dir: join(work, 'b'), layers: [2048], seed: 'manifest-memory-b' });
    await pushImage(a, upstream.host, 'mem/a:1');
    await pushImage(b, upstream.host, 'mem/b:1');
  });

  after(async () => {
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  it('room for one manifest: the one pushed out is read from storage again', async () => {
    const bound = a.manifestSize + b.manifestSize - 1;
    const c = await startRegcache({ upstreamUrl: upstream.url, config: { regcache: { cache: { manifestmemory: bound } } } });
    try {
      assert.equal(c.config.regcache.cache.manifestMemoryBytes, bound);
      const [, againA, , afterB] = await readsPerStep(c, a, b);
      assert.equal(againA, 0, 'A within the bound: served from memory');
      assert.ok(afterB! > 0, `A after B pushed it out: read from storage (${afterB} reads)`);
    } finally {
      await c.stop();
    }
  });

  it('the default (64 MiB) keeps both: no storage read for either once fetched', async () => {
    const c = await startRegcache({ upstreamUrl: upstream.url });
    try {
      assert.equal(c.config.regcache.cache.manifestMemoryBytes, 64 * 1024 * 1024);
      const [, againA, , afterB] = await readsPerStep(c, a, b);
      assert.equal(againA, 0);
      assert.equal(afterB, 0);
    } finally {
      await c.stop();
    }
  });

  it('0 keeps no manifest in memory: every GET reads storage', async () => {
    const c = await startRegcache({ upstreamUrl: upstream.url, config: { regcache: { cache: { manifestmemory: '0' } } } });
    try {
      const [, againA, , afterB] = await readsPerStep(c, a, b);
      assert.ok(againA! > 0 && afterB! > 0, `reads: ${againA}, ${afterB}`);
    } finally {
      await c.stop();
    }
  });
});
