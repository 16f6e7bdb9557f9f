import type { BlobStore } from '../storage/blobstore.js';
import { MAX_MANIFEST_BYTES } from '../oci/mediatypes.js';
import type { MetadataIndex } from './index.js';
import { manifestRefs } from './refs.js';
import { manifestId, repoName, tagId, type ManifestRecord, type TagRecord } from './types.js';

export interface ReconcileReport {
  blobsAdded: number;
  blobsRemoved: number;
  manifestsAdded: number;
  manifestsRemoved: number;
  tagsAdded: number;
  tagsRemoved: number;
}

const LINK = /^repositories\/([^/]+)\/(.+)\/_manifests\/(sha256|sha512)\/([a-f0-9]+)$/;
const TAG = /^repositories\/([^/]+)\/(.+)\/_tags\/([^/]+)$/;

async function readAll(storage: BlobStore, digest: string): Promise<Buffer | undefined> {
  try {
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of await storage.readBlob(digest)) {
      chunks.push(c as Buffer);
      n += (c as Buffer).length;
      if (n > MAX_MANIFEST_BYTES) return undefined;
    }
    return Buffer.concat(chunks);
  } catch {
    return undefined;
  }
}

function parseJson<T>(buf: Buffer | null): T | undefined {
  if (!buf) return undefined;
  try {
    return JSON.parse(buf.toString('utf8')) as T;
  } catch {
    return undefined;
  }
}

/**
 * Makes the index agree with storage (the source of truth): adds what storage holds and the index lacks (its
 * times taken from the manifest link or tag files, else `now`), drops what storage no longer holds. Entries
 * created after the scan started are left alone, so this may run while the server keeps caching.
 * With an empty index this is a full rebuild.
 */
export async function reconcile(index: MetadataIndex, storage: BlobStore, now: () => number = Date.now): Promise<ReconcileReport> {
  const started = now();
  const report: ReconcileReport = { blobsAdded: 0, blobsRemoved: 0, manifestsAdded: 0, manifestsRemoved: 0, tagsAdded: 0, tagsRemoved: 0 };

  const seenBlobs = new Set<string>();
  const addedBlobs = new Set<string>();
  for await (const b of storage.listBlobs()) {
    seenBlobs.add(b.digest);
    const rec = index.blob(b.digest);
    if (!rec) {
      index.putBlob({ digest: b.digest, size: b.size, fetchedAt: started, lastAccess: started, repos: [] });
      addedBlobs.add(b.digest);
      report.blobsAdded++;
    } else if (rec.size !== b.size) {
      index.putBlob({ ...rec, size: b.size });
    }
  }

  const seenManifests = new Set<string>();
  const seenTags = new Set<string>();
  for await (const key of storage.listObjects('repositories')) {
    let m = LINK.exec(key);
    if (m) {
      const [, upstream, repo, alg, hex] = m as unknown as [string, string, string, string, string];
      const digest = `${alg}:${hex}`;
      const id = manifestId(upstream, repo, digest);
      seenManifests.add(id);
      if (index.manifest(upstream, repo, digest)) continue;
      const link = parseJson<{ mediaType?: string; size?: number; fetchedAt?: number }>(await storage.getObject(key).catch(() => null));
      const bytes = await readAll(storage, digest);
      const at = typeof link?.fetchedAt === 'number' ? link.fetchedAt : started;
      const rec: ManifestRecord = {
        upstream,
        repo,
        digest,
        size: bytes?.length ?? link?.size ?? 0,
        mediaType: link?.mediaType ?? '',
        fetchedAt: at,
        lastAccess: at,
        refs: bytes ? manifestRefs(bytes) : [],
      };
      index.putManifest(rec);
      report.manifestsAdded++;
      continue;
    }
    m = TAG.exec(key);
    if (m) {
      const [, upstream, repo, tag] = m as unknown as [string, string, string, string];
      seenTags.add(tagId(upstream, repo, tag));
      if (index.tag(upstream, repo, tag)) continue;
      const t = parseJson<{ digest?: string; validatedAt?: number }>(await storage.getObject(key).catch(() => null));
      if (!t?.digest) continue;
      const rec: TagRecord = { upstream, repo, tag, digest: t.digest, validatedAt: t.validatedAt ?? started };
      index.putTag(rec);
      report.tagsAdded++;
    }
  }

  // Blobs found only now: attribute them to the manifests referencing them (repos, upstream, times).
  if (addedBlobs.size > 0) {
    for (const m of index.manifests()) {
      for (const d of [m.digest, ...m.refs]) {
        if (!addedBlobs.has(d)) continue;
        const b = index.blob(d)!;
        const name = repoName(m.upstream, m.repo);
        const first = b.repos.length === 0;
        index.putBlob({
          ...b,
          upstream: b.upstream ?? m.upstream,
          repos: b.repos.includes(name) ? b.repos : [...b.repos, name],
          fetchedAt: first ? m.fetchedAt : Math.max(b.fetchedAt, m.fetchedAt),
          lastAccess: first ? m.lastAccess : Math.max(b.lastAccess, m.lastAccess),
        });
      }
    }
  }

  for (const b of [...index.blobs()]) {
    if (!seenBlobs.has(b.digest) && b.fetchedAt < started && !addedBlobs.has(b.digest)) {
      index.removeBlob(b.digest);
      report.blobsRemoved++;
    }
  }
  for (const m of [...index.manifests()]) {
    if (!seenManifests.has(manifestId(m.upstream, m.repo, m.digest)) && m.fetchedAt < started) {
      index.removeManifest(m.upstream, m.repo, m.digest);
      report.manifestsRemoved++;
    }
  }
  for (const t of [...index.tags()]) {
    if (!seenTags.has(tagId(t.upstream, t.repo, t.tag)) && t.validatedAt < started) {
      index.removeTag(t.upstream, t.repo, t.tag);
      report.tagsRemoved++;
    }
  }
  return report;
}
