import type { Logger } from 'pino';
import type { MetadataIndex } from '../metadata/index.js';
import { repoName, type ManifestRecord, type TagRecord } from '../metadata/types.js';
import { isDigest } from '../oci/digest.js';
import type { AccessRecorder } from '../seams.js';
import type { BlobStore } from '../storage/blobstore.js';
import { clusterUnits, forgetRemoved } from './cluster.js';
import { Planner, type Reason, type Removal, type Unit } from './plan.js';
import { applyRemovals, type LiveCache, type RemoveReport } from './remove.js';
import { Serial } from './serial.js';
import { verifyBlobs, type VerifyReport } from './verify.js';

export interface RepoSummary {
  upstream: string;
  repo: string;
  tags: Array<{ tag: string; digest: string; validatedAt: number }>;
  manifests: number;
  blobs: number;
  /** Bytes of the distinct blobs the repository uses (blobs shared with other repositories count in each). */
  bytes: number;
  lastAccess: number;
  /** Images: manifests no other cached manifest of the repository references (an index and its platforms count once). */
  images?: ImageSummary[];
}

export interface ImageSummary {
  digest: string;
  mediaType: string;
  /** Platform manifests cached under an index (0 for a single-platform image). */
  platforms: number;
  /** Bytes of its manifests and blobs that are cached. */
  bytes: number;
  lastAccess: number;
  tags: string[];
}

export interface CacheListing {
  totalBytes: number;
  blobs: number;
  maxSizeBytes?: number;
  repos: RepoSummary[];
}

export interface PlannedRemoval {
  unit: string;
  reason: Reason;
  tags: string[];
  manifests: number;
  blobs: number;
  bytes: number;
}

export interface RemovalResult {
  dryRun: boolean;
  bytesBefore: number;
  bytesAfter: number;
  planned: PlannedRemoval[];
  /** What was done (absent for a dry run). */
  done?: RemoveReport;
}

export interface AdminContext {
  index: MetadataIndex;
  storage: BlobStore;
  live?: LiveCache;
  logger?: Logger;
  ttlOf(upstream: string | undefined): number | null;
  maxSizeBytes?: number;
  lowWatermark: number;
  onRemoved?(reason: Reason, blobs: number, bytes: number): void;
  now?(): number;
  /** Shared with the sweeper so that removals never run concurrently. */
  serial?: Serial;
  /** Several replicas: cluster-wide access times for plans (see ClusterView). */
  access?: AccessRecorder;
}

/** `repo`, `repo:tag`, `repo@digest`; repo may carry the upstream (`docker.io/library/alpine`). */
export function parseCacheRef(ref: string): { repo: string; tag?: string; digest?: string } {
  const at = ref.indexOf('@');
  if (at >= 0) return { repo: ref.slice(0, at), digest: ref.slice(at + 1) };
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon > slash) return { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  return { repo: ref };
}

/** Whether a user-typed repository name means upstream/repo: `upstream/repo`, `repo`, or Docker Hub's short `alpine`. */
export function repoMatches(query: string, upstream: string, repo: string): boolean {
  if (query === repo || query === repoName(upstream, repo)) return true;
  const short = repo.startsWith('library/') ? repo.slice('library/'.length) : undefined;
  return short !== undefined && (query === short || query === repoName(upstream, short));
}

/** The `regcache cache` operations over one index + storage: used by the CLI directly and by the server's admin API. */
export class CacheAdmin {
  private readonly serial: Serial;

  constructor(private readonly ctx: AdminContext) {
    this.serial = ctx.serial ?? new Serial();
  }

  private get now(): number {
    return (this.ctx.now ?? Date.now)();
  }

  list(filter?: string): CacheListing {
    const { index } = this.ctx;
    const repos = new Map<string, RepoSummary & { digests: Set<string>; mine: ManifestRecord[] }>();
    const entry = (upstream: string, repo: string) => {
      const k = repoName(upstream, repo);
      let r = repos.get(k);
      if (!r) repos.set(k, (r = { upstream, repo, tags: [], manifests: 0, blobs: 0, bytes: 0, lastAccess: 0, digests: new Set(), mine: [] }));
      return r;
    };
    for (const m of index.manifests()) {
      if (filter && !repoMatches(filter, m.upstream, m.repo)) continue;
      const r = entry(m.upstream, m.repo);
      r.mine.push(m);
      r.manifests++;
      r.lastAccess = Math.max(r.lastAccess, m.lastAccess);
      for (const d of [m.digest, ...m.refs]) r.digests.add(d);
    }
    for (const t of index.tags()) {
      if (filter && !repoMatches(filter, t.upstream, t.repo)) continue;
      entry(t.upstream, t.repo).tags.push({ tag: t.tag, digest: t.digest, validatedAt: t.validatedAt });
    }
    for (const b of index.blobs()) {
      for (const name of b.repos) {
        const r = repos.get(name);
        if (r) r.digests.add(b.digest);
      }
    }
    const out: RepoSummary[] = [];
    for (const { digests, mine, ...r } of repos.values()) {
      r.images = this.images(mine, r.tags);
      for (const d of digests) {
        const b = index.blob(d);
        if (!b) continue;
        r.blobs++;
        r.bytes += b.size;
        r.lastAccess = Math.max(r.lastAccess, b.lastAccess);
      }
      r.tags.sort((a, b) => a.tag.localeCompare(b.tag));
      out.push(r);
    }
    out.sort((a, b) => repoName(a.upstream, a.repo).localeCompare(repoName(b.upstream, b.repo)));
    return { totalBytes: index.totalBytes, blobs: index.blobCount, maxSizeBytes: this.ctx.maxSizeBytes, repos: out };
  }

  private images(mine: ManifestRecord[], tags: Array<{ tag: string; digest: string }>): ImageSummary[] {
    const { index } = this.ctx;
    if (mine.length === 0) return [];
    const { upstream, repo } = mine[0]!;
    const child = new Set(mine.flatMap((m) => m.refs.filter((d) => index.manifest(upstream, repo, d))));
    return mine
      .filter((m) => !child.has(m.digest))
      .map((m) => {
        const seen = new Set<string>();
        let platforms = 0;
        let lastAccess = m.lastAccess;
        const walk = (digest: string): void => {
          if (seen.has(digest)) return;
          seen.add(digest);
          const sub = index.manifest(upstream, repo, digest);
          if (sub && digest !== m.digest) platforms++;
          if (sub) lastAccess = Math.max(lastAccess, sub.lastAccess);
          for (const d of sub?.refs ?? []) walk(d);
        };
        walk(m.digest);
        let bytes = 0;
        for (const d of seen) bytes += index.blob(d)?.size ?? 0;
        const tagNames = tags.filter((t) => t.digest === m.digest).map((t) => t.tag);
        return { digest: m.digest, mediaType: m.mediaType, platforms, bytes, lastAccess, tags: tagNames };
      })
      .sort((a, b) => b.lastAccess - a.lastAccess);
  }

  private async planner(): Promise<Planner> {
    return new Planner(this.ctx.index, await clusterUnits(this.ctx), (d) => this.ctx.live?.isBusy(d) ?? false);
  }

  private async carryOut(removals: Removal[], dryRun: boolean, bytesBefore: number): Promise<RemovalResult> {
    const planned = removals.map((r) => ({
      unit: r.unit.id,
      reason: r.reason,
      tags: r.tags.map((t) => `${repoName(t.upstream, t.repo)}:${t.tag}`),
      manifests: r.manifests.length,
      blobs: r.blobs.length,
      bytes: r.bytes,
    }));
    if (dryRun) {
      const freed = removals.reduce((s, r) => s + r.bytes, 0);
      return { dryRun, bytesBefore, bytesAfter: bytesBefore - freed, planned };
    }
    const done = await applyRemovals(removals, this.ctx);
    await forgetRemoved(this.ctx, removals);
    await this.ctx.index.flush();
    return { dryRun, bytesBefore, bytesAfter: this.ctx.index.totalBytes, planned, done };
  }

  /** `rm repo`, `rm repo:tag` (the tag, and its image unless another tag keeps it), `rm repo@digest`. */
  remove(ref: string, opts: { dryRun?: boolean } = {}): Promise<RemovalResult> {
    return this.serial.run(() => this.removeNow(ref, opts.dryRun ?? false));
  }

  private async removeNow(ref: string, dryRun: boolean): Promise<RemovalResult> {
    const { repo, tag, digest } = parseCacheRef(ref);
    if (digest !== undefined && !isDigest(digest)) throw new Error(`invalid digest ${JSON.stringify(digest)}`);
    const before = this.ctx.index.totalBytes;
    const p = await this.planner();
    const inRepo = (u: Unit) => u.upstream !== undefined && u.repo !== undefined && repoMatches(repo, u.upstream, u.repo);
    const extra: Removal[] = [];
    if (tag !== undefined) {
      for (const u of p.units.filter(inRepo)) {
        const hit = u.tags.filter((t) => t.tag === tag);
        if (hit.length === 0) continue;
        if (u.tags.every((t) => t.tag === tag)) p.remove(u, 'manual');
        else extra.push(tagOnly(u, hit));
      }
    } else if (digest !== undefined) {
      const units = p.units.filter(inRepo);
      const roots = units.filter((u) => u.root === digest);
      for (const u of roots.length ? roots : units.filter((u) => u.manifests.some((m) => m.digest === digest))) p.remove(u, 'manual');
      for (const u of p.units) {
        if (u.manifests.length === 0 && u.blobs[0] === digest && this.onlyIn(u.blobs[0], repo)) p.remove(u, 'manual');
      }
    } else {
      for (const u of p.units) {
        if (inRepo(u) || (u.manifests.length === 0 && this.onlyIn(u.blobs[0]!, repo))) p.remove(u, 'manual');
      }
    }
    return this.carryOut([...extra, ...p.removals], dryRun, before);
  }

  /** A loose blob used by `repo` and no other repository. */
  private onlyIn(digest: string, repo: string): boolean {
    const b = this.ctx.index.blob(digest);
    if (!b || b.repos.length === 0) return false;
    return b.repos.every((name) => {
      const i = name.indexOf('/');
      return repoMatches(repo, name.slice(0, i), name.slice(i + 1));
    });
  }

  /**
   * Without options: what the background sweeper does (proxy.ttl, then maxsize down to the low-water mark).
   * `olderThanMs`: images not used for that long. `maxSizeBytes`: least recently used images until the cache fits.
   */
  prune(opts: { olderThanMs?: number; maxSizeBytes?: number; dryRun?: boolean } = {}): Promise<RemovalResult> {
    return this.serial.run(() => this.pruneNow(opts));
  }

  private async pruneNow(opts: { olderThanMs?: number; maxSizeBytes?: number; dryRun?: boolean }): Promise<RemovalResult> {
    const before = this.ctx.index.totalBytes;
    const p = await this.planner();
    const now = this.now;
    if (opts.olderThanMs === undefined && opts.maxSizeBytes === undefined) {
      p.expire(now, this.ctx.ttlOf);
      const max = this.ctx.maxSizeBytes;
      if (max !== undefined && p.remainingBytes > max) p.shrinkTo(Math.floor(max * this.ctx.lowWatermark));
    }
    if (opts.olderThanMs !== undefined) p.olderThan(now, opts.olderThanMs, 'age');
    if (opts.maxSizeBytes !== undefined) p.shrinkTo(opts.maxSizeBytes, 'lru');
    return this.carryOut(p.removals, opts.dryRun ?? false, before);
  }

  verify(opts: { dryRun?: boolean } = {}): Promise<VerifyReport> {
    return this.serial.run(() => this.verifyNow(opts.dryRun ?? false));
  }

  private async verifyNow(dryRun: boolean): Promise<VerifyReport> {
    const report = await verifyBlobs(this.ctx.storage, { remove: !dryRun, index: this.ctx.index, live: this.ctx.live });
    if (report.removed > 0) {
      const bytes = report.corrupt.reduce((s, c) => s + c.size, 0);
      this.ctx.onRemoved?.('corrupt', report.removed, bytes);
      this.ctx.logger?.warn({ corrupt: report.corrupt.map((c) => c.digest) }, 'verify: removed corrupt blobs');
      await this.ctx.index.flush();
    }
    return report;
  }
}

function tagOnly(unit: Unit, tags: TagRecord[]): Removal {
  return { unit, reason: 'manual', manifests: [], tags, blobs: [], bytes: 0 };
}
