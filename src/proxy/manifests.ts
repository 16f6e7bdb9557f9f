import type { Logger } from 'pino';
import { DEFAULT_MANIFEST_MEMORY_BYTES } from '../config/load.js';
import { RegistryError } from '../errors.js';
import { digestOf, isDigest } from '../oci/digest.js';
import { manifestLinkKey, tagKey } from '../storage/keys.js';
import type { BlobStore } from '../storage/blobstore.js';
import type { Upstream } from '../upstream/types.js';
import type { CacheResult, Coordinator, ProxyEvents } from '../seams.js';
import { MemoryLru } from '../util/lru.js';
import { encodeManifestLink, encodeTag, isStoredManifestLink, isStoredTag, parseRecord, type StoredManifestLink, type StoredTag } from './records.js';
import { NegativeCache } from './negative.js';

export interface ManifestEntry {
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

export interface ManifestResult extends ManifestEntry {
  result: CacheResult;
}

type TagRecord = StoredTag;
type ManifestLink = StoredManifestLink;

/** Tag records kept in memory at most (~200 bytes each). */
const TAG_RECORDS_MAX = 50_000;

/** A manifest or tag lease outlives a crashed replica by at most this long. */
const LEASE_TTL_MS = 15_000;
/** How long a replica waits for another's lease before looking at storage and trying again. */
const WAIT_SLICE_MS = 5_000;

/** Upstream failures that justify serving what we have (stale-if-error); a 404 is an answer, not a failure. */
function isUpstreamFailure(e: unknown): boolean {
  return !(e instanceof RegistryError && e.status === 404);
}

/**
 * Manifest cache policy.
 * - By digest: immutable; served from cache, fetched once on a miss.
 * - By tag: within the freshness window served from cache with no upstream request; after it, one upstream
 *   HEAD revalidates and the manifest is fetched (by digest) only when the tag moved. When upstream fails,
 *   the last known digest is served and logged as stale.
 * Concurrent identical fetches share one upstream request.
 * With a Coordinator (several replicas over one storage), the cluster shares this too: a replica revalidates a
 * tag only while it holds the tag's lease (`tag:<key>`) and fetches a manifest only while it holds the
 * digest's (`manifest:<upstream>/<repo>@<digest>`); the others wait for the lease, then read what the holder
 * stored. Before revalidating, the stored tag record is read again: another replica may have validated it.
 */
export class ManifestCache {
  private readonly inflight = new Map<string, Promise<ManifestResult>>();
  /** Tag records read or written recently; the rest stay in storage. */
  private readonly tags = new MemoryLru<TagRecord>(TAG_RECORDS_MAX, () => 1);
  private readonly memory: MemoryLru<ManifestEntry>;
  private coordinator: Coordinator | undefined;

  constructor(
    private readonly storage: BlobStore,
    private readonly logger: Logger,
    private readonly events: ProxyEvents,
    private readonly negative: NegativeCache = new NegativeCache(0),
    /**
     * Bound of the in-memory manifest LRU (regcache.cache.manifestmemory), in bytes of manifest content; 0 keeps
     * none in memory. Manifests beyond it are read from storage again when asked for.
     */
    memoryBytes: number = DEFAULT_MANIFEST_MEMORY_BYTES,
    private readonly now: () => number = Date.now,
  ) {
    this.memory = new MemoryLru<ManifestEntry>(memoryBytes, (e) => e.bytes.length);
  }

  /** Cross-replica coordination of tag revalidations and manifest fetches (redis); undefined: this process alone. */
  setCoordinator(coordinator: Coordinator | undefined): void {
    this.coordinator = coordinator;
  }

  async get(upstream: Upstream, freshnessMs: number, repo: string, ref: string): Promise<ManifestResult> {
    const m = await this.lookup(upstream, freshnessMs, repo, ref);
    this.events.manifestServed(upstream.name, repo, m.digest, m.result);
    return m;
  }

  /** Drops in-memory copies of content the lifecycle sweeper removed from storage. */
  forget(upstreamName: string, repo: string, ref: { digest?: string; tag?: string }): void {
    if (ref.digest) this.memory.delete(`${upstreamName}/${repo}@${ref.digest}`);
    if (ref.tag) this.tags.delete(tagKey(upstreamName, repo, ref.tag));
  }

  private async lookup(upstream: Upstream, freshnessMs: number, repo: string, ref: string): Promise<ManifestResult> {
    const key = `${upstream.name}/${repo}@${ref}`;
    const running = this.inflight.get(key);
    if (running) {
      this.events.coalesced('manifest');
      return running;
    }
    const p = isDigest(ref) ? this.byDigest(upstream, repo, ref) : this.byTag(upstream, freshnessMs, repo, ref);
    this.inflight.set(key, p);
    try {
      return await p;
    } finally {
      this.inflight.delete(key);
    }
  }

  /** A cached manifest, no upstream involved. */
  async cached(upstreamName: string, repo: string, digest: string): Promise<ManifestEntry | undefined> {
    const mkey = `${upstreamName}/${repo}@${digest}`;
    const mem = this.memory.get(mkey);
    if (mem) return mem;
    const linkKey = manifestLinkKey(upstreamName, repo, digest);
    const linkBuf = await this.storage.getObject(linkKey);
    const link = parseRecord<ManifestLink>(linkBuf, isStoredManifestLink);
    if (!link) {
      if (linkBuf) this.logger.warn({ key: linkKey }, 'unreadable manifest link in storage; treating it as a miss');
      return undefined;
    }
    const stream = await this.storage.readBlob(digest).catch(() => undefined);
    if (!stream) return undefined;
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    const bytes = Buffer.concat(chunks);
    if (digestOf(bytes, digest.startsWith('sha512:') ? 'sha512' : 'sha256') !== digest) {
      this.logger.error({ digest, repo }, 'cached manifest does not match its digest; ignoring it');
      return undefined;
    }
    const entry = { bytes, mediaType: link.mediaType, digest };
    this.memory.set(mkey, entry);
    return entry;
  }

  private async byDigest(upstream: Upstream, repo: string, digest: string): Promise<ManifestResult> {
    const hit = await this.cached(upstream.name, repo, digest);
    if (hit) return { ...hit, result: 'hit' };
    if (!this.coordinator) return this.fetchByDigest(upstream, repo, digest);
    return this.leased(
      `manifest:${upstream.name}/${repo}@${digest}`,
      async () => {
        const m = await this.cached(upstream.name, repo, digest);
        return m && { ...m, result: 'coalesced' as const };
      },
      () => this.fetchByDigest(upstream, repo, digest),
    );
  }

  /**
   * Runs `work` while holding `key`'s lease, unless `done()` finds its result (what another replica stored)
   * first; a replica that finds the lease taken waits for it and looks again. When Redis fails, the
   * FallbackCoordinator grants the lease locally: each replica works for itself.
   */
  private async leased(
    key: string,
    done: () => Promise<ManifestResult | undefined>,
    work: () => Promise<ManifestResult>,
  ): Promise<ManifestResult> {
    const coordinator = this.coordinator!;
    for (let waited = false; ; waited = true) {
      const lease = await coordinator.tryAcquire(key, LEASE_TTL_MS);
      if (lease) {
        try {
          // The holder may have finished between our look at storage and the lease.
          return (await done()) ?? (await work());
        } finally {
          await lease.release();
        }
      }
      if (!waited) {
        this.events.coalesced('manifest');
        this.logger.debug({ key }, 'manifest or tag is being fetched by another replica; waiting');
      }
      await coordinator.waitReleased(key, WAIT_SLICE_MS);
      const r = await done();
      if (r) return r;
    }
  }

  private async fetchByDigest(upstream: Upstream, repo: string, digest: string): Promise<ManifestResult> {
    const m = await this.negative.run(`${upstream.name}/${repo}@${digest}`, () => upstream.getManifest(repo, digest));
    await this.store(upstream.name, repo, m);
    return { ...m, result: 'miss' };
  }

  private async byTag(upstream: Upstream, freshnessMs: number, repo: string, tag: string): Promise<ManifestResult> {
    const tkey = tagKey(upstream.name, repo, tag);
    const rec = await this.tagRecord(tkey);
    const cached = rec ? await this.cached(upstream.name, repo, rec.digest) : undefined;
    if (rec && cached && this.now() - rec.validatedAt < freshnessMs) return { ...cached, result: 'hit' };
    if (!this.coordinator) return this.revalidate(upstream, repo, tag, cached);

    // Another replica may have validated the tag since we read it: read it from storage again.
    const shared = await this.freshFromStorage(upstream.name, repo, tkey, freshnessMs);
    if (shared) return { ...shared, result: 'hit' };
    return this.leased(
      `tag:${tkey}`,
      async () => {
        const m = await this.freshFromStorage(upstream.name, repo, tkey, freshnessMs);
        return m && { ...m, result: 'coalesced' as const };
      },
      async () => {
        const latest = await this.storedTag(tkey);
        const entry = latest ? await this.cached(upstream.name, repo, latest.digest) : cached;
        return this.revalidate(upstream, repo, tag, entry);
      },
    );
  }

  /** The stored tag record, when another replica validated it within the freshness window. */
  private async freshFromStorage(upstreamName: string, repo: string, tkey: string, freshnessMs: number): Promise<ManifestEntry | undefined> {
    const rec = await this.storedTag(tkey);
    if (!rec || this.now() - rec.validatedAt >= freshnessMs) return undefined;
    return this.cached(upstreamName, repo, rec.digest);
  }

  /** Asks upstream whether the tag moved (HEAD), fetching the manifest when it did. */
  private async revalidate(
    upstream: Upstream,
    repo: string,
    tag: string,
    cached: ManifestEntry | undefined,
  ): Promise<ManifestResult> {
    const tkey = tagKey(upstream.name, repo, tag);
    let head;
    try {
      head = await this.negative.run(`${upstream.name}/${repo}:${tag}`, () => upstream.headManifest(repo, tag));
    } catch (e) {
      if (cached && isUpstreamFailure(e)) return this.stale(upstream.name, repo, tag, cached, e);
      throw e;
    }
    if (cached && head.digest === cached.digest) {
      await this.saveTag(tkey, { digest: head.digest, mediaType: cached.mediaType, validatedAt: this.now() });
      this.events.tagValidated(upstream.name, repo, tag, head.digest);
      return { ...cached, result: 'revalidated' };
    }
    let m: ManifestResult;
    try {
      m = await this.byDigest(upstream, repo, head.digest);
    } catch (e) {
      if (cached && isUpstreamFailure(e)) return this.stale(upstream.name, repo, tag, cached, e);
      throw e;
    }
    await this.saveTag(tkey, { digest: m.digest, mediaType: m.mediaType, validatedAt: this.now() });
    this.events.tagValidated(upstream.name, repo, tag, m.digest);
    return { ...m, result: m.result === 'hit' ? 'revalidated' : 'miss' };
  }

  private stale(upstreamName: string, repo: string, tag: string, cached: ManifestEntry, e: unknown): ManifestResult {
    const reason = e instanceof RegistryError ? e.code : 'error';
    this.events.staleServed(upstreamName, 'manifest', reason);
    this.logger.warn(
      { upstream: upstreamName, repo, tag, digest: cached.digest, reason: (e as Error).message },
      'upstream failed; serving cached (stale) manifest for tag',
    );
    return { ...cached, result: 'stale' };
  }

  private async tagRecord(tkey: string): Promise<TagRecord | undefined> {
    return this.tags.get(tkey) ?? this.storedTag(tkey);
  }

  /** The tag record in storage (written by any replica), bypassing memory. */
  private async storedTag(tkey: string): Promise<TagRecord | undefined> {
    const buf = await this.storage.getObject(tkey);
    const rec = parseRecord<TagRecord>(buf, isStoredTag);
    if (rec) this.tags.set(tkey, rec);
    else if (buf) this.logger.warn({ key: tkey }, 'unreadable tag record in storage; treating it as a miss');
    return rec;
  }

  private async saveTag(tkey: string, rec: TagRecord): Promise<void> {
    this.tags.set(tkey, rec);
    await this.storage.putObject(tkey, encodeTag(rec));
  }

  private async store(upstreamName: string, repo: string, m: ManifestEntry): Promise<void> {
    if (!(await this.storage.statBlob(m.digest))) {
      const w = await this.storage.createBlobWriter(m.digest);
      try {
        await w.write(m.bytes);
      } catch (e) {
        await w.abort();
        throw e;
      }
      await w.commit();
    }
    const link: ManifestLink = { mediaType: m.mediaType, size: m.bytes.length, fetchedAt: this.now() };
    await this.storage.putObject(manifestLinkKey(upstreamName, repo, m.digest), encodeManifestLink(link));
    this.memory.set(`${upstreamName}/${repo}@${m.digest}`, { bytes: m.bytes, mediaType: m.mediaType, digest: m.digest });
    this.events.manifestFetched(upstreamName, repo, m.digest, m.mediaType, m.bytes);
  }
}
