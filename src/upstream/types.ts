import type { Readable } from 'node:stream';
import type { BreakerStatus } from './breaker.js';

/**
 * What the proxy layer needs from an upstream registry. Implemented by src/upstream/client.ts.
 *
 * Errors are RegistryError:
 *  - upstream 404 → MANIFEST_UNKNOWN / BLOB_UNKNOWN / NAME_UNKNOWN (status 404): authoritative "not there";
 *  - 401/403 after auth → UNAUTHORIZED / DENIED; token endpoint failing → UNAUTHORIZED;
 *  - 429 → TOOMANYREQUESTS (Retry-After header copied);
 *  - connect failure, timeouts, resets, 5xx → UNAVAILABLE (503) or UPSTREAM_ERROR (502);
 *  - circuit breaker open (src/upstream/breaker.ts) → UNAVAILABLE at once, with Retry-After.
 * Never carries credentials in message/detail.
 */
export interface ManifestHead {
  digest: string;
  mediaType: string;
  size: number;
}

/** A descriptor in a referrers index (kept as the upstream sent it). */
export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  [key: string]: unknown;
}

export interface ManifestResponse {
  bytes: Buffer;
  mediaType: string;
  /** sha256 of bytes (computed); equals the requested digest when fetched by digest (else an error was thrown). */
  digest: string;
}

export interface BlobResponse {
  /** Content-Length when the upstream sent one. */
  size: number | null;
  /** Body stream; emits an error on reset, truncation against Content-Length, or idle timeout. */
  body: Readable;
}

export interface RateLimitInfo {
  limit?: number;
  remaining?: number;
  updatedAt: number;
}

export interface Upstream {
  readonly name: string;
  /** Repository name as the upstream wants it (Docker Hub: `alpine` → `library/alpine`). */
  normalizeRepo(repo: string): string;
  headManifest(repo: string, ref: string, signal?: AbortSignal): Promise<ManifestHead>;
  getManifest(repo: string, ref: string, signal?: AbortSignal): Promise<ManifestResponse>;
  headBlob(repo: string, digest: string, signal?: AbortSignal): Promise<{ size: number }>;
  getBlob(repo: string, digest: string, signal?: AbortSignal): Promise<BlobResponse>;
  /** All tags (follows pagination). */
  listTags(repo: string, signal?: AbortSignal): Promise<string[]>;
  /**
   * The OCI 1.1 referrers of a manifest (all pages, unfiltered): the descriptors of its image index.
   * `undefined` when the upstream answers 404, i.e. it has no referrers API (clients then use the
   * `sha256-<hex>` tag schema).
   */
  listReferrers(repo: string, digest: string, signal?: AbortSignal): Promise<ReferrerDescriptor[] | undefined>;
  rateLimit(): RateLimitInfo | undefined;
  /** The circuit breaker's state (src/upstream/breaker.ts); absent for clients without one. */
  breaker?(): BreakerStatus;
  /** Another process of this server (a worker) got an answer from this upstream: closes the circuit breaker. */
  markReachable?(): void;
  close(): Promise<void>;
}
