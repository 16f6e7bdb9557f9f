import type { Readable } from 'node:stream';
import { RegistryError } from '../errors.js';
import { newHasher, parseDigest } from '../oci/digest.js';
import type { ByteRange, CleanupReport, ObjectDriver, ObjectWriter } from '../seams.js';
import { blobKey } from './keys.js';
import type { Spool, SpoolFile } from './spool.js';

/**
 * A blob being written. Bytes land in a local file (`tempPath`) that other readers may read while it grows
 * (in-flight coalescing); the blob becomes visible under its digest only through commit(), which verifies the
 * content hash first. abort() removes everything. Exactly one of commit/abort ends it.
 */
export interface BlobWriter {
  /** Local file holding the bytes written so far; stays readable through an fd opened before commit. */
  readonly tempPath: string;
  readonly bytesWritten: number;
  write(chunk: Uint8Array): Promise<void>;
  /** Verifies the digest, then makes the blob visible atomically. Throws DIGEST_INVALID on mismatch (already aborted). */
  commit(): Promise<void>;
  abort(): Promise<void>;
}

const BLOB_KEY = /^blobs\/(sha256|sha512)\/[0-9a-f]{2}\/([0-9a-f]+)$/;

/**
 * Content-addressed blobs and small named objects (manifest links, tags, tag lists) over any object driver.
 * The one place digests are checked on write: spool → hash → verify → commit, the same for every driver.
 * Drivers whose writers keep no local file (s3, inmemory) get a spool file here, so that concurrent readers
 * always have a local file to follow.
 */
export class BlobStore {
  constructor(
    private readonly driver: ObjectDriver,
    /** Required when the driver's writers have no localPath. */
    private readonly spool?: Spool,
  ) {}

  get kind(): string {
    return this.driver.kind;
  }

  async statBlob(digest: string): Promise<{ size: number } | null> {
    return this.driver.stat(blobKey(digest));
  }

  /** Throws BLOB_UNKNOWN when absent. */
  async readBlob(digest: string, range?: ByteRange): Promise<Readable> {
    const stream = await this.driver.get(blobKey(digest), range);
    if (!stream) throw new RegistryError('BLOB_UNKNOWN', 'blob unknown to registry', { detail: { digest } });
    return stream;
  }

  /** With redirect enabled (storage.redirect, s3): a short-lived URL the client may fetch the stored blob from. */
  async blobRedirectUrl(digest: string): Promise<string | undefined> {
    return this.driver.redirectUrl?.(blobKey(digest));
  }

  async createBlobWriter(digest: string): Promise<BlobWriter> {
    const parsed = parseDigest(digest);
    if (!parsed) throw new RegistryError('DIGEST_INVALID', 'invalid digest', { detail: { digest } });
    const out = await this.driver.writer(blobKey(digest));
    let spool: SpoolFile | undefined;
    if (out.localPath === undefined) {
      if (!this.spool) {
        await out.abort();
        throw new RegistryError('INTERNAL', `storage driver ${this.kind} needs a spool directory`);
      }
      try {
        spool = await this.spool.create();
      } catch (e) {
        await out.abort();
        throw e;
      }
    }
    return new VerifyingWriter(digest, newHasher(parsed.algorithm), out, spool);
  }

  async deleteBlob(digest: string): Promise<void> {
    await this.driver.delete(blobKey(digest));
  }

  async *listBlobs(): AsyncIterable<{ digest: string; size: number }> {
    for await (const o of this.driver.list('blobs')) {
      const m = BLOB_KEY.exec(o.key);
      if (!m) continue;
      const digest = `${m[1]}:${m[2]}`;
      if (parseDigest(digest)) yield { digest, size: o.size };
    }
  }

  getObject(key: string): Promise<Buffer | null> {
    return this.driver.read(key);
  }

  /** Atomic replace. */
  putObject(key: string, data: Buffer): Promise<void> {
    return this.driver.put(key, data);
  }

  deleteObject(key: string): Promise<void> {
    return this.driver.delete(key);
  }

  /** Every object key below prefix (recursive), in no particular order. */
  async *listObjects(prefix: string): AsyncIterable<string> {
    for await (const o of this.driver.list(prefix)) yield o.key;
  }

  /** Removes leftovers of interrupted writes (driver temp objects, spool files); best effort. */
  async cleanup(): Promise<CleanupReport> {
    const report = await this.driver.cleanup();
    return { ...report, removed: report.removed + ((await this.spool?.cleanup()) ?? 0) };
  }

  close(): Promise<void> {
    return this.driver.close();
  }
}

/** Hashes every byte on its way to the driver (and the spool); commits only a matching digest. */
class VerifyingWriter implements BlobWriter {
  private written = 0;
  private done = false;

  constructor(
    private readonly digest: string,
    private readonly hasher: ReturnType<typeof newHasher>,
    private readonly out: ObjectWriter,
    private readonly spool: SpoolFile | undefined,
  ) {}

  get tempPath(): string {
    return this.spool?.path ?? this.out.localPath!;
  }

  get bytesWritten(): number {
    return this.written;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.done) throw new RegistryError('INTERNAL', 'write after commit/abort');
    this.hasher.update(chunk);
    try {
      if (this.spool) await Promise.all([this.spool.write(chunk), this.out.write(chunk)]);
      else await this.out.write(chunk);
    } catch (e) {
      await this.abort();
      throw e instanceof RegistryError
        ? e
        : new RegistryError('STORAGE_ERROR', `spool write failed: ${(e as Error).message}`, { cause: e });
    }
    this.written += chunk.length;
  }

  async commit(): Promise<void> {
    if (this.done) throw new RegistryError('INTERNAL', 'commit after commit/abort');
    const actual = `${this.digest.slice(0, this.digest.indexOf(':'))}:${this.hasher.digest('hex')}`;
    if (actual !== this.digest) {
      await this.abort();
      throw new RegistryError('DIGEST_INVALID', 'content does not match digest', { detail: { digest: this.digest, actual } });
    }
    try {
      await this.out.commit();
    } catch (e) {
      await this.abort();
      throw e;
    }
    this.done = true;
    await this.spool?.release();
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.out.abort().catch(() => {});
    await this.spool?.release();
  }
}
