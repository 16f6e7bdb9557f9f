import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { RegistryError } from '../../errors.js';
import type { ObjectWriter } from '../../seams.js';
import { s3Error } from './client.js';

/** First size of a part buffer; it doubles up to the part size. */
const MIN_BUFFER = 64 * 1024;

export interface S3WriterTarget {
  client: S3Client;
  bucket: string;
  /** Final object key. */
  key: string;
  /** Every part but the last has exactly this size (S3: at least 5 MiB). */
  partSize: number;
  encrypt: boolean;
}

/**
 * An object written to S3 as it arrives, a part at a time, into a multipart upload to its final key (as
 * distribution's s3 driver does). An incomplete multipart upload is invisible in the bucket, so the object
 * appears only when commit() completes the upload. Objects smaller than one part skip multipart: one
 * PutObject at commit. At most two parts are in memory: one filling while the previous one uploads.
 */
export class S3ObjectWriter implements ObjectWriter {
  private part: Buffer;
  private filled = 0;
  private uploadId: string | undefined;
  private readonly parts: Array<{ PartNumber: number; ETag: string }> = [];
  /** The part upload in flight, if any. */
  private inflight: Promise<void> | undefined;
  private failure: Error | undefined;
  private done = false;

  constructor(private readonly target: S3WriterTarget) {
    this.part = Buffer.alloc(0);
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.done) throw new RegistryError('INTERNAL', 'write after commit/abort');
    let off = 0;
    while (off < chunk.length) {
      this.reserve(chunk.length - off);
      const n = Math.min(chunk.length - off, this.part.length - this.filled);
      this.part.set(chunk.subarray(off, off + n), this.filled);
      this.filled += n;
      off += n;
      if (this.filled === this.target.partSize) await this.flushPart();
    }
  }

  /** Grows the part buffer towards partSize as bytes arrive, so that small objects (manifests) stay small. */
  private reserve(wanted: number): void {
    const { partSize } = this.target;
    if (this.part.length - this.filled >= wanted || this.part.length === partSize) return;
    const grown = Buffer.allocUnsafeSlow(Math.min(partSize, Math.max(this.part.length * 2, this.filled + wanted, MIN_BUFFER)));
    this.part.copy(grown, 0, 0, this.filled);
    this.part = grown;
  }

  /** Starts uploading the full part buffer, after the previous upload finished (back-pressure). */
  private async flushPart(): Promise<void> {
    await this.inflight;
    this.throwIfFailed();
    const body = this.part;
    this.part = Buffer.alloc(0);
    this.filled = 0;
    this.inflight = this.uploadPart(body).catch((e: unknown) => {
      this.failure ??= s3Error('upload part', e);
    });
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  private async uploadPart(body: Buffer): Promise<void> {
    const { client, bucket, key } = this.target;
    if (!this.uploadId) {
      const res = await client.send(
        new CreateMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          ContentType: 'application/octet-stream',
          ServerSideEncryption: this.target.encrypt ? 'AES256' : undefined,
        }),
      );
      if (!res.UploadId) throw new Error('CreateMultipartUpload returned no UploadId');
      this.uploadId = res.UploadId;
    }
    const PartNumber = this.parts.length + 1;
    const res = await client.send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: this.uploadId, PartNumber, Body: body, ContentLength: body.length }),
    );
    if (!res.ETag) throw new Error('UploadPart returned no ETag');
    this.parts.push({ PartNumber, ETag: res.ETag });
  }

  async commit(): Promise<void> {
    if (this.done) throw new RegistryError('INTERNAL', 'commit after commit/abort');
    const { client, bucket, key } = this.target;
    try {
      await this.inflight;
      this.throwIfFailed();
      const last = this.part.subarray(0, this.filled);
      if (!this.uploadId && this.parts.length === 0) {
        await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key,
            Body: last,
            ContentLength: last.length,
            ContentType: 'application/octet-stream',
            ServerSideEncryption: this.target.encrypt ? 'AES256' : undefined,
          }),
        );
      } else {
        if (this.filled > 0) await this.uploadPart(last);
        await client.send(
          new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: this.uploadId, MultipartUpload: { Parts: this.parts } }),
        );
      }
    } catch (e) {
      await this.abort();
      throw e instanceof RegistryError ? e : s3Error('commit', e);
    }
    this.done = true;
    this.part = Buffer.alloc(0);
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    this.part = Buffer.alloc(0);
    await this.inflight;
    if (this.uploadId) {
      // Best effort: a leftover upload is invisible and removed by cleanup() (or a bucket lifecycle rule).
      await this.target.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.target.bucket, Key: this.target.key, UploadId: this.uploadId }))
        .catch(() => {});
    }
  }
}
