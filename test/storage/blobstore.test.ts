// Blob store conformance: the same assertions over every driver (inmemory, filesystem, s3 on s3rver).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { RegistryError } from '../../src/errors.js';
import type { BlobStore } from '../../src/storage/blobstore.js';
import { HARNESSES, leftoversAfterAbort, TEST_PART_SIZE, type DriverHarness } from './drivers.js';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

function code(c: string) {
  return (e: unknown) => e instanceof RegistryError && e.code === c;
}

/** Writes `data` in `chunk`-sized writes. */
async function writeAll(w: { write(c: Uint8Array): Promise<void> }, data: Buffer, chunk = 256 * 1024): Promise<void> {
  for (let o = 0; o < data.length; o += chunk) await w.write(data.subarray(o, o + chunk));
}

async function storeBlob(d: BlobStore, data: Buffer): Promise<string> {
  const digest = sha256(data);
  const w = await d.createBlobWriter(digest);
  await writeAll(w, data);
  await w.commit();
  return digest;
}

for (const [name, make] of HARNESSES) {
  describe(`blob store conformance: ${name}`, () => {
    let h: DriverHarness;
    let d: BlobStore;

    before(async () => {
      h = await make();
      d = h.store;
    });
    after(async () => {
      await h?.stop();
    });

    it('puts, gets, replaces, lists and deletes small objects', async () => {
      assert.equal(await d.getObject('repositories/up/team/app/_tags/missing'), null);
      await d.putObject('repositories/up/team/app/_tags/v1', Buffer.from('one'));
      await d.putObject('repositories/up/team/app/_tags/v2', Buffer.from('two'));
      await d.putObject('repositories/up/team/appx/_tags/v1', Buffer.from('other repo'));
      await d.putObject('repositories/up/team/app/_manifests/sha256/abc', Buffer.from('{}'));
      assert.deepEqual(await d.getObject('repositories/up/team/app/_tags/v1'), Buffer.from('one'));
      await d.putObject('repositories/up/team/app/_tags/v1', Buffer.from('replaced'));
      assert.deepEqual(await d.getObject('repositories/up/team/app/_tags/v1'), Buffer.from('replaced'));

      const keys = (await collect(d.listObjects('repositories/up/team/app'))).sort();
      assert.deepEqual(keys, [
        'repositories/up/team/app/_manifests/sha256/abc',
        'repositories/up/team/app/_tags/v1',
        'repositories/up/team/app/_tags/v2',
      ]);
      assert.deepEqual((await collect(d.listObjects('repositories/up/team/app/'))).sort(), keys);
      assert.equal((await collect(d.listObjects('repositories'))).length, 4);
      assert.deepEqual(await collect(d.listObjects('repositories/none')), []);

      await d.deleteObject('repositories/up/team/app/_tags/v2');
      await d.deleteObject('repositories/up/team/app/_tags/never-existed');
      assert.equal(await d.getObject('repositories/up/team/app/_tags/v2'), null);
      assert.equal((await collect(d.listObjects('repositories/up/team/app'))).length, 2);
    });

    it('commits a verified blob; it is invisible until then while its temp file is readable as it grows', async () => {
      const data = randomBytes(TEST_PART_SIZE * 2 + 12_345); // crosses S3 part boundaries
      const digest = sha256(data);
      assert.equal(await d.statBlob(digest), null);
      const w = await d.createBlobWriter(digest);
      const fd = await open(w.tempPath, 'r'); // as a coalesced reader does, before anything is written
      try {
        await writeAll(w, data.subarray(0, TEST_PART_SIZE + 1000));
        assert.equal(w.bytesWritten, TEST_PART_SIZE + 1000);
        const head = Buffer.alloc(TEST_PART_SIZE + 1000);
        await fd.read(head, 0, head.length, 0);
        assert.ok(head.equals(data.subarray(0, head.length)), 'temp file holds the bytes written so far');

        assert.equal(await d.statBlob(digest), null, 'not visible before commit');
        await assert.rejects(d.readBlob(digest), code('BLOB_UNKNOWN'));
        assert.ok(!(await collect(d.listBlobs())).some((b) => b.digest === digest));

        await writeAll(w, data.subarray(TEST_PART_SIZE + 1000));
        await w.commit();
        const all = Buffer.alloc(data.length);
        await fd.read(all, 0, all.length, 0);
        assert.ok(all.equals(data), 'an fd opened before commit reads the whole blob after it');
      } finally {
        await fd.close();
      }
      assert.deepEqual(await d.statBlob(digest), { size: data.length });
      assert.ok((await readAll(await d.readBlob(digest))).equals(data));
      assert.deepEqual(
        (await collect(d.listBlobs())).filter((b) => b.digest === digest),
        [{ digest, size: data.length }],
      );
      assert.equal(await h.leftovers(), 0, 'no temp file or upload left after commit');
    });

    it('refuses a blob whose content does not match its digest, leaving nothing', async () => {
      const data = randomBytes(TEST_PART_SIZE + 4096);
      const digest = sha256(Buffer.from('something else'));
      const w = await d.createBlobWriter(digest);
      await writeAll(w, data);
      await assert.rejects(w.commit(), code('DIGEST_INVALID'));
      await w.abort(); // idempotent after a failed commit, as Download calls it
      assert.equal(await d.statBlob(digest), null);
      assert.equal(await exists(w.tempPath), false);
      assert.equal(await leftoversAfterAbort(h), 0);
    });

    it('abort removes the temp file and any partial upload', async () => {
      const data = randomBytes(TEST_PART_SIZE + 10);
      const digest = sha256(data);
      const w = await d.createBlobWriter(digest);
      await writeAll(w, data);
      await w.abort();
      await w.abort();
      assert.equal(await d.statBlob(digest), null);
      assert.equal(await exists(w.tempPath), false);
      assert.equal(await leftoversAfterAbort(h), 0);
      await assert.rejects(w.write(Buffer.from('x')));
    });

    it('stores empty and small blobs', async () => {
      const empty = await storeBlob(d, Buffer.alloc(0));
      assert.deepEqual(await d.statBlob(empty), { size: 0 });
      assert.equal((await readAll(await d.readBlob(empty))).length, 0);
      const small = Buffer.from('{"small":true}');
      const digest = await storeBlob(d, small);
      assert.ok((await readAll(await d.readBlob(digest))).equals(small));
    });

    it('reads byte ranges (inclusive)', async () => {
      const data = randomBytes(100_000);
      const digest = await storeBlob(d, data);
      for (const [start, end] of [
        [0, 0],
        [0, 9],
        [10, 99],
        [50_000, 99_999],
        [99_999, 99_999],
      ] as const) {
        const got = await readAll(await d.readBlob(digest, { start, end }));
        assert.ok(got.equals(data.subarray(start, end + 1)), `range ${start}-${end}`);
      }
    });

    it('deletes blobs', async () => {
      const digest = await storeBlob(d, randomBytes(1000));
      await d.deleteBlob(digest);
      assert.equal(await d.statBlob(digest), null);
      await assert.rejects(d.readBlob(digest), code('BLOB_UNKNOWN'));
      await d.deleteBlob(digest);
    });

    it('cleanup after a restart removes what interrupted writes left, and nothing else', async () => {
      const kept = await storeBlob(d, randomBytes(5000));
      await d.putObject('repositories/up/keep/_tags/v1', Buffer.from('kept'));
      const data = randomBytes(TEST_PART_SIZE + 777);
      const abandoned = await d.createBlobWriter(sha256(data)); // the process "crashes" mid-write
      await writeAll(abandoned, data);
      assert.ok((await h.leftovers()) >= 1);

      const restarted = await h.reopen();
      const report = await restarted.cleanup();
      assert.ok(report.removed >= 1);
      if (h.removesUploads) assert.deepEqual(report.warnings, []);
      else assert.match(report.warnings.join('\n'), /AbortIncompleteMultipartUpload/, 'the server keeps the upload: a warning says how to remove it');
      assert.equal(await leftoversAfterAbort(h), 0);
      assert.equal(await exists(abandoned.tempPath), false);
      assert.equal(await restarted.statBlob(sha256(data)), null, 'the interrupted blob never appears');
      assert.deepEqual(await restarted.statBlob(kept), { size: 5000 });
      assert.deepEqual(await restarted.getObject('repositories/up/keep/_tags/v1'), Buffer.from('kept'));
      assert.equal((await restarted.cleanup()).removed, 0);
      await abandoned.abort().catch(() => {});
    });

    it('never addresses anything outside its root', async () => {
      // Refused (the filesystem driver reports some of these as STORAGE_ERROR rather than NAME_INVALID).
      const refused = (e: unknown) =>
        e instanceof RegistryError && ['NAME_INVALID', 'DIGEST_INVALID', 'STORAGE_ERROR'].includes(e.code);
      const escaping = ['../escape', 'a/../../escape', 'a/b/../../../escape', '..', ''];
      for (const k of escaping) {
        await assert.rejects(d.putObject(k, Buffer.from('x')), refused, `putObject ${JSON.stringify(k)}`);
        await assert.rejects(d.getObject(k), refused, `getObject ${JSON.stringify(k)}`);
        await assert.rejects(d.deleteObject(k), refused, `deleteObject ${JSON.stringify(k)}`);
      }
      await assert.rejects(collect(d.listObjects('../')), refused);
      // Odd but harmless keys: a driver may refuse them or map them inside its root, never outside.
      for (const k of ['/abs/key', 'a//b', './a', 'a/./b', 'a/../b']) {
        await d.putObject(k, Buffer.from('x')).catch((e: unknown) => assert.ok(refused(e), String(e)));
      }
      for (const digest of ['sha256:../../x', 'sha256:' + 'g'.repeat(64), 'md5:abc']) {
        await assert.rejects(d.createBlobWriter(digest), code('DIGEST_INVALID'));
        await assert.rejects(d.statBlob(digest), refused);
      }
      assert.deepEqual(await h.outsideRoot(), []);
    });
  });
}
