// The s3 driver when S3 fails: a commit that cannot complete fails cleanly and leaves no spool file;
// a bucket that cannot be reached is reported at open.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { RegistryError } from '../../src/errors.js';
import { openStorage } from '../../src/storage/index.js';
import type { S3StorageConfig } from '../../src/storage/s3/driver.js';
import { freePort } from '../support/ports.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { startS3, S3RVER_KEY, S3RVER_SECRET } from './s3server.js';

const PART = 5 * 1024 * 1024;

function config(endpoint: string, bucket: string): S3StorageConfig {
  return {
    driver: 's3',
    region: 'us-east-1',
    bucket,
    regionendpoint: endpoint,
    accesskey: S3RVER_KEY,
    secretkey: S3RVER_SECRET,
    rootdirectory: 'failures',
    forcepathstyle: true,
    encrypt: false,
    chunksize: PART,
  };
}

describe('s3 driver failures', () => {
  it('S3 gone mid-blob: commit fails with STORAGE_ERROR and the spool file is removed', async () => {
    const s3 = await startS3();
    const spool = await makeTempDir('s3-failures-spool-');
    const storage = await openStorage(config(s3.endpoint, s3.bucket), { spoolDir: spool });
    try {
      const data = randomBytes(PART + 1000);
      const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
      const w = await storage.createBlobWriter(digest);
      await w.write(data.subarray(0, 1000));
      await s3.stop(); // the object store disappears
      await w.write(data.subarray(1000)).catch(() => {}); // may already fail, once a part upload did
      await assert.rejects(w.commit(), (e: unknown) => e instanceof RegistryError && e.code === 'STORAGE_ERROR');
      await w.abort();
      assert.deepEqual(await readdir(spool), []);
    } finally {
      await storage.close();
      await removeDir(spool);
    }
  });

  it('an unreachable endpoint or a missing bucket is a clear error at open', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    await assert.rejects(openStorage(config(dead, 'regcache')), (e: unknown) => {
      return e instanceof RegistryError && e.code === 'STORAGE_ERROR' && e.message.includes('bucket "regcache"');
    });
    const s3 = await startS3();
    try {
      await assert.rejects(openStorage(config(s3.endpoint, 'no-such-bucket')), /no-such-bucket/);
    } finally {
      await s3.stop();
    }
  });
});
