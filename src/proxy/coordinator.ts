/**
 * Cross-replica coordination of upstream fetches (several regcache processes sharing one storage).
 * A single process needs none: in-process coalescing in BlobCache already makes one fetch per digest.
 * The Redis implementation lives in src/coordination/.
 */
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
