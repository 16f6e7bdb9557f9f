// s3rver (a fake S3 server on the local filesystem) on a loopback port, for the s3 storage driver's tests.
//
// s3rver 3.7 implements multipart upload create/part/complete but not AbortMultipartUpload nor
// ListMultipartUploads; both are added here as a small Koa middleware over s3rver's own upload directory
// (`<dir>/<bucket>/._S3rver_uploads/<uploadId>/{key,1,2,...}`), so the driver's abort and cleanup paths run
// against a server rather than being skipped. The same middleware fixes s3rver's handling of `Range: bytes=0-0`.
import { createReadStream } from 'node:fs';
import { readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { makeTempDir, removeDir } from '../support/tmp.js';

export const S3RVER_KEY = 'S3RVER';
export const S3RVER_SECRET = 'S3RVER';

export interface RunningS3 {
  endpoint: string;
  bucket: string;
  /** storage.s3 block for a distribution-style config (rootdirectory as given). */
  yaml(rootdirectory?: string): Record<string, unknown>;
  client: S3Client;
  /** Every object in the bucket (key → bytes). */
  objects(prefix?: string): Promise<Map<string, Buffer>>;
  /** Multipart uploads in progress: key of each. */
  uploads(): Promise<string[]>;
  stop(): Promise<void>;
}

function xmlEscape(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * `unmodified`: s3rver exactly as users get it, without the middleware below (no ListMultipartUploads, no
 * AbortMultipartUpload, its own `bytes=0-0` answer).
 */
export async function startS3(opts: { bucket?: string; unmodified?: boolean } = {}): Promise<RunningS3> {
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

  if (!opts.unmodified) server.middleware.unshift(async (ctx, next) => {
    const segs = (ctx.path as string).split('/').filter(Boolean).map(decodeURIComponent);
    if (segs[0] !== bucket) return next();
    if (ctx.method === 'GET' && segs.length > 1 && ctx.headers.range === 'bytes=0-0') {
      // s3rver reads an end of 0 as "no end" (`Number(end) || Infinity`): `bytes=0-0` would get the whole object.
      await next();
      const body = ctx.body as { path?: string; destroy?(): void } | undefined;
      if (ctx.status !== 206 || typeof body?.path !== 'string') return;
      body.destroy?.();
      const size = (await stat(body.path)).size;
      ctx.body = createReadStream(body.path, { start: 0, end: 0 });
      ctx.length = 1;
      ctx.set('Content-Range', `bytes 0-0/${size}`);
      return;
    }
    if (ctx.method === 'DELETE' && segs.length > 1 && typeof ctx.query.uploadId === 'string') {
      const id = ctx.query.uploadId as string;
      if (!/^[0-9a-f]+$/.test(id)) return next();
      await rm(join(uploadsDir, id), { recursive: true, force: true });
      ctx.status = 204;
      return;
    }
    if (ctx.method === 'GET' && segs.length === 1 && 'uploads' in ctx.query) {
      const prefix = typeof ctx.query.prefix === 'string' ? (ctx.query.prefix as string) : '';
      const uploads = (await listUploads()).filter((u) => u.key.startsWith(prefix));
      ctx.type = 'application/xml';
      ctx.body =
        '<?xml version="1.0" encoding="UTF-8"?>\n' +
        '<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
        `<Bucket>${xmlEscape(bucket)}</Bucket><Prefix>${xmlEscape(prefix)}</Prefix><MaxUploads>1000</MaxUploads>` +
        '<IsTruncated>false</IsTruncated>' +
        uploads
          .map(
            (u) =>
              `<Upload><Key>${xmlEscape(u.key)}</Key><UploadId>${u.id}</UploadId>` +
              `<Initiated>${u.initiated.toISOString()}</Initiated><StorageClass>STANDARD</StorageClass></Upload>`,
          )
          .join('') +
        '</ListMultipartUploadsResult>';
      return;
    }
    return next();
  });

  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_SECRET },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });

  return {
    endpoint,
    bucket,
    yaml: (rootdirectory = '') => ({
      region: 'us-east-1',
      bucket,
      regionendpoint: endpoint,
      accesskey: S3RVER_KEY,
      secretkey: S3RVER_SECRET,
      forcepathstyle: true,
      rootdirectory,
    }),
    client,
    async objects(prefix = '') {
      const out = new Map<string, Buffer>();
      let token: string | undefined;
      do {
        const res = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        for (const o of res.Contents ?? []) {
          const body = await client.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key! }));
          out.set(o.Key!, Buffer.from(await body.Body!.transformToByteArray()));
        }
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token);
      return out;
    },
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
