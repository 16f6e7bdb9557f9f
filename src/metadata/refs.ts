import { isDigest } from '../oci/digest.js';

interface Descriptor {
  digest?: unknown;
}

/**
 * Digests a manifest references and therefore keeps alive: config + layers (OCI/Docker v2), child manifests
 * (index/list), blobs (artifact manifests), fsLayers (schema 1). `subject` is not included: it is another image.
 */
export function manifestRefs(bytes: Buffer): string[] {
  let doc: {
    config?: Descriptor;
    layers?: Descriptor[];
    manifests?: Descriptor[];
    blobs?: Descriptor[];
    fsLayers?: Array<{ blobSum?: unknown }>;
  };
  try {
    doc = JSON.parse(bytes.toString('utf8')) as typeof doc;
  } catch {
    return [];
  }
  if (typeof doc !== 'object' || doc === null) return [];
  const out = new Set<string>();
  const add = (d: unknown): void => {
    if (typeof d === 'string' && isDigest(d)) out.add(d);
  };
  add(doc.config?.digest);
  for (const list of [doc.layers, doc.manifests, doc.blobs]) {
    if (Array.isArray(list)) for (const d of list) add(d?.digest);
  }
  if (Array.isArray(doc.fsLayers)) for (const l of doc.fsLayers) add(l?.blobSum);
  return [...out];
}
