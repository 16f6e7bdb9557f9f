import { isDigest } from '../oci/digest.js';

/**
 * A small JSON record read back from storage (tag, manifest link, tag list), or undefined when it is torn,
 * empty or not what we wrote (a crash on a filesystem without the rename guarantee, a disk error, a hand
 * edit): the caller treats that as a cache miss and refetches, never as a permanent error.
 */
export function parseRecord<T>(buf: Buffer | null, valid: (v: Partial<T>) => boolean): T | undefined {
  if (!buf) return undefined;
  try {
    const v = JSON.parse(buf.toString('utf8')) as Partial<T> | null;
    return v !== null && typeof v === 'object' && valid(v) ? (v as T) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The tag record stored at tagKey(): the digest a tag pointed to when its upstream last confirmed it. Written by
 * the manifest cache on revalidation and by `regcache cache import`; read back with parseRecord(buf, isTagRecord).
 */
export interface StoredTag {
  digest: string;
  mediaType: string;
  /** Last time upstream confirmed this tag → digest (ms since epoch). */
  validatedAt: number;
}

/** The manifest link stored at manifestLinkKey(): the manifest (a blob) belongs to this repository. */
export interface StoredManifestLink {
  mediaType: string;
  size: number;
  fetchedAt: number;
}

export const isStoredTag = (r: Partial<StoredTag>): boolean =>
  typeof r.digest === 'string' && isDigest(r.digest) && typeof r.mediaType === 'string' && typeof r.validatedAt === 'number';
export const isStoredManifestLink = (l: Partial<StoredManifestLink>): boolean => typeof l.mediaType === 'string' && l.mediaType !== '';

export function encodeTag(rec: StoredTag): Buffer {
  return Buffer.from(JSON.stringify({ digest: rec.digest, mediaType: rec.mediaType, validatedAt: rec.validatedAt }));
}

export function encodeManifestLink(link: StoredManifestLink): Buffer {
  return Buffer.from(JSON.stringify({ mediaType: link.mediaType, size: link.size, fetchedAt: link.fetchedAt }));
}
