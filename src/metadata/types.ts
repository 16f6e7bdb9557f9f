/** What the cache knows about its content, for TTL, LRU eviction, `regcache cache ls` and stats. Times are ms since epoch. */

export interface BlobRecord {
  digest: string;
  size: number;
  /** When it was fetched from upstream (or first seen in storage). */
  fetchedAt: number;
  lastAccess: number;
  /** Upstream it was fetched from (its proxy.ttl applies). */
  upstream?: string;
  /** `upstream/repo` names it was fetched or served for. */
  repos: string[];
}

/** A manifest linked into one repository (the same digest may be linked into several). */
export interface ManifestRecord {
  upstream: string;
  repo: string;
  digest: string;
  size: number;
  mediaType: string;
  fetchedAt: number;
  lastAccess: number;
  /** Digests it references: config and layers, or the child manifests of an index. */
  refs: string[];
}

export interface TagRecord {
  upstream: string;
  repo: string;
  tag: string;
  digest: string;
  /** Last time upstream confirmed tag → digest. */
  validatedAt: number;
}

export const repoName = (upstream: string, repo: string): string => `${upstream}/${repo}`;
export const manifestId = (upstream: string, repo: string, digest: string): string => `${upstream}/${repo}@${digest}`;
export const tagId = (upstream: string, repo: string, tag: string): string => `${upstream}/${repo}:${tag}`;
