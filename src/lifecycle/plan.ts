import type { MetadataIndex } from '../metadata/index.js';
import { manifestId, repoName, type BlobRecord, type ManifestRecord, type TagRecord } from '../metadata/types.js';

/**
 * Eviction works on units, so that a manifest never outlives the blobs it references:
 * - an image unit: a root manifest linked in a repository (one no other manifest of that repository references:
 *   a tagged image or index, or one pulled by digest), its child manifests (platforms of an index), the blobs
 *   they reference, and the tags pointing at any of them;
 * - a loose blob: a blob no manifest references (pulled by digest only).
 * A blob or child manifest shared by several units is removed only with the last unit holding it.
 */
export interface Unit {
  /** `upstream/repo@digest` of the root manifest, or `blob:<digest>` for a loose blob. */
  id: string;
  upstream?: string;
  repo?: string;
  /** Root manifest digest (image units). */
  root?: string;
  manifests: ManifestRecord[];
  tags: TagRecord[];
  blobs: string[];
  /** Most recent access to any manifest of the unit (loose blob: to the blob). */
  lastAccess: number;
  /** When the root was fetched (proxy.ttl counts from here). */
  fetchedAt: number;
}

export type Reason = 'ttl' | 'lru' | 'age' | 'manual' | 'corrupt';

export interface Removal {
  unit: Unit;
  reason: Reason;
  /** Manifest links removed with this unit (shared ones stay until their last unit goes). */
  manifests: ManifestRecord[];
  tags: TagRecord[];
  blobs: BlobRecord[];
  bytes: number;
}

/** The id under which an access to a blob is recorded cluster-wide (manifests: manifestId). */
export const blobAccessId = (digest: string): string => `blob:${digest}`;

/**
 * `cluster`: last access per id noted by every replica (AccessRecorder); a unit's last access is the most
 * recent of this replica's and the cluster's.
 */
export function buildUnits(index: MetadataIndex, cluster: ReadonlyMap<string, number> = new Map()): Unit[] {
  const accessOf = (m: ManifestRecord): number => Math.max(m.lastAccess, cluster.get(manifestId(m.upstream, m.repo, m.digest)) ?? 0);
  const byRepo = new Map<string, ManifestRecord[]>();
  for (const m of index.manifests()) {
    const k = repoName(m.upstream, m.repo);
    let list = byRepo.get(k);
    if (!list) byRepo.set(k, (list = []));
    list.push(m);
  }
  const tagsByManifest = new Map<string, TagRecord[]>();
  for (const t of index.tags()) {
    const k = manifestId(t.upstream, t.repo, t.digest);
    let list = tagsByManifest.get(k);
    if (!list) tagsByManifest.set(k, (list = []));
    list.push(t);
  }

  const units: Unit[] = [];
  const referenced = new Set<string>();
  for (const list of byRepo.values()) {
    const byDigest = new Map(list.map((m) => [m.digest, m]));
    const children = new Set<string>();
    for (const m of list) for (const r of m.refs) if (byDigest.has(r) && r !== m.digest) children.add(r);
    for (const root of list) {
      if (children.has(root.digest)) continue;
      const manifests: ManifestRecord[] = [];
      const blobs = new Set<string>();
      const stack = [root];
      const seen = new Set<string>();
      while (stack.length) {
        const m = stack.pop()!;
        if (seen.has(m.digest)) continue;
        seen.add(m.digest);
        manifests.push(m);
        blobs.add(m.digest);
        for (const r of m.refs) {
          const child = byDigest.get(r);
          if (child) stack.push(child);
          else blobs.add(r);
        }
      }
      const tags = manifests.flatMap((m) => tagsByManifest.get(manifestId(m.upstream, m.repo, m.digest)) ?? []);
      const present = [...blobs].filter((d) => index.blob(d));
      for (const d of present) referenced.add(d);
      units.push({
        id: manifestId(root.upstream, root.repo, root.digest),
        upstream: root.upstream,
        repo: root.repo,
        root: root.digest,
        manifests,
        tags,
        blobs: present,
        lastAccess: Math.max(...manifests.map(accessOf)),
        fetchedAt: root.fetchedAt,
      });
    }
  }
  for (const b of index.blobs()) {
    if (referenced.has(b.digest)) continue;
    units.push({
      id: `blob:${b.digest}`,
      upstream: b.upstream,
      manifests: [],
      tags: [],
      blobs: [b.digest],
      lastAccess: Math.max(b.lastAccess, cluster.get(blobAccessId(b.digest)) ?? 0),
      fetchedAt: b.fetchedAt,
    });
  }
  return units;
}

/** Chooses which units go and what removing them frees, honouring sharing between units. */
export class Planner {
  private readonly blobRefs = new Map<string, number>();
  private readonly linkRefs = new Map<string, number>();
  private readonly removedUnits = new Set<string>();
  /** Bytes left in the cache once the planned removals are done. */
  remainingBytes: number;
  readonly removals: Removal[] = [];

  constructor(
    private readonly index: MetadataIndex,
    readonly units: Unit[],
    /** Blobs that must not be removed now (being served or written): units needing them are skipped. */
    private readonly busy: (digest: string) => boolean = () => false,
  ) {
    this.remainingBytes = index.totalBytes;
    for (const u of units) {
      for (const d of u.blobs) this.blobRefs.set(d, (this.blobRefs.get(d) ?? 0) + 1);
      for (const m of u.manifests) {
        const id = manifestId(m.upstream, m.repo, m.digest);
        this.linkRefs.set(id, (this.linkRefs.get(id) ?? 0) + 1);
      }
    }
  }

  /** Plans removal of `unit`; false (and nothing planned) when it holds the last reference to a busy blob. */
  remove(unit: Unit, reason: Reason): boolean {
    if (this.removedUnits.has(unit.id)) return true;
    const freed = unit.blobs.filter((d) => this.blobRefs.get(d) === 1);
    if (freed.some((d) => this.busy(d))) return false;
    this.removedUnits.add(unit.id);
    const blobs: BlobRecord[] = [];
    for (const d of unit.blobs) {
      const n = this.blobRefs.get(d)! - 1;
      this.blobRefs.set(d, n);
      const rec = this.index.blob(d);
      if (n === 0 && rec) blobs.push(rec);
    }
    const manifests: ManifestRecord[] = [];
    for (const m of unit.manifests) {
      const id = manifestId(m.upstream, m.repo, m.digest);
      const n = this.linkRefs.get(id)! - 1;
      this.linkRefs.set(id, n);
      if (n === 0) manifests.push(m);
    }
    const gone = new Set(manifests.map((m) => m.digest));
    const tags = unit.tags.filter((t) => gone.has(t.digest));
    const bytes = blobs.reduce((s, b) => s + b.size, 0);
    this.remainingBytes -= bytes;
    this.removals.push({ unit, reason, manifests, tags, blobs, bytes });
    return true;
  }

  /** Units whose root was fetched longer ago than its upstream's ttl (null ttl: kept forever). */
  expire(now: number, ttlOf: (upstream: string | undefined) => number | null): void {
    for (const u of this.units) {
      const ttl = ttlOf(u.upstream);
      if (ttl !== null && now - u.fetchedAt > ttl) this.remove(u, 'ttl');
    }
  }

  /** Units not accessed for longer than `ms`. */
  olderThan(now: number, ms: number, reason: Reason = 'age'): void {
    for (const u of this.units) if (now - u.lastAccess > ms) this.remove(u, reason);
  }

  /** Least recently used units first, until the cache holds at most `targetBytes`. */
  shrinkTo(targetBytes: number, reason: Reason = 'lru'): void {
    const order = [...this.units].sort((a, b) => a.lastAccess - b.lastAccess);
    for (const u of order) {
      if (this.remainingBytes <= targetBytes) return;
      this.remove(u, reason);
    }
  }
}
