import type { Logger } from 'pino';
import type { UpstreamConfig } from '../config/types.js';
import type { BlobStore } from '../storage/blobstore.js';
import { repoOfKey } from '../storage/keys.js';
import type { Upstream } from '../upstream/types.js';
import { BlobCache } from './blobs.js';
import { BlobScopes } from './scope.js';
import { NegativeCache } from './negative.js';
import { ManifestCache } from './manifests.js';
import { TagLists } from './tags.js';
import { ReferrersCache } from './referrers.js';
import { noopEvents, type ProxyEvents } from '../seams.js';
export type { BlobSource, DownloadSnapshot } from './blobs.js';
export { BlobScopes, type ReferenceLookup } from './scope.js';
export type { ManifestResult } from './manifests.js';
export type { ReferrersResult } from './referrers.js';

/** An upstream client with its configuration (freshness window, allow/deny, routing). */
export interface UpstreamHandle {
  client: Upstream;
  config: UpstreamConfig;
}

/** The cache policy for all upstreams over one storage. */
export class PullThroughCache {
  readonly blobs: BlobCache;
  readonly manifests: ManifestCache;
  readonly tags: TagLists;
  readonly referrers: ReferrersCache;

  constructor(
    readonly storage: BlobStore,
    logger: Logger,
    events: ProxyEvents = noopEvents,
    opts: {
      /** Which repositories a cached blob may be served for (default: those confirmed by their upstream). */
      scopes?: BlobScopes;
      /** regcache.negativettl (default 0: upstream 404s are not remembered). */
      negativeTtlMs?: number;
      /** regcache.cache.manifestmemory: bytes of manifests kept in memory (default DEFAULT_MANIFEST_MEMORY_BYTES). */
      manifestMemoryBytes?: number;
    } = {},
  ) {
    const negative = new NegativeCache(opts.negativeTtlMs ?? 0);
    this.blobs = new BlobCache(storage, logger, events, opts.scopes ?? new BlobScopes(), negative);
    this.manifests = new ManifestCache(storage, logger, events, negative, opts.manifestMemoryBytes);
    this.tags = new TagLists(storage, logger, events, negative);
    this.referrers = new ReferrersCache(storage, logger, events);
  }

  /** Repositories present in the cache, per upstream name. */
  async cachedRepositories(): Promise<Array<{ upstream: string; repo: string }>> {
    const seen = new Map<string, { upstream: string; repo: string }>();
    for await (const key of this.storage.listObjects('repositories')) {
      const r = repoOfKey(key);
      if (r) seen.set(`${r.upstream}/${r.repo}`, r);
    }
    return [...seen.values()];
  }
}
