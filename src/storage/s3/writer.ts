import { randomUUID } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { RegistryError } from '../../errors.js';
import { newHasher, type ParsedDigest } from '../../oci/digest.js';
import type { BlobWriter } from '../types.js';
import { s3Error } from './client.js';

export interface S3WriterTarget {
  client: S3Client;
  bucket: string;
  /** Final object key of the blob. */
  key: string;
  /** Every part but the last has exactly this size (S3: at least 5 MiB). */
  partSize: number;
  encrypt: boolean;
}

/** Spool file names start with the writer's pid, so cleanup can tell leftovers of dead processes apart. */
export function spoolName(): string {
  return `${process.pid}-${randomUUID()}`;
}

export function spoolOwnerPid(name: string): number | undefined {
  const m = /^(\d+)-/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * A blob written to S3 while it downloads. Bytes go to a local spool file (the `tempPath` concurrent clients
 * read from) and, a part at a time, into a multipart upload to the blob's final key. An incomplete multipart
 * upload is invisible in the bucket, so the blob appears only when commit() completes the upload, after the
 * digest matched. Blobs smaller than one part skip multipart: one PutObject at commit.
 */
export class S3BlobWriter implements BlobWriter {
  private readonly hasher;
  private written = 0;
  /** Bytes handed to S3 as parts (uploaded or in flight). */
  private uploaded = 0;
  private uploadId: string | undefined;
  private readonly parts: Array<{ PartNumber: number; ETag: string }> = [];
  /** The background loop uploading full parts, while one runs. */
  private pump: Promise<void> | undefined;
  private failure: Error | undefined;
  private done = false;

  private constructor(
    private readonly target: S3WriterTarget,
    private readonly digest: ParsedDigest,
    readonly tempPath: string,
    private readonly fh: FileHandle,
    private readonly onClose: () => void,
  ) {
    this.hasher = newHasher(digest.algorithm);
  }

  static async create(
    target: S3WriterTarget,
    digest: ParsedDigest,
    spoolDir: string,
    onClose: () => void,
  ): Promise<S3BlobWriter> {
    const tempPath = path.join(spoolDir, spoolName());
    let fh: FileHandle;
    try {
      fh = await open(tempPath, 'wx+', 0o600);
    } catch (e) {
      throw new RegistryError('STORAGE_ERROR', `cannot create spool file in ${spoolDir}: ${(e as Error).message}`, { cause: e });
    }
    return new S3BlobWriter(target, digest, tempPath, fh, onClose);
  }

  get bytesWritten(): number {
    return this.written;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.done) throw new RegistryError('INTERNAL', 'write after commit/abort');
    if (this.failure) {
      const err = this.failure;
      await this.abort();
      throw err;
    }
    this.hasher.update(chunk);
    let off = 0;
    try {
      while (off < chunk.length) {
        const { bytesWritten } = await this.fh.write(chunk, off, chunk.length - off, this.written + off);
        off += bytesWritten;
      }
    } catch (e) {
      await this.abort();
      throw new RegistryError('STORAGE_ERROR', `spool write failed: ${(e as Error).message}`, { cause: e });
    }
    this.written += chunk.length;
    if (this.written - this.uploaded >= this.target.partSize && !this.pump && !this.failure) {
      this.pump = this.uploadFullParts().catch((e: unknown) => {
        this.failure ??= s3Error('upload part', e);
      });
    }
  }

  private async uploadFullParts(): Promise<void> {
    await null; // lets write() assign this.pump before the loop can clear it
    while (!this.done && this.written - this.uploaded >= this.target.partSize) {
      await this.uploadPart(this.target.partSize);
    }
    this.pump = undefined;
  }

  private async uploadPart(len: number): Promise<void> {
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
    const body = await this.readSpool(this.uploaded, len);
    const PartNumber = this.parts.length + 1;
    const res = await client.send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: this.uploadId, PartNumber, Body: body, ContentLength: len }),
    );
    if (!res.ETag) throw new Error('UploadPart returned no ETag');
    this.parts.push({ PartNumber, ETag: res.ETag });
    this.uploaded += len;
  }

  private async readSpool(pos: number, len: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await this.fh.read(buf, got, len - got, pos + got);
      if (bytesRead === 0) throw new Error('spool file shorter than expected');
      got += bytesRead;
    }
    return buf;
  }

  async commit(): Promise<void> {
    if (this.done) throw new RegistryError('INTERNAL', 'commit after commit/abort');
    const actual = `${this.digest.algorithm}:${this.hasher.digest('hex')}`;
    if (actual !== this.digest.digest) {
      await this.abort();
      throw new RegistryError('DIGEST_INVALID', 'content does not match digest', {
        detail: { digest: this.digest.digest, actual },
      });
    }
    await this.pump;
    if (this.failure) {
      const err = this.failure;
      await this.abort();
      throw err;
    }
    const { client, bucket, key } = this.target;
    try {
      if (!this.uploadId) {
        await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key,
            Body: await this.readSpool(0, this.written),
            ContentLength: this.written,
            ContentType: 'application/octet-stream',
            ServerSideEncryption: this.target.encrypt ? 'AES256' : undefined,
          }),
        );
      } else {
        if (this.written > this.uploaded) await this.uploadPart(this.written - this.uploaded);
        await client.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: key,
            UploadId: this.uploadId,
            MultipartUpload: { Parts: this.parts },
          }),
        );
      }
    } catch (e) {
      await this.abort();
      throw s3Error('commit', e);
    }
    this.done = true;
    await this.release();
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.pump?.catch(() => {});
    if (this.uploadId) {
      // Best effort: a leftover upload is invisible and removed by cleanup() (or a bucket lifecycle rule).
      await this.target.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.target.bucket, Key: this.target.key, UploadId: this.uploadId }))
        .catch(() => {});
    }
    await this.release();
  }

  /** Readers that opened the spool file keep reading it through their own fd after the unlink. */
  private async release(): Promise<void> {
    await this.fh.close().catch(() => {});
    await unlink(this.tempPath).catch(() => {});
    this.onClose();
  }
}
