// Builds the bench images offline and pushes them to the upstream registry.
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildImage, MEDIA_TYPES, pushImage, type BlobInfo, type BuiltImage } from '../test/support/images.js';
import { removeDir } from '../test/support/tmp.js';
import type { Sizes } from './options.js';
import { makeBenchDir } from './tmp.js';

export interface PushedImage {
  /** repo:tag on the upstream (and so on the mirror) */
  ref: string;
  repo: string;
  manifestDigest: string;
  /** manifest + config + layers */
  bytes: number;
  /** config + layers: what an ideal mirror fetches once */
  blobCount: number;
}

export interface Fixtures {
  /** fresh 5-layer images for the cold pulls; [0] is also the warm one */
  five: PushedImage[];
  /** another fresh 5-layer image for the concurrent cold pulls */
  herd: PushedImage;
  small: PushedImage[];
  /** distinct blobs across the small images (one base layer, a top layer and a config each) */
  smallDistinctBlobs: number;
  big: { repo: string; digest: string; size: number };
  /** the blob the slow clients read */
  slow: { repo: string; digest: string; size: number };
}

/** Builds every image, pushes it to upstreamHost, removes the local layouts. Deterministic: same sizes, same digests. */
export async function buildFixtures(sizes: Sizes, upstreamHost: string): Promise<Fixtures> {
  const dir = await makeBenchDir('fixtures');
  try {
    const push = async (name: string, image: BuiltImage): Promise<PushedImage> => {
      const repo = `bench/${name}`;
      await pushImage(image, upstreamHost, `${repo}:latest`);
      return {
        ref: `${repo}:latest`,
        repo,
        manifestDigest: image.manifestDigest,
        bytes: image.manifestSize + image.blobs.reduce((n, b) => n + b.size, 0),
        blobCount: image.blobs.length,
      };
    };
    const five: PushedImage[] = [];
    for (let i = 0; i < sizes.coldRepeats; i++) {
      const image = await buildImage({ dir: join(dir, `five-${i}`), layers: sizes.fiveLayers, seed: `bench-five-${i}` });
      five.push(await push(`five-${i}`, image));
    }
    const herdImage = await buildImage({ dir: join(dir, 'herd'), layers: sizes.fiveLayers, seed: 'bench-herd' });
    const herd = await push('herd', herdImage);

    const smallImages = await buildSharedBaseImages(join(dir, 'small'), sizes);
    const small: PushedImage[] = [];
    for (let i = 0; i < smallImages.length; i += 4) {
      const batch = smallImages.slice(i, i + 4);
      small.push(...(await Promise.all(batch.map((img, j) => push(`small-${String(i + j).padStart(2, '0')}`, img)))));
    }
    const distinct = new Set(smallImages.flatMap((img) => img.blobs.map((b) => b.digest)));

    const bigImage = await buildImage({ dir: join(dir, 'big'), layers: [sizes.bigBlob], seed: 'bench-big' });
    await removeDir(join(dir, 'five-0')); // keep the peak disk use down before pushing the big one
    const bigPushed = await push('big', bigImage);
    const layer = bigImage.manifests[0]!.layers[0]!;
    const slowImage = await buildImage({ dir: join(dir, 'slow'), layers: [sizes.slowBlob], seed: 'bench-slow' });
    const slowPushed = await push('slow', slowImage);
    const slowLayer = slowImage.manifests[0]!.layers[0]!;
    return {
      five,
      herd,
      small,
      smallDistinctBlobs: distinct.size,
      big: { repo: bigPushed.repo, digest: layer.digest, size: layer.size },
      slow: { repo: slowPushed.repo, digest: slowLayer.digest, size: slowLayer.size },
    };
  } finally {
    await removeDir(dir);
  }
}

/**
 * `count` single-platform images in one layout, each = a shared base layer + its own small top layer.
 * buildImage derives every layer from its own seed, so the top layers are built as separate images and recombined.
 */
async function buildSharedBaseImages(dir: string, sizes: Sizes): Promise<BuiltImage[]> {
  const base = (await buildImage({ dir, ref: 'base', layers: [sizes.smallBase], seed: 'bench-small-base' }))
    .manifests[0]!.layers[0]!;
  const images: BuiltImage[] = [];
  for (let i = 0; i < sizes.smallImages; i++) {
    const top = (await buildImage({ dir, ref: `top-${i}`, layers: [sizes.smallTop], seed: `bench-small-${i}` }))
      .manifests[0]!.layers[0]!;
    const layers = [base, top];
    const config = await writeJsonBlob(
      dir,
      {
        created: '1970-01-01T00:00:00Z',
        architecture: 'amd64',
        os: 'linux',
        config: {},
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
        history: layers.map((_, n) => ({ created: '1970-01-01T00:00:00Z', created_by: `bench small ${i} layer ${n}` })),
      },
      MEDIA_TYPES.ociConfig,
    );
    const descriptors = layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size }));
    const manifest = await writeJsonBlob(
      dir,
      { schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config, layers: descriptors },
      MEDIA_TYPES.ociManifest,
    );
    images.push({
      layoutDir: dir,
      ref: `small-${i}`,
      manifestDigest: manifest.digest,
      mediaType: manifest.mediaType,
      manifestSize: manifest.size,
      blobs: [config, ...descriptors],
      manifests: [],
    });
  }
  const indexFile = join(dir, 'index.json');
  const index = JSON.parse(await readFile(indexFile, 'utf8')) as { manifests: unknown[] };
  for (const img of images) {
    index.manifests.push({
      mediaType: img.mediaType,
      digest: img.manifestDigest,
      size: img.manifestSize,
      annotations: { 'org.opencontainers.image.ref.name': img.ref },
    });
  }
  await writeFile(indexFile, JSON.stringify(index));
  return images;
}

async function writeJsonBlob(dir: string, value: unknown, mediaType: string): Promise<BlobInfo> {
  const bytes = Buffer.from(JSON.stringify(value));
  const hex = createHash('sha256').update(bytes).digest('hex');
  await writeFile(join(dir, 'blobs', 'sha256', hex), bytes);
  return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
}
