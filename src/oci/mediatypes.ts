export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_SCHEMA1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
export const DOCKER_SCHEMA1 = 'application/vnd.docker.distribution.manifest.v1+json';

export const MANIFEST_MEDIA_TYPES: readonly string[] = [
  OCI_INDEX,
  OCI_MANIFEST,
  DOCKER_LIST,
  DOCKER_MANIFEST,
  DOCKER_SCHEMA1_SIGNED,
  DOCKER_SCHEMA1,
];

/** What we send upstream: we cache whatever the upstream's canonical manifest is, for every client. */
export const UPSTREAM_MANIFEST_ACCEPT = MANIFEST_MEDIA_TYPES.join(', ');

/** Manifests larger than this are refused (distribution's limit is 4 MiB). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export function isManifestMediaType(t: string | undefined): boolean {
  if (!t) return false;
  return MANIFEST_MEDIA_TYPES.includes(stripParams(t));
}

export function stripParams(contentType: string): string {
  return contentType.split(';')[0]!.trim().toLowerCase();
}

/**
 * The media type of manifest bytes: the upstream Content-Type when it is a manifest type, else the
 * `mediaType` field of the JSON. Returns undefined when the bytes are not a manifest at all
 * (e.g. an HTML error page answered with 200).
 */
export function detectManifestMediaType(bytes: Buffer, contentType: string | undefined): string | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return undefined;
  const d = doc as { schemaVersion?: unknown; mediaType?: unknown; manifests?: unknown };
  if (d.schemaVersion !== 1 && d.schemaVersion !== 2) return undefined;
  if (contentType && isManifestMediaType(contentType)) return stripParams(contentType);
  if (typeof d.mediaType === 'string' && isManifestMediaType(d.mediaType)) return d.mediaType;
  if (d.schemaVersion === 2) return Array.isArray(d.manifests) ? OCI_INDEX : OCI_MANIFEST;
  return DOCKER_SCHEMA1_SIGNED;
}
