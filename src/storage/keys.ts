import { parseDigest } from '../oci/digest.js';
import { RegistryError } from '../errors.js';
import { isValidTag } from '../oci/names.js';

/**
 * Storage key layout. Repository names reaching here are validated against the OCI grammar (no `..`,
 * no empty components), upstream names come from config; both are checked again here so that no key
 * can ever leave the storage root.
 */
const SAFE_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;

function checkPath(p: string): string {
  for (const seg of p.split('/')) {
    if (!SAFE_SEGMENT.test(seg) || seg.includes('..')) {
      throw new RegistryError('NAME_INVALID', 'invalid repository or upstream name');
    }
  }
  return p;
}

export function blobKey(digest: string): string {
  const d = parseDigest(digest);
  if (!d) throw new RegistryError('DIGEST_INVALID', 'invalid digest', { detail: { digest } });
  return `blobs/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}`;
}

export function repoPrefix(upstream: string, repo: string): string {
  return `repositories/${checkPath(upstream)}/${checkPath(repo)}`;
}

export function manifestLinkKey(upstream: string, repo: string, digest: string): string {
  const d = parseDigest(digest);
  if (!d) throw new RegistryError('DIGEST_INVALID', 'invalid digest', { detail: { digest } });
  return `${repoPrefix(upstream, repo)}/_manifests/${d.algorithm}/${d.hex}`;
}

export function tagKey(upstream: string, repo: string, tag: string): string {
  if (!isValidTag(tag)) throw new RegistryError('MANIFEST_UNKNOWN', 'invalid tag', { detail: { tag } });
  return `${repoPrefix(upstream, repo)}/_tags/${tag}`;
}

/** The last referrers list of a manifest (OCI 1.1 referrers API), as its upstream answered it. */
export function referrersKey(upstream: string, repo: string, digest: string): string {
  const d = parseDigest(digest);
  if (!d) throw new RegistryError('DIGEST_INVALID', 'invalid digest', { detail: { digest } });
  return `${repoPrefix(upstream, repo)}/_referrers/${d.algorithm}/${d.hex}`;
}

export function tagListKey(upstream: string, repo: string): string {
  return `${repoPrefix(upstream, repo)}/_taglist`;
}

/** Parses `repositories/<upstream>/<repo...>/_manifests|_tags/...` back into its repository. */
export function repoOfKey(key: string): { upstream: string; repo: string } | undefined {
  const m = /^repositories\/([^/]+)\/(.+?)\/_(?:manifests|tags|taglist)(?:\/|$)/.exec(key);
  return m ? { upstream: m[1]!, repo: m[2]! } : undefined;
}
