import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { RegistryError } from '../../errors.js';
import type { StorageConfig } from '../../config/types.js';
import type { ByteRange, CleanupReport, ObjectDriver, ObjectWriter } from '../../seams.js';
import { createS3Client, isS3NotFound, s3Error } from './client.js';
import { exactRange } from './range.js';
import { S3ObjectWriter } from './writer.js';

export type S3StorageConfig = Extract<StorageConfig, { driver: 's3' }>;

export interface S3DriverOptions {
  /** Answer blob GETs with a redirect to a presigned URL (distribution's storage.redirect). */
  redirect?: boolean;
  /**
   * cleanup() aborts multipart uploads started longer ago than this (default 1 h): younger ones may be live
   * downloads of another replica.
   */
  staleUploadMs?: number;
  /** Lifetime of presigned redirect URLs (default 20 min, as distribution). */
  redirectExpirySec?: number;
  /** An existing client (tests); otherwise one is built from the config. */
  client?: S3Client;
}

const DEFAULT_STALE_UPLOAD_MS = 60 * 60 * 1000;
/** distribution's default lifetime of a presigned redirect. */
const DEFAULT_REDIRECT_EXPIRY_SEC = 20 * 60;

/**
 * S3 (and S3-compatible: MinIO, Ceph RGW, R2, ...) objects under `<rootdirectory>/` in one bucket, with the
 * same key layout as the filesystem driver. PutObject and CompleteMultipartUpload are atomic, so a reader
 * sees a whole object or none; several replicas can share one bucket.
 */
export class S3Driver implements ObjectDriver {
  readonly kind = 's3';
  readonly redirectUrl?: (key: string) => Promise<string | undefined>;
  private readonly prefix: string;

  private constructor(
    readonly client: S3Client,
    readonly bucket: string,
    private readonly cfg: S3StorageConfig,
    private readonly opts: S3DriverOptions,
  ) {
    const root = cfg.rootdirectory.replace(/^\/+|\/+$/g, '');
    this.prefix = root ? `${root}/` : '';
    if (opts.redirect) {
      const expiresIn = opts.redirectExpirySec ?? DEFAULT_REDIRECT_EXPIRY_SEC;
      this.redirectUrl = (key) => getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }), { expiresIn });
    }
  }

  static async open(cfg: S3StorageConfig, opts: S3DriverOptions = {}): Promise<S3Driver> {
    const client = opts.client ?? createS3Client(cfg);
    try {
      await client.send(new HeadBucketCommand({ Bucket: cfg.bucket }));
    } catch (e) {
      if (!opts.client) client.destroy();
      throw s3Error(`access to bucket "${cfg.bucket}"`, e);
    }
    return new S3Driver(client, cfg.bucket, cfg, opts);
  }

  async stat(key: string): Promise<{ size: number } | null> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
      return { size: res.ContentLength ?? 0 };
    } catch (e) {
      if (isS3NotFound(e)) return null;
      throw s3Error('stat', e);
    }
  }

  async get(key: string, range?: ByteRange): Promise<Readable | null> {
    try {
      const res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.prefix + key,
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }),
      );
      return range ? exactRange(res.Body as Readable, range, res.ContentRange) : (res.Body as Readable);
    } catch (e) {
      if (isS3NotFound(e)) return null;
      if ((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 416) {
        throw new RegistryError('RANGE_INVALID', 'requested range not satisfiable');
      }
      throw s3Error('read', e);
    }
  }

  async read(key: string): Promise<Buffer | null> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
      return Buffer.from(await res.Body!.transformToByteArray());
    } catch (e) {
      if (isS3NotFound(e)) return null;
      throw s3Error('read', e);
    }
  }

  async put(key: string, data: Buffer): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.prefix + key,
          Body: data,
          ContentLength: data.length,
          ServerSideEncryption: this.cfg.encrypt ? 'AES256' : undefined,
        }),
      );
    } catch (e) {
      throw s3Error('write', e);
    }
  }

  async writer(key: string): Promise<ObjectWriter> {
    return new S3ObjectWriter({
      client: this.client,
      bucket: this.bucket,
      key: this.prefix + key,
      partSize: this.cfg.chunksize,
      encrypt: this.cfg.encrypt,
    });
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
    } catch (e) {
      if (!isS3NotFound(e)) throw s3Error('delete', e);
    }
  }

  async *list(prefix: string): AsyncIterable<{ key: string; size: number }> {
    let ContinuationToken: string | undefined;
    do {
      let res;
      try {
        res = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${this.prefix}${prefix}/`, ContinuationToken }),
        );
      } catch (e) {
        throw s3Error('list', e);
      }
      for (const o of res.Contents ?? []) {
        if (o.Key?.startsWith(this.prefix)) yield { key: o.Key.slice(this.prefix.length), size: o.Size ?? 0 };
      }
      ContinuationToken = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  /**
   * Aborts multipart uploads under the root that are older than `staleUploadMs`: uploads of a crashed
   * replica; a younger one may be a live download elsewhere. Servers without ListMultipartUploads (s3rver,
   * some S3-compatible services) and IAM policies without s3:ListBucketMultipartUploads get a warning: the
   * leftovers are invisible and a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes them.
   */
  async cleanup(): Promise<CleanupReport> {
    let removed = 0;
    const cutoff = Date.now() - (this.opts.staleUploadMs ?? DEFAULT_STALE_UPLOAD_MS);
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    do {
      let res;
      try {
        res = await this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix, KeyMarker, UploadIdMarker }),
        );
      } catch (e) {
        return {
          removed,
          warnings: [
            `${s3Error('list multipart uploads', e).message}: incomplete uploads of crashed replicas are not removed at start; ` +
              'add an AbortIncompleteMultipartUpload lifecycle rule to the bucket, or allow s3:ListBucketMultipartUploads',
          ],
        };
      }
      for (const u of res.Uploads ?? []) {
        if (!u.Key || !u.UploadId || (u.Initiated && u.Initiated.getTime() > cutoff)) continue;
        try {
          await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }));
          removed++;
        } catch (e) {
          if (!isS3NotFound(e)) throw s3Error('abort multipart upload', e);
        }
      }
      KeyMarker = res.IsTruncated ? res.NextKeyMarker : undefined;
      UploadIdMarker = res.IsTruncated ? res.NextUploadIdMarker : undefined;
    } while (KeyMarker);
    return { removed, warnings: [] };
  }

  async close(): Promise<void> {
    if (!this.opts.client) this.client.destroy();
  }
}
