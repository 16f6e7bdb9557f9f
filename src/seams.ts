/**
 * The seams of regcache: interfaces that one layer defines and another implements. A new storage backend
 * (GCS, Azure), a new coordinator, a new client-auth scheme or a new consumer of cache events implements one
 * of these and is registered where its kind is chosen (src/storage/index.ts, src/server/security.ts); the
 * composition root (src/server/app.ts) does not change. This module is a leaf: it imports nothing.
 */
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';

// ---------------------------------------------------------------------------------------------------------
// Storage: a narrow, path-based object driver (distribution's storagedriver.StorageDriver). It knows nothing
// about digests; src/storage/blobstore.ts verifies content above it, once for every driver.

/** Inclusive byte range, as in HTTP. */
export interface ByteRange {
  start: number;
  end: number;
}

/** An object being written. Invisible under its key until commit(); abort() leaves nothing. Exactly one of them ends it. */
export interface ObjectWriter {
  /**
   * A local file holding the bytes written so far, readable (through an fd opened at any time before commit)
   * while it grows and after commit. Drivers that keep objects elsewhere leave it undefined and the blob
   * store spools a local copy for concurrent readers.
   */
  readonly localPath?: string;
  /** Appends. */
  write(chunk: Uint8Array): Promise<void>;
  /** Makes the object visible under its key, atomically (a reader sees all of it or nothing). */
  commit(): Promise<void>;
  /** Idempotent; also safe after a failed commit. */
  abort(): Promise<void>;
}

/**
 * A storage backend addressed by `/`-separated relative keys. Keys reach a driver only through
 * src/storage/checked.ts, which has validated them (no empty, `.` or `..` segments, no `\` or NUL).
 * Absent keys are not errors: stat/get answer null, delete does nothing.
 */
export interface ObjectDriver {
  /** Name in metrics and health checks: filesystem, inmemory, s3. */
  readonly kind: string;
  stat(key: string): Promise<{ size: number } | null>;
  get(key: string, range?: ByteRange): Promise<Readable | null>;
  /** A small object's whole content. */
  read(key: string): Promise<Buffer | null>;
  /** Atomic create or replace. */
  put(key: string, data: Buffer): Promise<void>;
  writer(key: string): Promise<ObjectWriter>;
  delete(key: string): Promise<void>;
  /** Every object below `prefix` (a key without trailing `/`), recursively, in no particular order. */
  list(prefix: string): AsyncIterable<{ key: string; size: number }>;
  /** Drivers that keep objects as local files: the path of a stored object. */
  localPath?(key: string): string;
  /** Drivers that can hand out short-lived URLs (storage.redirect): where a client may fetch the object itself. */
  redirectUrl?(key: string): Promise<string | undefined>;
  /**
   * Best effort: removes leftovers of interrupted writes of dead writers. What it could not do (a permission
   * or an API the server lacks) is a warning, never a failure: a mirror must start without it.
   */
  cleanup(): Promise<CleanupReport>;
  close(): Promise<void>;
}

export interface CleanupReport {
  removed: number;
  warnings: string[];
}

/**
 * A capability of a response body: bytes [start, end] of an open local file. The HTTP writer sends such a
 * body with pooled buffers straight from the fd instead of reading it as a stream.
 */
export interface FileRegion {
  readonly fd: number;
  readonly start: number;
  /** Inclusive. */
  readonly end: number;
}

export function fileRegionOf(body: unknown): FileRegion | undefined {
  return (body as { fileRegion?: FileRegion } | null)?.fileRegion;
}

// ---------------------------------------------------------------------------------------------------------
// Coordination of upstream fetches across replicas sharing one storage (src/coordination/ implements it with
// Redis). A single process needs none: in-process coalescing already makes one fetch per digest.

export interface FetchLease {
  /** Gives up the lease (after commit or failure). Never throws. */
  release(): Promise<void>;
}

export interface Coordinator {
  /**
   * Tries to become the only replica fetching `key` (e.g. `blob:sha256:...`). Returns a lease, or null when
   * another live replica holds it. A lease expires by itself after `ttlMs` unless renewed, so a replica
   * that dies mid-download does not block others for long; the implementation renews it while held.
   */
  tryAcquire(key: string, ttlMs: number): Promise<FetchLease | null>;
  /** Resolves when `key` is no longer leased by anyone, or after `timeoutMs` (whichever first). */
  waitReleased(key: string, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Access recency shared by the replicas (src/coordination/access.ts keeps it in Redis), so that the leader's
 * eviction plan sees what is hot on every replica, not only on itself.
 */
export interface AccessRecorder {
  /** Notes an access to `id` (a manifest or blob id of the eviction plan). In memory only: sent later, in batches. */
  touched(id: string, at: number): void;
  /** The last access of every id the cluster noted (pending ones of this replica included). */
  lastAccesses(): Promise<Map<string, number>>;
  /** Drops ids of removed content. */
  forget(ids: string[]): Promise<void>;
}

/** Leader election for cluster-wide jobs (eviction sweeps). */
export interface Leadership {
  isLeader(): boolean;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------
// Client authentication of the registry API (src/auth/htpasswd.ts implements it).

export interface AuthProvider {
  /** Resolves for an authenticated request; throws a RegistryError (401 with a challenge, 429) to refuse it. */
  authenticate(req: IncomingMessage): Promise<void>;
  close(): void;
}

// ---------------------------------------------------------------------------------------------------------
// Events of the cache policy (src/proxy/), consumed by metrics and the metadata index.

/** How a request was served, for access logs and metrics. */
export type CacheResult = 'hit' | 'miss' | 'coalesced' | 'revalidated' | 'stale';

export interface ProxyEvents {
  coalesced(kind: 'blob' | 'manifest'): void;
  downloadStarted(upstream: string): void;
  downloadFinished(upstream: string, bytes: number, err: Error | undefined): void;
  staleServed(upstream: string, kind: 'manifest' | 'tags' | 'referrers', reason: string): void;
  /** A blob fetched from upstream was verified and committed to storage. */
  blobFetched(upstream: string, repo: string, digest: string, size: number): void;
  /** A blob is being served to a client (GET). */
  blobServed(upstream: string, repo: string, digest: string, result: CacheResult): void;
  /** A manifest fetched from upstream was stored (bytes as a blob, linked into the repository). */
  manifestFetched(upstream: string, repo: string, digest: string, mediaType: string, bytes: Buffer): void;
  /** A manifest is being served to a client (GET or HEAD, by tag or digest). */
  manifestServed(upstream: string, repo: string, digest: string, result: CacheResult): void;
  /** Upstream confirmed (or moved) tag → digest. */
  tagValidated(upstream: string, repo: string, tag: string, digest: string): void;
}

export const noopEvents: ProxyEvents = {
  coalesced() {},
  downloadStarted() {},
  downloadFinished() {},
  staleServed() {},
  blobFetched() {},
  blobServed() {},
  manifestFetched() {},
  manifestServed() {},
  tagValidated() {},
};
