// Builds OCI image layouts offline, deterministically from a seed, for use as test fixtures.
import { createCipheriv, createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { sha256 } from './digest.js';
import { makeTempDir, removeDir } from './tmp.js';
import { skopeo } from './skopeo.js';

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

export interface BlobInfo {
  digest: string;
  size: number;
  mediaType: string;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** One image manifest inside a layout (the image itself, or one platform of a multi-arch index). */
export interface BuiltManifest extends BlobInfo {
  platform: Platform;
  config: BlobInfo;
  /** diffId: sha256 of the uncompressed tar; uncompressedSize: the tar's length */
  layers: Array<BlobInfo & { diffId: string; uncompressedSize: number }>;
}

export interface BuiltImage {
  /** OCI layout dir (oci-layout, index.json, blobs/sha256/...) */
  layoutDir: string;
  /** tag inside the layout (use in `oci:${layoutDir}:${ref}`) */
  ref: string;
  /** top-level digest (index digest for multi-arch) */
  manifestDigest: string;
  mediaType: string;
  /** byte length of the top-level manifest/index */
  manifestSize: number;
  /** all blobs below the top-level manifest: configs, layers, child manifests (not the top-level one) */
  blobs: BlobInfo[];
  /** image manifests: one for a single-platform image, one per platform for an index */
  manifests: BuiltManifest[];
}

const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };
const EPOCH = '1970-01-01T00:00:00Z';
const CHUNK = 1 << 20;

/** A single-platform OCI image; each layer is a gzip'd tar holding one file of `size` seeded pseudo-random bytes. */
export async function buildImage(opts: {
  dir: string;
  ref?: string;
  layers: number[];
  seed?: string;
  platform?: Platform;
}): Promise<BuiltImage> {
  const ref = opts.ref ?? 'latest';
  const platform = opts.platform ?? DEFAULT_PLATFORM;
  await initLayout(opts.dir);
  const image = await writeImage(opts.dir, opts.layers, opts.seed ?? 'regcache', platform);
  await addRef(opts.dir, image, ref);
  return {
    layoutDir: opts.dir,
    ref,
    manifestDigest: image.digest,
    mediaType: image.mediaType,
    manifestSize: image.size,
    blobs: [image.config, ...image.layers.map(descriptor)],
    manifests: [image],
  };
}

/** An OCI index referencing one image manifest per platform, all in one layout. */
export async function buildMultiArchImage(opts: {
  dir: string;
  ref?: string;
  seed?: string;
  platforms: Platform[];
  layers?: number[];
}): Promise<BuiltImage> {
  const ref = opts.ref ?? 'latest';
  const seed = opts.seed ?? 'regcache';
  await initLayout(opts.dir);
  const manifests: BuiltManifest[] = [];
  for (const platform of opts.platforms) {
    const platformSeed = `${seed}/${platform.os}/${platform.architecture}/${platform.variant ?? ''}`;
    manifests.push(await writeImage(opts.dir, opts.layers ?? [4096], platformSeed, platform));
  }
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: manifests.map((m) => ({ ...descriptor(m), platform: platformJson(m.platform) })),
  };
  const indexBlob = await writeJsonBlob(opts.dir, index, MEDIA_TYPES.ociIndex);
  await addRef(opts.dir, indexBlob, ref);
  return {
    layoutDir: opts.dir,
    ref,
    manifestDigest: indexBlob.digest,
    mediaType: indexBlob.mediaType,
    manifestSize: indexBlob.size,
    blobs: manifests.flatMap((m) => [descriptor(m), m.config, ...m.layers.map(descriptor)]),
    manifests,
  };
}

/**
 * skopeo copy oci:LAYOUT:REF docker://HOST/REPO:TAG over plain HTTP. Returns the digest of the pushed top-level
 * manifest (equal to image.manifestDigest for format 'oci'; a converted manifest for 'v2s2').
 * `all` defaults to true for an index.
 */
export async function pushImage(
  image: BuiltImage,
  registryHost: string,
  repoAndTag: string,
  opts: { format?: 'oci' | 'v2s2'; creds?: string; all?: boolean } = {},
): Promise<string> {
  const all = opts.all ?? image.mediaType === MEDIA_TYPES.ociIndex;
  const tmp = await makeTempDir('regcache-push-');
  try {
    const digestFile = join(tmp, 'digest');
    const args = ['copy', '--quiet', '--dest-tls-verify=false', '--digestfile', digestFile];
    if (all) args.push('--all');
    // oci: push the built bytes unchanged (fail rather than silently re-encode); v2s2: convert
    args.push(...(opts.format === 'v2s2' ? ['--format', 'v2s2'] : ['--preserve-digests']));
    if (opts.creds) args.push('--dest-creds', opts.creds);
    args.push(`oci:${image.layoutDir}:${image.ref}`, `docker://${registryHost}/${repoAndTag}`);
    await skopeo(args, { timeoutMs: 600_000 });
    return (await readFile(digestFile, 'utf8')).trim();
  } finally {
    await removeDir(tmp);
  }
}

async function initLayout(dir: string): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
}

/** Adds (or replaces) a tagged entry in the layout's index.json. Not safe for concurrent builds into one dir. */
async function addRef(dir: string, desc: BlobInfo, ref: string): Promise<void> {
  const file = join(dir, 'index.json');
  type Entry = BlobInfo & { annotations?: Record<string, string> };
  let manifests: Entry[] = [];
  try {
    manifests = (JSON.parse(await readFile(file, 'utf8')) as { manifests: Entry[] }).manifests;
  } catch {
    // no index yet
  }
  manifests = manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] !== ref);
  manifests.push({ ...descriptor(desc), annotations: { 'org.opencontainers.image.ref.name': ref } });
  await writeFile(file, JSON.stringify({ schemaVersion: 2, manifests }));
}

async function writeImage(dir: string, layerSizes: number[], seed: string, platform: Platform): Promise<BuiltManifest> {
  const layers: BuiltManifest['layers'] = [];
  for (const [i, size] of layerSizes.entries()) {
    layers.push(await writeLayer(dir, `layer-${i}.bin`, size, `${seed}/layer/${i}`));
  }
  const config = await writeJsonBlob(
    dir,
    {
      created: EPOCH,
      architecture: platform.architecture,
      ...(platform.variant ? { variant: platform.variant } : {}),
      os: platform.os,
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((_, i) => ({ created: EPOCH, created_by: `regcache test layer ${i} (${seed})` })),
    },
    MEDIA_TYPES.ociConfig,
  );
  const manifest = await writeJsonBlob(
    dir,
    {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: descriptor(config),
      layers: layers.map(descriptor),
    },
    MEDIA_TYPES.ociManifest,
  );
  return { ...manifest, platform, config, layers };
}

async function writeJsonBlob(dir: string, value: unknown, mediaType: string): Promise<BlobInfo> {
  const bytes = Buffer.from(JSON.stringify(value));
  const digest = sha256(bytes);
  await writeFile(blobPath(dir, digest), bytes);
  return { mediaType, digest, size: bytes.length };
}

/**
 * Streams tar → gzip → file with bounded memory, hashing both sides. gzip level 0 (stored blocks): the payload is
 * random and would not compress anyway, and this keeps a 1 GiB layer at disk/hash speed while staying real gzip
 * (so skopeo passes it through instead of compressing it on push).
 */
async function writeLayer(dir: string, fileName: string, size: number, seed: string) {
  const diff = createHash('sha256');
  const compressed = createHash('sha256');
  let compressedSize = 0;
  let uncompressedSize = 0;
  const tmpFile = join(dir, 'blobs', `.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  await pipeline(
    tarOfOneFile(fileName, size, seed),
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        diff.update(chunk);
        uncompressedSize += chunk.length;
        yield chunk;
      }
    },
    createGzip({ level: 0, chunkSize: 256 * 1024 }),
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        compressed.update(chunk);
        compressedSize += chunk.length;
        yield chunk;
      }
    },
    createWriteStream(tmpFile),
  );
  const digest = `sha256:${compressed.digest('hex')}`;
  await rename(tmpFile, blobPath(dir, digest));
  return {
    mediaType: MEDIA_TYPES.ociLayerGzip,
    digest,
    size: compressedSize,
    diffId: `sha256:${diff.digest('hex')}`,
    uncompressedSize,
  };
}

async function* tarOfOneFile(name: string, size: number, seed: string): AsyncGenerator<Buffer> {
  yield tarHeader(name, size);
  // AES-128-CTR keystream over zeros: a fast, seeded, deterministic pseudo-random byte stream
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(CHUNK);
  for (let left = size; left > 0; left -= CHUNK) {
    yield cipher.update(left >= CHUNK ? zeros : zeros.subarray(0, left));
  }
  const padding = (512 - (size % 512)) % 512;
  yield Buffer.alloc(padding + 1024); // pad the file to a block, then two zero blocks end the archive
}

function tarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  const octal = (n: number, width: number) => n.toString(8).padStart(width - 1, '0') + '\0';
  h.write(name, 0, 100, 'utf8');
  h.write(octal(0o644, 8), 100);
  h.write(octal(0, 8), 108); // uid
  h.write(octal(0, 8), 116); // gid
  h.write(octal(size, 12), 124);
  h.write(octal(0, 12), 136); // mtime
  h.write(' '.repeat(8), 148); // checksum is computed with its own field as spaces
  h.write('0', 156); // regular file
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.write('root', 265);
  h.write('root', 297);
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}

function blobPath(dir: string, digest: string): string {
  return join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
}

/** Just the descriptor fields, in the order they are commonly written. */
function descriptor(b: BlobInfo): BlobInfo {
  return { mediaType: b.mediaType, digest: b.digest, size: b.size };
}

function platformJson(p: Platform): Platform {
  return { architecture: p.architecture, os: p.os, ...(p.variant ? { variant: p.variant } : {}) };
}
