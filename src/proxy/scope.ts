import { MemoryLru } from '../util/lru.js';

/**
 * Upstream confirmations remembered in memory (a HEAD of the blob for that repository succeeded). Bounded: a
 * client inventing names cannot grow it, and a forgotten confirmation costs one upstream HEAD.
 */
const CONFIRMATIONS_MAX = 10_000;
/** A confirmation expires after this long, so that a repository deleted or made private upstream stops being served. */
const CONFIRMATION_TTL_MS = 60 * 60 * 1000;

/** Whether the cache holds a manifest of `upstream/repo` that is or references `digest` (the metadata index). */
export type ReferenceLookup = (upstream: string, repo: string, digest: string) => boolean;

/**
 * Which repositories a cached blob may be served for, as distribution's repository links: a blob is content-
 * addressed and stored once, but served for repository R of upstream U only when U/R is known to reference it
 * (a cached manifest of U/R lists it, U/R is where it was fetched from, or U confirmed it for R). Anything else
 * is a miss on U, so that U's credentials, allow/deny and errors apply: the mirror is no existence oracle for
 * content fetched with another upstream's (or repository's) credentials.
 */
export class BlobScopes {
  private readonly confirmed = new MemoryLru<number>(CONFIRMATIONS_MAX, () => 1);

  constructor(
    private readonly references: ReferenceLookup = () => false,
    private readonly now: () => number = Date.now,
  ) {}

  knows(upstream: string, repo: string, digest: string): boolean {
    const key = `${upstream}/${repo}@${digest}`;
    const at = this.confirmed.get(key);
    if (at !== undefined && this.now() - at < CONFIRMATION_TTL_MS) return true;
    return this.references(upstream, repo, digest);
  }

  confirm(upstream: string, repo: string, digest: string): void {
    this.confirmed.set(`${upstream}/${repo}@${digest}`, this.now());
  }
}
