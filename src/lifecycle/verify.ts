import type { MetadataIndex } from '../metadata/index.js';
import { newHasher, parseDigest } from '../oci/digest.js';
import type { BlobStore } from '../storage/blobstore.js';
import type { LiveCache } from './remove.js';

export interface VerifyReport {
  checked: number;
  bytes: number;
  corrupt: Array<{ digest: string; actual: string; size: number }>;
  /** Corrupt blobs deleted (they are fetched again on the next request). */
  removed: number;
}

/**
 * Re-hashes every stored blob and reports those whose content does not match their digest (bit rot, manual
 * edits). With `remove`, corrupt blobs are deleted; the blob cache fetches them again transparently on the next
 * pull, and a corrupt manifest is refetched because its link no longer resolves.
 */
export async function verifyBlobs(
  storage: BlobStore,
  opts: { remove: boolean; index?: MetadataIndex; live?: LiveCache; onProgress?(checked: number, bytes: number): void },
): Promise<VerifyReport> {
  const report: VerifyReport = { checked: 0, bytes: 0, corrupt: [], removed: 0 };
  for await (const { digest, size } of storage.listBlobs()) {
    const parsed = parseDigest(digest);
    if (!parsed) continue;
    const hasher = newHasher(parsed.algorithm);
    let n = 0;
    try {
      for await (const chunk of await storage.readBlob(digest)) {
        hasher.update(chunk as Buffer);
        n += (chunk as Buffer).length;
      }
    } catch {
      continue; // removed meanwhile (eviction)
    }
    report.checked++;
    report.bytes += n;
    opts.onProgress?.(report.checked, report.bytes);
    const actual = `${parsed.algorithm}:${hasher.digest('hex')}`;
    if (actual === digest) continue;
    report.corrupt.push({ digest, actual, size });
    if (!opts.remove) continue;
    await storage.deleteBlob(digest);
    opts.index?.removeBlob(digest);
    if (opts.index && opts.live) {
      for (const m of opts.index.manifests()) if (m.digest === digest) opts.live.forgetManifest(m.upstream, m.repo, digest);
    }
    report.removed++;
  }
  return report;
}
