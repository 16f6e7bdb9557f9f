/** How a request was served, for access logs and metrics. */
export type CacheResult = 'hit' | 'miss' | 'coalesced' | 'revalidated' | 'stale';

/** Hooks the proxy layer calls so that observability (metrics, logs) lives outside the cache policy. */
export interface ProxyEvents {
  coalesced(kind: 'blob' | 'manifest'): void;
  downloadStarted(upstream: string): void;
  downloadFinished(upstream: string, bytes: number, err: Error | undefined): void;
  staleServed(upstream: string, kind: 'manifest' | 'tags', reason: string): void;
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
