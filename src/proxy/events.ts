/** How a request was served, for access logs and metrics. */
export type CacheResult = 'hit' | 'miss' | 'coalesced' | 'revalidated' | 'stale';

/** Hooks the proxy layer calls so that observability (metrics, logs) lives outside the cache policy. */
export interface ProxyEvents {
  coalesced(kind: 'blob' | 'manifest'): void;
  downloadStarted(upstream: string): void;
  downloadFinished(upstream: string, bytes: number, err: Error | undefined): void;
  staleServed(upstream: string, kind: 'manifest' | 'tags', reason: string): void;
}

export const noopEvents: ProxyEvents = {
  coalesced() {},
  downloadStarted() {},
  downloadFinished() {},
  staleServed() {},
};
