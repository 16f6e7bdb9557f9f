// moto's S3 server (`moto[server]` from PyPI, installed by scripts/moto.sh into .tools/venv) on a loopback
// port: the second S3 implementation the storage and scale-out tests run against, much more complete than
// s3rver (ListMultipartUploads, AbortMultipartUpload, exact Range answers, checksums).
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CreateBucketCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { freePort } from '../support/ports.js';
import { startProcess, waitForHttp } from '../support/process.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { s3Access } from './s3common.js';
import type { RunningS3 } from './s3server.js';

/** moto accepts any credentials; these only have to be consistent. */
const MOTO_KEY = 'moto-access-key';
const MOTO_SECRET = 'moto-secret-key';

export const MOTO_SERVER = resolve(import.meta.dirname, '../../.tools/venv/bin/moto_server');

export function motoAvailable(): boolean {
  return existsSync(MOTO_SERVER);
}

export async function startMoto(opts: { bucket?: string } = {}): Promise<RunningS3> {
  if (!motoAvailable()) throw new Error(`moto_server not found at ${MOTO_SERVER}: run scripts/moto.sh`);
  const bucket = opts.bucket ?? 'regcache';
  const dir = await makeTempDir('regcache-moto-');
  const port = await freePort();
  const proc = await startProcess(MOTO_SERVER, ['-H', '127.0.0.1', '-p', String(port)], {
    logFile: join(dir, 'moto.log'),
    removeOnOrphan: [dir],
    env: { ...process.env, AWS_ACCESS_KEY_ID: MOTO_KEY, AWS_SECRET_ACCESS_KEY: MOTO_SECRET, AWS_DEFAULT_REGION: 'us-east-1' },
  });
  const endpoint = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${endpoint}/moto-api/`, 30_000);
  } catch (e) {
    await proc.stop();
    const tail = await proc.logTail();
    await removeDir(dir);
    throw new Error(`moto_server did not start: ${(e as Error).message}\n${tail}`);
  }
  const access = s3Access(endpoint, bucket, MOTO_KEY, MOTO_SECRET);
  const { client } = access;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));

  return {
    endpoint,
    bucket,
    accessKey: MOTO_KEY,
    secretKey: MOTO_SECRET,
    ...access,
    async uploads() {
      const keys: string[] = [];
      let KeyMarker: string | undefined;
      let UploadIdMarker: string | undefined;
      do {
        const res = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, KeyMarker, UploadIdMarker }));
        for (const u of res.Uploads ?? []) keys.push(u.Key!);
        KeyMarker = res.IsTruncated ? res.NextKeyMarker : undefined;
        UploadIdMarker = res.IsTruncated ? res.NextUploadIdMarker : undefined;
      } while (KeyMarker);
      return keys;
    },
    async stop() {
      client.destroy();
      await proc.stop();
      await removeDir(dir);
    },
  };
}
