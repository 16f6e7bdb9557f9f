// s3rver (a fake S3 server on the local filesystem) on a loopback port, for the s3 storage driver's tests.
//
// s3rver 3.7 implements multipart upload create/part/complete but not AbortMultipartUpload (405) nor
// ListMultipartUploads (501). It runs unmodified, as users get it; uploads() reads its upload directory
// (`<dir>/<bucket>/._S3rver_uploads/<uploadId>/key`) to see what the driver left there.
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { s3Access } from './s3common.js';

export const S3RVER_KEY = 'S3RVER';
export const S3RVER_SECRET = 'S3RVER';

export interface RunningS3 {
  endpoint: string;
  bucket: string;
  accessKey: string;
  secretKey: string;
  /** storage.s3 block for a distribution-style config (rootdirectory as given). */
  yaml(rootdirectory?: string): Record<string, unknown>;
  client: S3Client;
  /** Every object in the bucket (key → bytes). */
  objects(prefix?: string): Promise<Map<string, Buffer>>;
  /** Multipart uploads in progress: key of each. */
  uploads(): Promise<string[]>;
  stop(): Promise<void>;
}


/**
 * s3rver exactly as users get it (no ListMultipartUploads, no AbortMultipartUpload, its own `bytes=0-0`
 * answer): the driver copes with it by design. The cleanup path runs against moto (test/storage/motoserver.ts).
 */
export async function startS3(opts: { bucket?: string } = {}): Promise<RunningS3> {
  const bucket = opts.bucket ?? 'regcache';
  const dir = await makeTempDir('regcache-s3rver-');
  const uploadsDir = join(dir, bucket, '._S3rver_uploads');
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: bucket }],
    vhostBuckets: false,
  });

  const listUploads = async (): Promise<Array<{ id: string; key: string; initiated: Date }>> => {
    const out = [];
    for (const id of await readdir(uploadsDir).catch(() => [] as string[])) {
      const keyFile = join(uploadsDir, id, 'key');
      const key = await readFile(keyFile, 'utf8').catch(() => undefined);
      if (key === undefined) continue;
      out.push({ id, key, initiated: (await stat(keyFile)).mtime });
    }
    return out;
  };

  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const access = s3Access(endpoint, bucket, S3RVER_KEY, S3RVER_SECRET, {
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const { client } = access;

  return {
    endpoint,
    bucket,
    accessKey: S3RVER_KEY,
    secretKey: S3RVER_SECRET,
    ...access,
    async uploads() {
      return (await listUploads()).map((u) => u.key);
    },
    async stop() {
      client.destroy();
      server.httpServer?.closeAllConnections?.();
      await server.close().catch(() => {});
      await removeDir(dir);
    },
  };
}
