import { RegistryError } from '../errors.js';
import { MemoryLru } from '../util/lru.js';

/** Entries kept at most (a few hundred bytes each, ~15 MB full): a name-scanning client cannot grow it past this. */
const NEGATIVE_ENTRIES_MAX = 50_000;

/** What is kept of an upstream 404: enough to answer it again (not the error with its stack). */
interface Remembered {
  code: RegistryError['code'];
  message: string;
  detail: unknown;
  until: number;
}

/**
 * Upstream 404s (unknown repository, tag, manifest or blob) remembered for a short time (regcache.negativettl),
 * so that a client scanning names or retrying a typo costs one upstream request per name and window — it
 * cannot spend the upstream's pull budget or rate limit. Bounded; only 404s, never failures (those go to
 * stale-if-error and the breaker).
 */
export class NegativeCache {
  private readonly entries = new MemoryLru<Remembered>(NEGATIVE_ENTRIES_MAX, () => 1);

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Runs an upstream call, answering a recent 404 for the same key from memory and remembering new ones. */
  async run<T>(key: string, call: () => Promise<T>): Promise<T> {
    if (this.ttlMs > 0) {
      const hit = this.entries.get(key);
      if (hit && hit.until > this.now()) throw new RegistryError(hit.code, hit.message, { status: 404, detail: hit.detail });
      if (hit) this.entries.delete(key);
    }
    try {
      return await call();
    } catch (e) {
      if (this.ttlMs > 0 && e instanceof RegistryError && e.status === 404) {
        this.entries.set(key, { code: e.code, message: e.message, detail: e.detail, until: this.now() + this.ttlMs });
      }
      throw e;
    }
  }
}
