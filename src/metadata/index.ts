import path from 'node:path';
import type { Logger } from 'pino';
import { Journal } from './journal.js';
import { manifestRefs } from './refs.js';
import { manifestId, repoName, tagId, type BlobRecord, type ManifestRecord, type TagRecord } from './types.js';

export type { BlobRecord, ManifestRecord, TagRecord } from './types.js';
export { manifestId, repoName, tagId } from './types.js';

export const JOURNAL_FILE = 'index.jsonl';

export interface IndexOptions {
  /** Directory of the journal; none = memory only (rebuilt from storage on every start). */
  dir?: string;
  /** How often batched changes (access times included) are appended to the journal. */
  flushIntervalMs?: number;
  logger?: Logger;
}

type Line = { b: BlobRecord } | { m: ManifestRecord } | { t: TagRecord } | { '-b': string } | { '-m': string } | { '-t': string };

/**
 * The metadata index: every record lives in memory (a few hundred bytes per blob), changes are batched and
 * appended to a JSON-lines journal every flush interval, and the journal is compacted when mostly superseded.
 * Request handling only touches memory. Storage stays the source of truth: what a crash loses (the last batch)
 * is repaired by reconcile() (src/metadata/reconcile.ts), which can also rebuild the whole index from storage.
 */
export class MetadataIndex {
  private readonly blobMap = new Map<string, BlobRecord>();
  private readonly manifestMap = new Map<string, ManifestRecord>();
  private readonly tagMap = new Map<string, TagRecord>();
  /** `upstream/repo` → digest → how many of its manifests reference it (distribution's repository links). */
  private readonly repoRefs = new Map<string, Map<string, number>>();
  /** Keys changed since the last flush: `b<digest>`, `m<manifestId>`, `t<tagId>`. */
  private readonly dirty = new Set<string>();
  private total = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly journal: Journal | undefined,
    private readonly logger: Logger | undefined,
  ) {}

  static async open(opts: IndexOptions = {}): Promise<MetadataIndex> {
    let journal: Journal | undefined;
    let records: unknown[] = [];
    if (opts.dir) {
      const opened = await Journal.open(path.join(opts.dir, JOURNAL_FILE));
      journal = opened.journal;
      records = opened.records;
      if (opened.skipped) opts.logger?.warn({ skipped: opened.skipped }, 'metadata journal: skipped unreadable lines');
    }
    const index = new MetadataIndex(journal, opts.logger);
    for (const r of records) index.replay(r as Line);
    index.dirty.clear();
    if (journal) {
      await index.compactIfWorthIt();
      index.timer = setInterval(() => void index.flush().catch(() => {}), opts.flushIntervalMs ?? 1000);
      index.timer.unref();
    }
    return index;
  }

  /** True when the journal file did not exist or was empty: the caller should rebuild from storage. */
  get isEmpty(): boolean {
    return this.blobMap.size === 0 && this.manifestMap.size === 0 && this.tagMap.size === 0;
  }

  private replay(line: Line): void {
    if ('b' in line) this.setBlob(line.b);
    else if ('m' in line) this.setManifest(line.m);
    else if ('t' in line) this.tagMap.set(tagId(line.t.upstream, line.t.repo, line.t.tag), line.t);
    else if ('-b' in line) this.dropBlob(line['-b']);
    else if ('-m' in line) this.dropManifest(line['-m']);
    else if ('-t' in line) this.tagMap.delete(line['-t']);
  }

  // ---- reads

  get totalBytes(): number {
    return this.total;
  }
  get blobCount(): number {
    return this.blobMap.size;
  }
  blob(digest: string): BlobRecord | undefined {
    return this.blobMap.get(digest);
  }
  manifest(upstream: string, repo: string, digest: string): ManifestRecord | undefined {
    return this.manifestMap.get(manifestId(upstream, repo, digest));
  }
  tag(upstream: string, repo: string, tag: string): TagRecord | undefined {
    return this.tagMap.get(tagId(upstream, repo, tag));
  }
  blobs(): IterableIterator<BlobRecord> {
    return this.blobMap.values();
  }
  manifests(): IterableIterator<ManifestRecord> {
    return this.manifestMap.values();
  }
  tags(): IterableIterator<TagRecord> {
    return this.tagMap.values();
  }

  // ---- writes (memory now, journal at the next flush)

  private setBlob(rec: BlobRecord): void {
    const old = this.blobMap.get(rec.digest);
    this.total += rec.size - (old?.size ?? 0);
    this.blobMap.set(rec.digest, rec);
  }

  private setManifest(rec: ManifestRecord): void {
    const id = manifestId(rec.upstream, rec.repo, rec.digest);
    this.dropManifest(id);
    this.manifestMap.set(id, rec);
    const name = repoName(rec.upstream, rec.repo);
    let refs = this.repoRefs.get(name);
    if (!refs) this.repoRefs.set(name, (refs = new Map()));
    for (const d of new Set([rec.digest, ...rec.refs])) refs.set(d, (refs.get(d) ?? 0) + 1);
  }

  private dropManifest(id: string): void {
    const old = this.manifestMap.get(id);
    if (!old) return;
    this.manifestMap.delete(id);
    const name = repoName(old.upstream, old.repo);
    const refs = this.repoRefs.get(name);
    if (!refs) return;
    for (const d of new Set([old.digest, ...old.refs])) {
      const n = (refs.get(d) ?? 1) - 1;
      if (n > 0) refs.set(d, n);
      else refs.delete(d);
    }
    if (refs.size === 0) this.repoRefs.delete(name);
  }

  /** Whether a manifest of `upstream/repo` in the cache is, or references, `digest`. */
  repoReferences(upstream: string, repo: string, digest: string): boolean {
    return this.repoRefs.get(repoName(upstream, repo))?.has(digest) ?? false;
  }

  private dropBlob(digest: string): void {
    const old = this.blobMap.get(digest);
    if (!old) return;
    this.total -= old.size;
    this.blobMap.delete(digest);
  }

  putBlob(rec: BlobRecord): void {
    this.setBlob(rec);
    this.dirty.add(`b${rec.digest}`);
  }

  putManifest(rec: ManifestRecord): void {
    this.setManifest(rec);
    this.dirty.add(`m${manifestId(rec.upstream, rec.repo, rec.digest)}`);
  }

  putTag(rec: TagRecord): void {
    const id = tagId(rec.upstream, rec.repo, rec.tag);
    this.tagMap.set(id, rec);
    this.dirty.add(`t${id}`);
  }

  removeBlob(digest: string): void {
    this.dropBlob(digest);
    this.dirty.add(`b${digest}`);
  }

  removeManifest(upstream: string, repo: string, digest: string): void {
    const id = manifestId(upstream, repo, digest);
    this.dropManifest(id);
    this.dirty.add(`m${id}`);
  }

  removeTag(upstream: string, repo: string, tag: string): void {
    const id = tagId(upstream, repo, tag);
    this.tagMap.delete(id);
    this.dirty.add(`t${id}`);
  }

  /** A blob was fetched from upstream and committed. */
  blobFetched(digest: string, size: number, upstream: string, repo: string, at: number): void {
    const old = this.blobMap.get(digest);
    const repos = old?.repos ?? [];
    const name = repoName(upstream, repo);
    this.putBlob({
      digest,
      size,
      fetchedAt: at,
      lastAccess: at,
      upstream,
      repos: withRepo([...repos], name),
    });
  }

  /** A blob was served to a client. */
  blobAccessed(digest: string, upstream: string, repo: string, at: number): void {
    const rec = this.blobMap.get(digest);
    if (!rec) return;
    rec.lastAccess = at;
    withRepo(rec.repos, repoName(upstream, repo));
    this.dirty.add(`b${digest}`);
  }

  /** A manifest was fetched from upstream and stored (its bytes as a blob, linked into the repository). */
  manifestFetched(upstream: string, repo: string, digest: string, mediaType: string, bytes: Buffer, at: number): void {
    this.putManifest({
      upstream,
      repo,
      digest,
      size: bytes.length,
      mediaType,
      fetchedAt: at,
      lastAccess: at,
      refs: manifestRefs(bytes),
    });
    const old = this.blobMap.get(digest);
    if (old) this.blobAccessed(digest, upstream, repo, at);
    else this.blobFetched(digest, bytes.length, upstream, repo, at);
  }

  manifestAccessed(upstream: string, repo: string, digest: string, at: number): void {
    const id = manifestId(upstream, repo, digest);
    const rec = this.manifestMap.get(id);
    if (rec) {
      rec.lastAccess = at;
      this.dirty.add(`m${id}`);
    }
    this.blobAccessed(digest, upstream, repo, at);
  }

  tagValidated(upstream: string, repo: string, tag: string, digest: string, at: number): void {
    this.putTag({ upstream, repo, tag, digest, validatedAt: at });
  }

  // ---- persistence

  private line(key: string): string {
    const kind = key[0];
    const id = key.slice(1);
    if (kind === 'b') {
      const r = this.blobMap.get(id);
      return JSON.stringify(r ? { b: r } : { '-b': id });
    }
    if (kind === 'm') {
      const r = this.manifestMap.get(id);
      return JSON.stringify(r ? { m: r } : { '-m': id });
    }
    const r = this.tagMap.get(id);
    return JSON.stringify(r ? { t: r } : { '-t': id });
  }

  /** Appends every change since the last flush to the journal. */
  async flush(): Promise<void> {
    if (!this.journal || this.dirty.size === 0) return;
    const lines = [...this.dirty].map((k) => this.line(k));
    this.dirty.clear();
    try {
      await this.journal.append(lines);
    } catch (e) {
      this.logger?.warn({ err: (e as Error).message }, 'metadata journal append failed; storage scan will repair');
      return;
    }
    await this.compactIfWorthIt();
  }

  private snapshot(): string[] {
    const lines: string[] = [];
    for (const b of this.blobMap.values()) lines.push(JSON.stringify({ b }));
    for (const m of this.manifestMap.values()) lines.push(JSON.stringify({ m }));
    for (const t of this.tagMap.values()) lines.push(JSON.stringify({ t }));
    return lines;
  }

  private async compactIfWorthIt(): Promise<void> {
    if (!this.journal) return;
    const live = this.blobMap.size + this.manifestMap.size + this.tagMap.size;
    if (this.journal.lines <= 2 * live + 1000) return;
    await this.compact();
  }

  /** Rewrites the journal as one line per live record. */
  async compact(): Promise<void> {
    if (!this.journal) return;
    this.dirty.clear();
    await this.journal.rewrite(this.snapshot());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.flush();
    await this.journal?.close();
  }
}

/**
 * Repositories remembered per blob, most recent last. Bounded: a base layer pulled under thousands of names (or
 * names a client invents that the upstream confirms) must not grow the index and journal without limit; a
 * forgotten name is confirmed with the upstream again (see src/proxy/scope.ts).
 */
const REPOS_PER_BLOB = 64;

function withRepo(repos: string[], name: string): string[] {
  if (repos.includes(name)) return repos;
  repos.push(name);
  if (repos.length > REPOS_PER_BLOB) repos.splice(0, repos.length - REPOS_PER_BLOB);
  return repos;
}
