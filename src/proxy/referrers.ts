import type { Logger } from 'pino';
import { RegistryError } from '../errors.js';
import { referrersKey } from '../storage/keys.js';
import type { BlobStore } from '../storage/blobstore.js';
import type { ReferrerDescriptor, Upstream } from '../upstream/types.js';
import type { CacheResult, ProxyEvents } from '../seams.js';
import { parseRecord } from './records.js';

interface ReferrersRecord {
  manifests: ReferrerDescriptor[];
  fetchedAt: number;
}

export interface ReferrersResult {
  /** undefined: the upstream has no referrers API (answer 404, clients fall back to the tag schema). */
  manifests: ReferrerDescriptor[] | undefined;
  result: CacheResult;
}

const isRecord = (r: Partial<ReferrersRecord>): boolean => Array.isArray(r.manifests) && typeof r.fetchedAt === 'number';

/**
 * OCI 1.1 referrers lists, with the tag freshness rules: within the freshness window the last answer is
 * served with no upstream request; after it the upstream is asked again; when the upstream fails (not a
 * 404: that is its answer) the last answer is served, logged as stale. The whole unfiltered list is kept;
 * the artifactType filter is applied by the caller, so every filter can be served from one record.
 */
export class ReferrersCache {
  private readonly inflight = new Map<string, Promise<ReferrersResult>>();

  constructor(
    private readonly storage: BlobStore,
    private readonly logger: Logger,
    private readonly events: ProxyEvents,
    private readonly now: () => number = Date.now,
  ) {}

  async list(upstream: Upstream, freshnessMs: number, repo: string, digest: string): Promise<ReferrersResult> {
    const key = `${upstream.name}/${repo}@${digest}`;
    let p = this.inflight.get(key);
    if (!p) {
      p = this.fetch(upstream, freshnessMs, repo, digest).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async fetch(upstream: Upstream, freshnessMs: number, repo: string, digest: string): Promise<ReferrersResult> {
    const key = referrersKey(upstream.name, repo, digest);
    const last = parseRecord<ReferrersRecord>(await this.storage.getObject(key), isRecord);
    if (last && this.now() - last.fetchedAt < freshnessMs) return { manifests: last.manifests, result: 'hit' };
    let manifests: ReferrerDescriptor[] | undefined;
    try {
      manifests = await upstream.listReferrers(repo, digest);
    } catch (e) {
      if (!last || (e instanceof RegistryError && e.status === 404)) throw e;
      this.events.staleServed(upstream.name, 'referrers', e instanceof RegistryError ? e.code : 'error');
      this.logger.warn({ upstream: upstream.name, repo, digest, reason: (e as Error).message }, 'upstream failed; serving cached referrers');
      return { manifests: last.manifests, result: 'stale' };
    }
    if (manifests === undefined) {
      // No referrers API (any more): nothing to keep; the tag schema goes through the mirror as tags.
      if (last) await this.storage.deleteObject(key).catch(() => undefined);
      return { manifests: undefined, result: 'miss' };
    }
    await this.storage.putObject(key, Buffer.from(JSON.stringify({ manifests, fetchedAt: this.now() } satisfies ReferrersRecord)));
    return { manifests, result: last ? 'revalidated' : 'miss' };
  }
}
