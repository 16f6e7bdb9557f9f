import { mkdir, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
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
import { RegistryError } from '../errors.js';
import { parseDigest } from '../oci/digest.js';
import type { StorageConfig } from '../config/types.js';
import { blobKey } from './keys.js';
import { createS3Client, isS3NotFound, s3Error } from './s3/client.js';
import { S3BlobWriter, spoolOwnerPid } from './s3/writer.js';
import type { BlobWriter, ByteRange, StorageDriver } from './types.js';

export type S3StorageConfig = Extract<StorageConfig, { driver: 's3' }>;

export interface S3StorageOptions {
  /** Answer blob GETs with a redirect to a presigned URL (distribution's storage.redirect). */
  redirect?: boolean;
  /** Where blobs are spooled while they download (default: <tmpdir>/regcache-spool). */
  spoolDir?: string;
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

const BLOB_KEY = /^blobs\/(sha256|sha512)\/[0-9a-f]{2}\/([0-9a-f]+)$/;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * S3 (and S3-compatible: MinIO, Ceph RGW, R2, ...) storage. Objects live under `<rootdirectory>/` in the bucket
 * with the same key layout as the filesystem driver. PutObject and CompleteMultipartUpload are atomic, so a
 * reader sees a whole object or none; several replicas can share one bucket.
 */
export class S3Storage implements StorageDriver {
  readonly kind = 's3';
  readonly blobRedirectUrl?: (digest: string) => Promise<string | undefined>;
  private readonly prefix: string;
  private readonly active = new Set<string>();

  private constructor(
    readonly client: S3Client,
    readonly bucket: string,
    rootdirectory: string,
    private readonly cfg: S3StorageConfig,
    readonly spoolDir: string,
    private readonly opts: S3StorageOptions,
  ) {
    const root = rootdirectory.replace(/^\/+|\/+$/g, '');
    this.prefix = root ? `${root}/` : '';
    if (opts.redirect) {
      const expiresIn = opts.redirectExpirySec ?? 20 * 60;
      this.blobRedirectUrl = (digest) =>
        getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.key(blobKey(digest)) }), { expiresIn });
    }
  }

  static async open(cfg: S3StorageConfig, opts: S3StorageOptions = {}): Promise<S3Storage> {
    const client = opts.client ?? createS3Client(cfg);
    const spoolDir = path.resolve(opts.spoolDir ?? path.join(os.tmpdir(), 'regcache-spool'));
    try {
      await mkdir(spoolDir, { recursive: true });
    } catch (e) {
      throw new RegistryError('STORAGE_ERROR', `cannot create spool directory ${spoolDir}: ${(e as Error).message}`);
    }
    try {
      await client.send(new HeadBucketCommand({ Bucket: cfg.bucket }));
    } catch (e) {
      if (!opts.client) client.destroy();
      throw s3Error(`access to bucket "${cfg.bucket}"`, e);
    }
    return new S3Storage(client, cfg.bucket, cfg.rootdirectory, cfg, spoolDir, opts);
  }

  /** Bucket key of a storage key; refuses anything that could address outside the root. */
  private key(k: string): string {
    if (!k || k.split('/').some((s) => s === '' || s === '.' || s === '..') || k.includes('\\') || k.includes('\0')) {
      throw new RegistryError('NAME_INVALID', 'invalid storage key');
    }
    return this.prefix + k;
  }

  async statBlob(digest: string): Promise<{ size: number } | null> {
    const Key = this.key(blobKey(digest));
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return { size: res.ContentLength ?? 0 };
    } catch (e) {
      if (isS3NotFound(e)) return null;
      throw s3Error('stat', e);
    }
  }

  async readBlob(digest: string, range?: ByteRange): Promise<Readable> {
    const Key = this.key(blobKey(digest));
    try {
      const res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key,
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }),
      );
      return res.Body as Readable;
    } catch (e) {
      if (isS3NotFound(e)) throw new RegistryError('BLOB_UNKNOWN', 'blob unknown to registry', { detail: { digest } });
      if ((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 416) {
        throw new RegistryError('RANGE_INVALID', 'requested range not satisfiable');
      }
      throw s3Error('read', e);
    }
  }

  async createBlobWriter(digest: string): Promise<BlobWriter> {
    const parsed = parseDigest(digest);
    if (!parsed) throw new RegistryError('DIGEST_INVALID', 'invalid digest', { detail: { digest } });
    const target = {
      client: this.client,
      bucket: this.bucket,
      key: this.key(blobKey(digest)),
      partSize: this.cfg.chunksize,
      encrypt: this.cfg.encrypt,
    };
    let tempPath = '';
    const w = await S3BlobWriter.create(target, parsed, this.spoolDir, () => this.active.delete(tempPath));
    tempPath = w.tempPath;
    this.active.add(tempPath);
    return w;
  }

  async deleteBlob(digest: string): Promise<void> {
    await this.deleteObject(blobKey(digest));
  }

  async *listBlobs(): AsyncIterable<{ digest: string; size: number }> {
    for await (const obj of this.list('blobs/')) {
      const m = BLOB_KEY.exec(obj.key);
      if (!m) continue;
      const digest = `${m[1]}:${m[2]}`;
      if (parseDigest(digest)) yield { digest, size: obj.size };
    }
  }

  async getObject(key: string): Promise<Buffer | null> {
    const Key = this.key(key);
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      return Buffer.from(await res.Body!.transformToByteArray());
    } catch (e) {
      if (isS3NotFound(e)) return null;
      throw s3Error('read', e);
    }
  }

  async putObject(key: string, data: Buffer): Promise<void> {
    const Key = this.key(key);
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key,
          Body: data,
          ContentLength: data.length,
          ServerSideEncryption: this.cfg.encrypt ? 'AES256' : undefined,
        }),
      );
    } catch (e) {
      throw s3Error('write', e);
    }
  }

  async deleteObject(key: string): Promise<void> {
    const Key = this.key(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (e) {
      if (!isS3NotFound(e)) throw s3Error('delete', e);
    }
  }

  async *listObjects(prefix: string): AsyncIterable<string> {
    const p = prefix.replace(/\/+$/, '');
    this.key(p);
    for await (const obj of this.list(`${p}/`)) yield obj.key;
  }

  /** Objects below a storage-key prefix, keys relative to the root. */
  private async *list(prefix: string): AsyncIterable<{ key: string; size: number }> {
    let ContinuationToken: string | undefined;
    do {
      let res;
      try {
        res = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken }),
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
   * Aborts multipart uploads under the root that are older than `staleUploadMs` (downloads of a crashed
   * replica; a younger one may be a live download elsewhere), and removes spool files of dead processes
   * and this process's writers that are no longer open.
   */
  async cleanup(): Promise<number> {
    let removed = 0;
    const cutoff = Date.now() - (this.opts.staleUploadMs ?? 60 * 60 * 1000);
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    do {
      let res;
      try {
        res = await this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix, KeyMarker, UploadIdMarker }),
        );
      } catch (e) {
        throw s3Error('list multipart uploads', e);
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

    for (const name of await readdir(this.spoolDir).catch(() => [] as string[])) {
      const file = path.join(this.spoolDir, name);
      const pid = spoolOwnerPid(name);
      const leftover = pid === undefined || (pid === process.pid ? !this.active.has(file) : !isAlive(pid));
      if (!leftover) continue;
      await rm(file, { force: true, recursive: true });
      removed++;
    }
    return removed;
  }

  async close(): Promise<void> {
    if (!this.opts.client) this.client.destroy();
  }
}
