import type { Logger } from 'pino';
import type { MetadataIndex } from '../metadata/index.js';
import { repoName } from '../metadata/types.js';
import { manifestLinkKey, tagKey, tagListKey } from '../storage/keys.js';
import type { BlobStore } from '../storage/blobstore.js';
import type { Reason, Removal } from './plan.js';

/** The running proxy's view, so that removal never pulls the rug from under a request. */
export interface LiveCache {
  /** Being fetched or served right now. */
  isBusy(digest: string): boolean;
  /** Drop in-memory copies (manifest bytes, tag records) of removed content. */
  forgetManifest(upstream: string, repo: string, digest: string): void;
  forgetTag(upstream: string, repo: string, tag: string): void;
}

export interface RemoveContext {
  index: MetadataIndex;
  storage: BlobStore;
  live?: LiveCache;
  logger?: Logger;
  onRemoved?(reason: Reason, blobs: number, bytes: number): void;
}

export interface RemoveReport {
  units: number;
  tags: number;
  manifests: number;
  blobs: number;
  bytes: number;
  /** Units left alone because they were used again or became busy after planning. */
  skipped: number;
}

/** Whether a unit planned on its age was used after it was planned. */
function touchedSincePlanned(r: Removal, index: MetadataIndex): boolean {
  if (r.reason === 'manual' || r.reason === 'corrupt') return false;
  const u = r.unit;
  if (u.manifests.length === 0) return (index.blob(u.blobs[0]!)?.lastAccess ?? 0) > u.lastAccess;
  return u.manifests.some((m) => (index.manifest(m.upstream, m.repo, m.digest)?.lastAccess ?? 0) > u.lastAccess);
}

/**
 * Carries out planned removals, one file at a time, in the order that keeps the cache consistent after a crash
 * at any point: tags, then manifest links, then blobs (an interrupted run leaves unreferenced blobs, which the
 * next sweep removes — never a manifest whose blobs are gone).
 */
export async function applyRemovals(removals: Removal[], ctx: RemoveContext): Promise<RemoveReport> {
  const { index, storage, live } = ctx;
  const report: RemoveReport = { units: 0, tags: 0, manifests: 0, blobs: 0, bytes: 0, skipped: 0 };
  const repos = new Map<string, { upstream: string; repo: string }>();
  for (const r of removals) {
    if (touchedSincePlanned(r, index) || r.blobs.some((b) => live?.isBusy(b.digest))) {
      report.skipped++;
      continue;
    }
    report.units++;
    for (const t of r.tags) {
      await storage.deleteObject(tagKey(t.upstream, t.repo, t.tag));
      index.removeTag(t.upstream, t.repo, t.tag);
      live?.forgetTag(t.upstream, t.repo, t.tag);
      report.tags++;
    }
    for (const m of r.manifests) {
      await storage.deleteObject(manifestLinkKey(m.upstream, m.repo, m.digest));
      index.removeManifest(m.upstream, m.repo, m.digest);
      live?.forgetManifest(m.upstream, m.repo, m.digest);
      repos.set(repoName(m.upstream, m.repo), { upstream: m.upstream, repo: m.repo });
      report.manifests++;
    }
    let blobs = 0;
    let bytes = 0;
    for (const b of r.blobs) {
      if (live?.isBusy(b.digest)) continue; // became busy meanwhile: now loose, the next sweep takes it
      await storage.deleteBlob(b.digest);
      index.removeBlob(b.digest);
      blobs++;
      bytes += b.size;
    }
    report.blobs += blobs;
    report.bytes += bytes;
    ctx.onRemoved?.(r.reason, blobs, bytes);
    ctx.logger?.debug({ unit: r.unit.id, reason: r.reason, blobs, bytes }, 'cache content removed');
  }
  // A repository with nothing left drops its cached tag list too, so it leaves the catalog.
  if (repos.size > 0) {
    const present = new Set<string>();
    for (const m of index.manifests()) present.add(repoName(m.upstream, m.repo));
    for (const t of index.tags()) present.add(repoName(t.upstream, t.repo));
    for (const [name, { upstream, repo }] of repos) {
      if (!present.has(name)) await storage.deleteObject(tagListKey(upstream, repo)).catch(() => {});
    }
  }
  return report;
}
