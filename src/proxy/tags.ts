import type { Logger } from 'pino';
import { RegistryError } from '../errors.js';
import { repoPrefix, tagListKey } from '../storage/keys.js';
import type { BlobStore } from '../storage/blobstore.js';
import type { Upstream } from '../upstream/types.js';
import type { CacheResult, ProxyEvents } from '../seams.js';
import { parseRecord } from './records.js';
import { NegativeCache } from './negative.js';

interface TagList {
  tags: string[];
  fetchedAt: number;
}

/**
 * Tag lists: asked upstream (within the freshness window the last answer is reused); when upstream
 * fails, the last answer is served, else the tags this cache holds.
 */
export class TagLists {
  private readonly inflight = new Map<string, Promise<{ tags: string[]; result: CacheResult }>>();

  constructor(
    private readonly storage: BlobStore,
    private readonly logger: Logger,
    private readonly events: ProxyEvents,
    private readonly negative: NegativeCache = new NegativeCache(0),
    private readonly now: () => number = Date.now,
  ) {}

  async list(upstream: Upstream, freshnessMs: number, repo: string): Promise<{ tags: string[]; result: CacheResult }> {
    const key = `${upstream.name}/${repo}`;
    let p = this.inflight.get(key);
    if (!p) {
      p = this.fetch(upstream, freshnessMs, repo).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async fetch(upstream: Upstream, freshnessMs: number, repo: string): Promise<{ tags: string[]; result: CacheResult }> {
    const lkey = tagListKey(upstream.name, repo);
    const saved = await this.storage.getObject(lkey);
    const last = parseRecord<TagList>(saved, (l) => Array.isArray(l.tags) && l.tags.every((t) => typeof t === 'string') && typeof l.fetchedAt === 'number');
    if (last && this.now() - last.fetchedAt < freshnessMs) return { tags: last.tags, result: 'hit' };
    try {
      const tags = await this.negative.run(`${upstream.name}/${repo}/tags`, () => upstream.listTags(repo));
      await this.storage.putObject(lkey, Buffer.from(JSON.stringify({ tags, fetchedAt: this.now() } satisfies TagList)));
      return { tags, result: 'miss' };
    } catch (e) {
      if (e instanceof RegistryError && e.status === 404) throw e;
      const tags = last?.tags ?? (await this.cachedTags(upstream.name, repo));
      if (!tags.length && !last) throw e;
      this.events.staleServed(upstream.name, 'tags', e instanceof RegistryError ? e.code : 'error');
      this.logger.warn({ upstream: upstream.name, repo, reason: (e as Error).message }, 'upstream failed; serving cached tag list');
      return { tags, result: 'stale' };
    }
  }

  private async cachedTags(upstreamName: string, repo: string): Promise<string[]> {
    const prefix = `${repoPrefix(upstreamName, repo)}/_tags`;
    const tags: string[] = [];
    for await (const k of this.storage.listObjects(prefix)) tags.push(k.slice(prefix.length + 1));
    return tags;
  }
}
