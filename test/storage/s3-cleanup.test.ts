// Start-up on S3-compatible servers (or IAM policies) without ListMultipartUploads: the stale-upload cleanup is
// best effort, a warning, never a refusal to start. Against s3rver exactly as users get it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { openStorage } from '../../src/storage/index.js';
import { startRegcache } from '../support/regcache.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { s3Config } from './drivers.js';
import { startS3 } from './s3server.js';

describe('s3 cleanup without ListMultipartUploads (unmodified s3rver)', () => {
  it('cleanup reports a warning naming the missing call and the remedy', async () => {
    const s3 = await startS3();
    const spool = await makeTempDir('s3-cleanup-spool-');
    try {
      const store = await openStorage(s3Config(s3, 'cleanup'), { spoolDir: spool });
      try {
        const report = await store.cleanup();
        assert.equal(report.removed, 0);
        assert.equal(report.warnings.length, 1, JSON.stringify(report.warnings));
        assert.match(report.warnings[0]!, /list multipart uploads failed/);
        assert.match(report.warnings[0]!, /AbortIncompleteMultipartUpload/);
      } finally {
        await store.close();
      }
    } finally {
      await removeDir(spool);
      await s3.stop();
    }
  });

  it('a server on it starts, serves /v2/ and logs the warning', async () => {
    const s3 = await startS3();
    try {
      const cache = await startRegcache({ upstreamUrl: 'http://127.0.0.1:9', config: { storage: { s3: s3.yaml('mirror') } } });
      try {
        const res = await request(`${cache.url}/v2/`);
        await res.body.dump();
        assert.equal(res.statusCode, 200);
        assert.ok(
          cache.logs.some((l) => l.level === 40 && /storage cleanup: .*list multipart uploads/.test(String(l.msg))),
          'a warning is logged',
        );
      } finally {
        await cache.stop();
      }
    } finally {
      await s3.stop();
    }
  });
});
