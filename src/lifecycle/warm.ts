import { MANIFEST_MEDIA_TYPES } from '../oci/mediatypes.js';

export interface WarmProgress {
  image: string;
  /** Blobs (config + layers) to fetch for this image, and done so far. */
  blobsTotal: number;
  blobsDone: number;
  bytesTotal: number;
  bytesDone: number;
}

export interface WarmOptions {
  /** Mirror base URL, e.g. http://127.0.0.1:5000 */
  mirror: string;
  /** `os/arch[/variant]`; default: every platform of a multi-arch image. */
  platform?: string;
  /** `user:password` for a mirror with auth.htpasswd. */
  creds?: string;
  concurrency?: number;
  onProgress?(p: WarmProgress): void;
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
}

interface ManifestDoc {
  mediaType?: string;
  manifests?: Descriptor[];
  config?: Descriptor;
  layers?: Descriptor[];
}

/** `alpine`, `alpine:3.19`, `team/app@sha256:...`, `ghcr.io/owner/app:1` → name + reference (default tag `latest`). */
export function parseImageRef(ref: string): { name: string; reference: string } {
  const at = ref.indexOf('@');
  if (at >= 0) return { name: ref.slice(0, at), reference: ref.slice(at + 1) };
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon > slash) return { name: ref.slice(0, colon), reference: ref.slice(colon + 1) };
  return { name: ref, reference: 'latest' };
}

function platformMatches(d: Descriptor, want: string): boolean {
  const [os, arch, variant] = want.split('/');
  const p = d.platform;
  if (!p || p.os !== os || p.architecture !== arch) return false;
  return variant === undefined || p.variant === variant;
}

/**
 * Pre-pulls images through a running mirror's registry API, exactly as a client would: the manifest (every
 * platform of an index, or one), then each config and layer blob, bodies read and discarded. The mirror caches
 * whatever it fetches. Returns the totals per image; throws on the first failure.
 */
export async function warmImage(image: string, opts: WarmOptions): Promise<WarmProgress> {
  const { name, reference } = parseImageRef(image);
  const base = opts.mirror.replace(/\/+$/, '');
  const headers: Record<string, string> = {};
  if (opts.creds) headers.Authorization = `Basic ${Buffer.from(opts.creds).toString('base64')}`;

  const getManifest = async (ref: string): Promise<ManifestDoc> => {
    const res = await fetch(`${base}/v2/${name}/manifests/${ref}`, { headers: { ...headers, Accept: MANIFEST_MEDIA_TYPES.join(', ') } });
    if (!res.ok) throw new Error(`${image}: manifest ${ref}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
    return (await res.json()) as ManifestDoc;
  };

  const top = await getManifest(reference);
  let images: ManifestDoc[];
  if (Array.isArray(top.manifests)) {
    const children = opts.platform ? top.manifests.filter((d) => platformMatches(d, opts.platform!)) : top.manifests;
    if (children.length === 0) throw new Error(`${image}: no manifest for platform ${opts.platform}`);
    images = [];
    for (const c of children) images.push(await getManifest(c.digest));
  } else {
    images = [top];
  }
  const blobs = new Map<string, Descriptor>();
  for (const m of images) for (const d of [m.config, ...(m.layers ?? [])]) if (d?.digest) blobs.set(d.digest, d);

  const progress: WarmProgress = {
    image,
    blobsTotal: blobs.size,
    blobsDone: 0,
    bytesTotal: [...blobs.values()].reduce((s, d) => s + (d.size ?? 0), 0),
    bytesDone: 0,
  };
  opts.onProgress?.({ ...progress });
  const queue = [...blobs.values()];
  const worker = async (): Promise<void> => {
    for (let d = queue.shift(); d; d = queue.shift()) {
      const res = await fetch(`${base}/v2/${name}/blobs/${d.digest}`, { headers });
      if (!res.ok || !res.body) throw new Error(`${image}: blob ${d.digest}: HTTP ${res.status}`);
      for await (const chunk of res.body) {
        progress.bytesDone += (chunk as Uint8Array).length;
        opts.onProgress?.({ ...progress });
      }
      progress.blobsDone++;
      opts.onProgress?.({ ...progress });
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 3, Math.max(1, queue.length)) }, worker));
  return progress;
}
