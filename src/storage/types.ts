import type { Readable } from 'node:stream';

/** Inclusive byte range, as in HTTP. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * A blob being written. Bytes land in a local temp file that other readers may read while it grows
 * (in-flight coalescing); the blob becomes visible under its digest only through commit(), which verifies
 * the content hash first. abort() removes the temp file. Exactly one of commit/abort is called.
 */
export interface BlobWriter {
  /** Local file the bytes are written to; stays readable through an fd opened before commit. */
  readonly tempPath: string;
  readonly bytesWritten: number;
  write(chunk: Uint8Array): Promise<void>;
  /** Verifies size/digest, then makes the blob visible atomically. Throws DIGEST_INVALID on mismatch (already aborted). */
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/**
 * One storage backend: content-addressed blobs plus small named objects (manifest links, tags, tag lists).
 * Keys are `/`-separated relative paths built by src/storage/keys.ts from validated names only.
 */
export interface StorageDriver {
  readonly kind: string;
  statBlob(digest: string): Promise<{ size: number } | null>;
  /** Throws BLOB_UNKNOWN when absent. */
  readBlob(digest: string, range?: ByteRange): Promise<Readable>;
  /** For drivers that keep blobs as local files: the path, for zero-copy-ish serving. */
  localBlobPath?(digest: string): string;
  /**
   * For drivers with redirect enabled (storage.redirect, s3): a URL the client may fetch the stored blob from
   * directly (presigned, short-lived); undefined to serve it through the cache.
   */
  blobRedirectUrl?(digest: string): Promise<string | undefined>;
  createBlobWriter(digest: string): Promise<BlobWriter>;
  deleteBlob(digest: string): Promise<void>;
  listBlobs(): AsyncIterable<{ digest: string; size: number }>;

  getObject(key: string): Promise<Buffer | null>;
  /** Atomic replace. */
  putObject(key: string, data: Buffer): Promise<void>;
  deleteObject(key: string): Promise<void>;
  /** Every object key below prefix (recursive), in no particular order. */
  listObjects(prefix: string): AsyncIterable<string>;
  /** Removes leftovers of interrupted writes (temp files). Returns how many were removed. */
  cleanup(): Promise<number>;
  close(): Promise<void>;
}
