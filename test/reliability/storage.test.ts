// Storage trouble under a running server: a full disk, a read-only file system, the storage directory deleted
// or replaced by a file. Errors are clean OCI JSON, nothing partial is committed, and it recovers once fixed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, open, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { copyToDir, dirDigests } from '../support/skopeo.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { skipOrFail } from '../support/skips.js';
import { assertHonest, assertStoreConsistent, ociErrorCode, request, waitUploadsEmpty, type Outcome } from './support.js';

const run = promisify(execFile);
type Layer = BuiltImage['manifests'][number]['layers'][number];

/** Mounts a tmpfs of `size` at dir; returns why not when that is not permitted. */
async function mountTmpfs(dir: string, size: string): Promise<string | undefined> {
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
    return undefined;
  } catch (e) {
    return (e as { stderr?: string }).stderr?.trim() || (e as Error).message;
  }
}

async function unmount(dir: string): Promise<void> {
  await run('umount', [dir]).catch(() => run('umount', ['-l', dir]).catch(() => {}));
}

/**
 * Either the right bytes, or a clean 5xx with an OCI body (storage errors are ours, not the client's) — or, with
 * allowAbort, an aborted transfer (a blob streamed while it is stored fails after its status went out).
 */
function servedOrCleanError(
  o: Outcome,
  expected: { digest: string; size: number },
  context: string,
  opts: { allowAbort?: boolean } = {},
): 'served' | 'aborted' | string {
  if (assertHonest(o, expected, context)) return 'served';
  if (o.error !== undefined && opts.allowAbort) return 'aborted';
  assert.equal(o.error, undefined, `${context}: a failure before the first byte must be an error response, not an abort`);
  assert.ok(o.status >= 500, `${context}: storage trouble is a server error, got ${o.status}`);
  return ociErrorCode(o, context);
}

describe('storage trouble', () => {
  let upstream: RunningRegistry;
  let work: string;
  let img: BuiltImage;
  let manifest: { digest: string; size: number };

  before(async () => {
    work = await makeTempDir('reliability-storage-');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [8 << 20, 100_000, 50_000], seed: 'storage' });
    await pushImage(img, upstream.host, 'team/app:1');
    const bytes = await readFile(join(img.layoutDir, 'blobs', 'sha256', img.manifestDigest.slice(7)));
    manifest = { digest: img.manifestDigest, size: bytes.length };
  });

  after(async () => {
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  const layers = () => img.manifests[0]!.layers;
  const blobPath = (digest: string) => `/v2/team/app/blobs/${digest}`;
  const accept = () => ({ accept: img.mediaType });

  describe('on a 20 MiB tmpfs', () => {
    let mnt: string;
    let mountProblem: string | undefined;
    let cache: RunningRegcache | undefined;

    before(async () => {
      mnt = join(work, 'mnt');
      await mkdir(mnt);
      mountProblem = await mountTmpfs(mnt, '20m');
    });
    after(async () => {
      await cache?.stop();
      if (!mountProblem) await unmount(mnt);
    });

    it('disk full: downloads that cannot be stored fail cleanly, the server stays up, nothing partial; recovers when space is freed', async (t) => {
      if (mountProblem) return skipOrFail(t, 'root', `cannot mount a tmpfs (tests must run as root): ${mountProblem}`);
      const root = join(mnt, 'data');
      const filler = join(mnt, 'filler');
      cache = await startRegcache({ upstreamUrl: upstream.url, config: { regcache: { freshness: '1h' } }, root });
      const [big, small, tiny] = layers() as [Layer, Layer, Layer];
      assert.equal(servedOrCleanError(await request(cache.url + blobPath(small.digest)), small, 'warm'), 'served');

      try {
        // leave 4 MiB: the 8 MiB layer cannot be stored
        const fs = await statfs(mnt);
        await writeFile(filler, Buffer.alloc(fs.bavail * fs.bsize - 4 * 1024 * 1024));
        const o = await request(cache.url + blobPath(big.digest));
        assert.equal(assertHonest(o, big, 'big layer on a full disk'), false, 'a blob that could not be stored was delivered as complete');
        await waitUploadsEmpty(root);
        assert.deepEqual(await assertStoreConsistent(root), [small.digest], 'nothing partial committed');
        assert.ok(
          cache.logs.some((l) => l.level === 40 && /nothing cached/.test(String(l.msg)) && /ENOSPC/.test(String(l.err))),
          'ENOSPC is logged',
        );

        // completely full
        const fh = await open(filler, 'a');
        try {
          for (;;) await fh.write(Buffer.alloc(1 << 20));
        } catch (e) {
          assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
        } finally {
          await fh.close();
        }
        const m = await request(cache.url + '/v2/team/app/manifests/1', { headers: accept() });
        t.diagnostic(`manifest on a full disk: ${servedOrCleanError(m, manifest, 'manifest on a full disk')}`);
        const tinyOutcome = await request(cache.url + blobPath(tiny.digest));
        t.diagnostic(`50 kB layer on a full disk: ${servedOrCleanError(tinyOutcome, tiny, 'tiny layer on a full disk', { allowAbort: true })}`);
        // still up, still serving what it has
        assert.equal((await request(`${cache.url}/v2/`)).status, 200);
        assert.equal(servedOrCleanError(await request(cache.url + blobPath(small.digest)), small, 'cached on a full disk'), 'served');
        await waitUploadsEmpty(root);
        await assertStoreConsistent(root);
      } finally {
        await rm(filler, { force: true });
      }

      const dest = join(work, 'after-full');
      await copyToDir(`docker://${cache.host}/team/app:1`, dest);
      const pulled = new Set((await dirDigests(dest)).values());
      for (const l of layers()) assert.ok(pulled.has(l.digest), `layer ${l.digest} pulled`);
      await waitUploadsEmpty(root);
      const stored = await assertStoreConsistent(root);
      for (const l of layers()) assert.ok(stored.includes(l.digest), 'cached after space was freed');
    });
  });

  it('read-only storage (a read-only bind mount over the root): hits still served, misses are clean 500s; recovers when writable', async (t) => {
    const root = join(work, 'ro-data');
    const cache = await startRegcache({ upstreamUrl: upstream.url, config: { regcache: { freshness: '1h' } }, root });
    let mounted = false;
    try {
      const [, small, tiny] = layers() as [Layer, Layer, Layer];
      assert.equal(servedOrCleanError(await request(cache.url + blobPath(small.digest)), small, 'warm'), 'served');
      assert.equal(servedOrCleanError(await request(cache.url + '/v2/team/app/manifests/1', { headers: accept() }), manifest, 'warm'), 'served');
      await waitUploadsEmpty(root);

      // root ignores permissions; a read-only bind mount does not (files opened before keep their mode)
      try {
        await run('mount', ['--bind', root, root]);
        mounted = true;
        await run('mount', ['-o', 'remount,bind,ro', root]);
      } catch (e) {
        return skipOrFail(t, 'root', `cannot make a read-only bind mount (tests must run as root): ${(e as Error).message}`);
      }
      const miss = await request(cache.url + blobPath(tiny.digest));
      assert.equal(miss.status, 500, miss.body.toString());
      assert.equal(ociErrorCode(miss, 'read-only miss'), 'STORAGE_ERROR');
      assert.match(JSON.parse(miss.body.toString()).errors[0].message, /EROFS/);
      assert.equal(servedOrCleanError(await request(cache.url + blobPath(small.digest)), small, 'ro hit'), 'served');
      assert.equal(servedOrCleanError(await request(cache.url + '/v2/team/app/manifests/1', { headers: accept() }), manifest, 'ro tag'), 'served');

      await unmount(root);
      mounted = false;
      assert.equal(servedOrCleanError(await request(cache.url + blobPath(tiny.digest)), tiny, 'writable again'), 'served');
      await waitUploadsEmpty(root);
      assert.ok((await assertStoreConsistent(root)).includes(tiny.digest), 'cached once writable again');
    } finally {
      if (mounted) await unmount(root);
      await cache.stop();
    }
  });

  it('storage directory deleted, then replaced by a file: clean 5xx OCI errors, no stack traces; recovers when recreated', async () => {
    const root = join(work, 'doomed');
    const cache = await startRegcache({ upstreamUrl: upstream.url, config: { regcache: { freshness: '1h' } }, root });
    try {
      const [, small, tiny] = layers() as [Layer, Layer, Layer];
      assert.equal(servedOrCleanError(await request(cache.url + blobPath(small.digest)), small, 'warm'), 'served');
      const mark = cache.logs.length;

      await rm(root, { recursive: true, force: true });
      const results: string[] = [];
      for (const [what, o, expected] of [
        ['uncached blob', await request(cache.url + blobPath(tiny.digest)), tiny],
        ['blob cached before the deletion', await request(cache.url + blobPath(small.digest)), small],
        ['manifest', await request(cache.url + '/v2/team/app/manifests/1', { headers: accept() }), manifest],
      ] as const) {
        results.push(`${what}: ${servedOrCleanError(o, expected, `deleted dir, ${what}`)}`);
      }
      assert.match(results[0]!, /STORAGE_ERROR/, results.join('; '));

      await writeFile(root, 'not a directory');
      const asFile = await request(cache.url + blobPath(tiny.digest));
      assert.equal(servedOrCleanError(asFile, tiny, 'root is a file'), 'STORAGE_ERROR');
      const cached = await request(cache.url + blobPath(small.digest));
      assert.equal(servedOrCleanError(cached, small, 'root is a file, cached blob'), 'STORAGE_ERROR');
      assert.equal((await request(`${cache.url}/v2/`)).status, 200, 'still up');
      const errors = cache.logs.slice(mark).filter((l) => l.level === 50 && l.code === 'STORAGE_ERROR');
      assert.ok(errors.length > 0, 'storage failures are logged as errors');

      // the operator fixes it: an empty directory again
      await rm(root, { force: true });
      await mkdir(root);
      for (const l of [tiny, small]) {
        assert.equal(servedOrCleanError(await request(cache.url + blobPath(l.digest)), l, 'after the fix'), 'served');
      }
      assert.equal(servedOrCleanError(await request(cache.url + '/v2/team/app/manifests/1', { headers: accept() }), manifest, 'manifest after the fix'), 'served');
      await waitUploadsEmpty(root);
      const stored = await assertStoreConsistent(root);
      assert.ok(stored.includes(tiny.digest) && stored.includes(small.digest), 'cached again after the fix');
    } finally {
      await cache.stop();
    }
  });
});
