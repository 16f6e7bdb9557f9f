import type { Logger } from 'pino';
import { RegistryError } from '../errors.js';
import { referrersKey } from '../storage/keys.js';
import type { BlobStore } from '../storage/blobstore.js';
import type { ReferrerDescriptor, Upstream } from '../upstream/types.js';
import type { CacheResult, ProxyEvents } from '../seams.js';
import { parseRecord } from './records.js';

interface ReferrersRecord {
  /** null: the upstream answered that it has no referrers API (404); absent: never asked (only a tag note). */
  manifests?: ReferrerDescriptor[] | null;
  fetchedAt: number;
  /**
   * The upstream answered 404 for the subject's `sha256-<hex>` tag (the tag schema: it has no referrers), so
   * that with the upstream down a client walking the tag schema gets that 404 again, not a 503.
   */
  schemaTagAbsent?: true;
}

export interface ReferrersResult {
  /** undefined: the upstream has no referrers API (answer 404, clients fall back to the tag schema). */
  manifests: ReferrerDescriptor[] | undefined;
  result: CacheResult;
}

const isRecord = (r: Partial<ReferrersRecord>): boolean =>
  (r.manifests === null || Array.isArray(r.manifests) || (r.manifests === undefined && r.schemaTagAbsent === true)) && typeof r.fetchedAt === 'number';

/**
 * OCI 1.1 referrers lists, with the tag freshness rules: within the freshness window the last answer is
 * served with no upstream request; after it the upstream is asked again; when the upstream fails (not a
 * 404: that is its answer) the last answer is served, logged as stale. The whole unfiltered list is kept;
 * the artifactType filter is applied by the caller, so every filter can be served from one record.
 * An upstream without the API is remembered the same way, so that with the upstream down clients still get
 * the 404 that sends them to the sha256-<hex> tag schema (served from the cache as tags), not a 503.
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
    const stored = parseRecord<ReferrersRecord>(await this.storage.getObject(key), isRecord);
    const last = stored && stored.manifests !== undefined ? stored : undefined;
    if (last && this.now() - last.fetchedAt < freshnessMs) return { manifests: last.manifests ?? undefined, result: 'hit' };
    let manifests: ReferrerDescriptor[] | undefined;
    try {
      manifests = await upstream.listReferrers(repo, digest);
    } catch (e) {
      if (!last || (e instanceof RegistryError && e.status === 404)) throw e;
      this.events.staleServed(upstream.name, 'referrers', e instanceof RegistryError ? e.code : 'error');
      this.logger.warn(
        { upstream: upstream.name, repo, digest, reason: (e as Error).message, ...(last.manifests === null && { referrersApi: false }) },
        'upstream failed; serving cached referrers',
      );
      return { manifests: last.manifests ?? undefined, result: 'stale' };
    }
    // undefined: no referrers API; kept too, so that it is answered the same when the upstream is down.
    const rec: ReferrersRecord = { manifests: manifests ?? null, fetchedAt: this.now() };
    if (stored?.schemaTagAbsent) rec.schemaTagAbsent = true;
    await this.storage.putObject(key, Buffer.from(JSON.stringify(rec)));
    return { manifests, result: last ? 'revalidated' : 'miss' };
  }

  /** What the upstream answered for the tag-schema tag (`sha256-<hex>`) of `digest`: absent (404) or present. */
  async noteSchemaTag(upstream: Upstream, repo: string, digest: string, present: boolean): Promise<void> {
    const key = referrersKey(upstream.name, repo, digest);
    const last = parseRecord<ReferrersRecord>(await this.storage.getObject(key), isRecord);
    if (Boolean(last?.schemaTagAbsent) === !present) return;
    if (!present) {
      await this.storage.putObject(key, Buffer.from(JSON.stringify({ ...(last ?? { fetchedAt: 0 }), schemaTagAbsent: true } satisfies ReferrersRecord)));
      return;
    }
    const { schemaTagAbsent: _drop, ...rest } = last!;
    if (rest.manifests === undefined) await this.storage.deleteObject(key).catch(() => undefined);
    else await this.storage.putObject(key, Buffer.from(JSON.stringify(rest)));
  }

  /**
   * The upstream failed on the tag-schema tag of `digest` and nothing is cached for it: true when it last
   * answered that the tag is absent (then the mirror answers 404 again, logged as stale).
   */
  async schemaTagAbsent(upstream: Upstream, repo: string, digest: string, reason: unknown): Promise<boolean> {
    const last = parseRecord<ReferrersRecord>(await this.storage.getObject(referrersKey(upstream.name, repo, digest)), isRecord);
    if (!last?.schemaTagAbsent) return false;
    this.events.staleServed(upstream.name, 'referrers', reason instanceof RegistryError ? reason.code : 'error');
    this.logger.warn(
      { upstream: upstream.name, repo, digest, reason: (reason as Error).message },
      'upstream failed; the referrers tag schema had no tag for this digest: answering 404 from the cache',
    );
    return true;
  }
}
