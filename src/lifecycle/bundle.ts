import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import tar from 'tar-stream';
import { RegistryError } from '../errors.js';
import type { MetadataIndex } from '../metadata/index.js';
import { repoName } from '../metadata/types.js';
import { parseDigest } from '../oci/digest.js';
import { MAX_MANIFEST_BYTES, OCI_INDEX } from '../oci/mediatypes.js';
import { isValidName, isValidTag } from '../oci/names.js';
import { encodeManifestLink, encodeTag, isStoredManifestLink, isStoredTag, parseRecord, type StoredTag } from '../proxy/records.js';
import { BlobStore } from '../storage/blobstore.js';
import { FilesystemDriver } from '../storage/filesystem.js';
import { manifestLinkKey, tagKey } from '../storage/keys.js';
import { parseCacheRef, repoMatches } from './admin.js';
import type { LiveCache } from './remove.js';
import type { Serial } from './serial.js';

/**
 * `regcache cache export` / `import`: an OCI image layout (oci-layout, index.json, blobs/<alg>/<hex>) in a tar
 * stream, with every tag as an `org.opencontainers.image.ref.name` annotation of its index.json entry and the
 * upstream and repository it was cached from as regcache annotations, so that an import links the images
 * exactly where a pull would have put them.
 */
export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';
export const ANNOTATION_UPSTREAM = 'io.regcache.upstream';
export const ANNOTATION_REPOSITORY = 'io.regcache.repository';
/** The full image name (containerd's import understands it): `<repo>:<tag>`. */
const ANNOTATION_IMAGE_NAME = 'io.containerd.image.name';

/** A problem with the bundle or the request: shown to the user as is (no stack trace). */
export class BundleError extends Error {}

export interface BundleContext {
  index: MetadataIndex;
  storage: BlobStore;
  /** The running proxy's memory (tag records, manifests), told about what an import changed. */
  live?: LiveCache;
  logger?: Logger;
  /** Configured upstream names; the first is the default. */
  upstreams: string[];
  /** Shared with the sweeper: an import and a sweep never run at the same time. */
  serial?: Serial;
  now?(): number;
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
  annotations?: Record<string, string>;
}

interface ManifestDoc {
  mediaType?: string;
  manifests?: Descriptor[];
  config?: Descriptor;
  layers?: Descriptor[];
  blobs?: Descriptor[];
}

function parseManifest(bytes: Buffer, what: string): ManifestDoc {
  try {
    const v = JSON.parse(bytes.toString('utf8')) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as ManifestDoc;
  } catch {
    // fall through
  }
  throw new BundleError(`${what} is not a JSON manifest`);
}

const isIndex = (doc: ManifestDoc): boolean => Array.isArray(doc.manifests);

/** Config, layers (and artifact blobs): what an image manifest needs besides itself. */
function imageBlobs(doc: ManifestDoc): Descriptor[] {
  return [doc.config, ...(doc.layers ?? []), ...(doc.blobs ?? [])].filter((d): d is Descriptor => typeof d?.digest === 'string');
}

function platformMatches(d: Descriptor, want: string): boolean {
  const [os_, arch, variant] = want.split('/');
  const p = d.platform;
  if (!p || p.os !== os_ || p.architecture !== arch) return false;
  return variant === undefined || p.variant === variant;
}

async function readSmall(storage: BlobStore, digest: string): Promise<Buffer | undefined> {
  let stream;
  try {
    stream = await storage.readBlob(digest);
  } catch {
    return undefined;
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of stream) {
    n += (c as Buffer).length;
    if (n > MAX_MANIFEST_BYTES) {
      stream.destroy();
      return undefined;
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

// ---------------------------------------------------------------- export

export interface ExportRoot {
  upstream: string;
  repo: string;
  digest: string;
  mediaType: string;
  size: number;
  tag?: string;
}

export interface ExportPlan {
  roots: ExportRoot[];
  /** Every blob to write (manifests, configs, layers), with its size. */
  blobs: Map<string, number>;
  /** Platforms of an index not in the cache (never pulled) and therefore not in the bundle. */
  skipped: string[];
  bytes: number;
}

/** Which cached images the references name: `repo:tag`, `repo@digest`, or `repo` (all its tags). */
function resolveRoots(ctx: BundleContext, refs: string[]): ExportRoot[] {
  const roots = new Map<string, ExportRoot>();
  const add = (r: ExportRoot): void => void roots.set(`${repoName(r.upstream, r.repo)}@${r.digest}:${r.tag ?? ''}`, r);
  for (const ref of refs) {
    const { repo, tag, digest } = parseCacheRef(ref);
    let found = 0;
    if (digest !== undefined) {
      for (const m of ctx.index.manifests()) {
        if (m.digest !== digest || !repoMatches(repo, m.upstream, m.repo)) continue;
        add({ upstream: m.upstream, repo: m.repo, digest, mediaType: m.mediaType, size: m.size });
        found++;
      }
    } else {
      for (const t of ctx.index.tags()) {
        if ((tag !== undefined && t.tag !== tag) || !repoMatches(repo, t.upstream, t.repo)) continue;
        const m = ctx.index.manifest(t.upstream, t.repo, t.digest);
        if (!m) continue;
        add({ upstream: t.upstream, repo: t.repo, digest: t.digest, mediaType: m.mediaType, size: m.size, tag: t.tag });
        found++;
      }
    }
    if (found === 0) throw new BundleError(`${ref} is not in the cache (see regcache cache ls)`);
  }
  return [...roots.values()];
}

/** Resolves the references and checks that every blob they need is stored, before a byte is written. */
export async function planExport(ctx: BundleContext, refs: string[], opts: { platform?: string } = {}): Promise<ExportPlan> {
  if (refs.length === 0) throw new BundleError('name at least one image to export');
  const roots = resolveRoots(ctx, refs);
  const blobs = new Map<string, number>();
  const skipped: string[] = [];
  const need = async (digest: string, what: string): Promise<number> => {
    const st = await ctx.storage.statBlob(digest);
    if (!st) throw new BundleError(`${what}: blob ${digest} is not in the cache (pull the image once, or run regcache cache warm)`);
    blobs.set(digest, st.size);
    return st.size;
  };
  const image = async (r: ExportRoot, digest: string, what: string): Promise<void> => {
    const bytes = await readSmall(ctx.storage, digest);
    if (!bytes) throw new BundleError(`${what}: manifest ${digest} is not in the cache`);
    blobs.set(digest, bytes.length);
    for (const d of imageBlobs(parseManifest(bytes, `${what}: ${digest}`))) await need(d.digest, what);
  };
  for (const r of roots) {
    const what = `${repoName(r.upstream, r.repo)}${r.tag ? `:${r.tag}` : `@${r.digest}`}`;
    const bytes = await readSmall(ctx.storage, r.digest);
    if (!bytes) throw new BundleError(`${what}: manifest ${r.digest} is not in the cache`);
    blobs.set(r.digest, bytes.length);
    r.size = bytes.length;
    const doc = parseManifest(bytes, what);
    if (!isIndex(doc)) {
      await image(r, r.digest, what);
      continue;
    }
    const children = (doc.manifests ?? []).filter((d) => !opts.platform || platformMatches(d, opts.platform));
    let taken = 0;
    for (const c of children) {
      const cached = ctx.index.manifest(r.upstream, r.repo, c.digest) ?? (await ctx.storage.statBlob(c.digest));
      const p = c.platform ? `${c.platform.os}/${c.platform.architecture}${c.platform.variant ? `/${c.platform.variant}` : ''}` : c.digest;
      if (!cached) {
        if (opts.platform) throw new BundleError(`${what}: platform ${opts.platform} was never pulled into the cache`);
        skipped.push(`${what} ${p}`);
        continue;
      }
      await image(r, c.digest, `${what} (${p})`);
      taken++;
    }
    if (taken === 0) throw new BundleError(`${what}: ${opts.platform ? `no platform ${opts.platform}` : 'no platform of this index'} is in the cache`);
  }
  let bytes = 0;
  for (const s of blobs.values()) bytes += s;
  return { roots, blobs, skipped, bytes };
}

function layoutIndex(plan: ExportPlan): Buffer {
  const manifests = plan.roots.map((r) => {
    const annotations: Record<string, string> = { [ANNOTATION_UPSTREAM]: r.upstream, [ANNOTATION_REPOSITORY]: r.repo };
    if (r.tag) {
      annotations[ANNOTATION_REF_NAME] = r.tag;
      annotations[ANNOTATION_IMAGE_NAME] = `${r.repo}:${r.tag}`;
    }
    return { mediaType: r.mediaType, digest: r.digest, size: r.size, annotations };
  });
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }, null, 2));
}

function blobPath(digest: string): string {
  const d = parseDigest(digest)!;
  return `blobs/${d.algorithm}/${d.hex}`;
}

/** Writes the planned images as an OCI layout tar to `out`, streaming every blob from storage. */
export async function writeBundle(ctx: BundleContext, plan: ExportPlan, out: Writable): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, out);
  const mtime = new Date(0);
  const small = (name: string, body: Buffer): Promise<void> =>
    new Promise((resolve, reject) => pack.entry({ name, size: body.length, mtime, mode: 0o644 }, body, (e) => (e ? reject(e) : resolve())));
  try {
    await small('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
    await small('index.json', layoutIndex(plan));
    for (const [digest, size] of plan.blobs) {
      const entry = pack.entry({ name: blobPath(digest), size, mtime, mode: 0o644 });
      await pipeline(await ctx.storage.readBlob(digest), entry);
    }
    pack.finalize();
  } catch (e) {
    pack.destroy(e as Error);
    await done.catch(() => {});
    throw e;
  }
  await done;
}

// ---------------------------------------------------------------- import

export interface ImportReport {
  images: Array<{ upstream: string; repo: string; digest: string; tag?: string }>;
  manifests: number;
  /** Blobs added to storage, and those it held already. */
  blobsAdded: number;
  blobsPresent: number;
  bytesAdded: number;
  /** Tags created or moved (a tag already pointing at the digest is left alone). */
  tagsSet: number;
}

/** Upper bound for index.json and oci-layout (they are read into memory). */
const MAX_INDEX_BYTES = 16 * 1024 * 1024;

/** The target of one index.json entry. */
interface ImportRoot {
  upstream: string;
  repo: string;
  digest: string;
  tag?: string;
}

function rootOf(d: Descriptor, ctx: BundleContext, opts: { upstream?: string }): ImportRoot {
  const a = d.annotations ?? {};
  const upstream = opts.upstream ?? a[ANNOTATION_UPSTREAM] ?? (ctx.upstreams.length === 1 ? ctx.upstreams[0]! : undefined);
  if (upstream === undefined) {
    throw new BundleError(`the bundle does not say which upstream ${d.digest} is from; choose one with --upstream (${ctx.upstreams.join(', ')})`);
  }
  if (!ctx.upstreams.includes(upstream)) {
    throw new BundleError(
      `the bundle's images are from upstream ${JSON.stringify(upstream)}, which is not configured (${ctx.upstreams.join(', ')}); choose one with --upstream`,
    );
  }
  let repo: string | undefined = a[ANNOTATION_REPOSITORY];
  let tag: string | undefined = a[ANNOTATION_REF_NAME];
  const full = a[ANNOTATION_IMAGE_NAME];
  if (repo === undefined && full !== undefined) {
    const { repo: r, tag: t } = parseCacheRef(full);
    repo = r;
    tag ??= t;
  }
  if (tag !== undefined && !isValidTag(tag)) {
    // A full reference in ref.name (`name:tag`), as some tools write it.
    const { repo: r, tag: t } = parseCacheRef(tag);
    repo ??= r;
    tag = t;
  }
  if (repo === undefined || !isValidName(repo)) {
    throw new BundleError(`index.json entry ${d.digest} names no repository (annotation ${ANNOTATION_REPOSITORY} or ${ANNOTATION_IMAGE_NAME})`);
  }
  if (tag !== undefined && !isValidTag(tag)) throw new BundleError(`index.json entry ${d.digest}: invalid tag ${JSON.stringify(tag)}`);
  return { upstream, repo, digest: d.digest, tag };
}

async function readEntry(stream: Readable, max: number, name: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of stream) {
    n += (c as Buffer).length;
    if (n > max) throw new BundleError(`${name} in the bundle is larger than ${max} bytes`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * Pass 1: every blob of the tar goes through a verifying writer into a scratch store (the bundle is read once,
 * streamed, never held in memory). A digest mismatch, a truncated tar or a missing index.json stops here, before
 * the cache is touched.
 */
async function unpackVerified(input: Readable, scratch: BlobStore): Promise<{ index: Buffer; blobs: Map<string, number> }> {
  const extract = tar.extract();
  let index: Buffer | undefined;
  let layout: Buffer | undefined;
  const blobs = new Map<string, number>();
  const consume = (async () => {
    for await (const entry of extract) {
      const name = entry.header.name.replace(/^\.\//, '');
      if (entry.header.type !== 'file') {
        entry.resume();
        continue;
      }
      if (name === 'index.json') index = await readEntry(entry, MAX_INDEX_BYTES, name);
      else if (name === 'oci-layout') layout = await readEntry(entry, MAX_INDEX_BYTES, name);
      else {
        const m = /^blobs\/([a-z0-9]+)\/([a-f0-9]+)$/.exec(name);
        const digest = m ? `${m[1]}:${m[2]}` : undefined;
        if (!digest || !parseDigest(digest)) {
          entry.resume(); // not part of the layout (e.g. a docker-save manifest.json): ignored
          continue;
        }
        const w = await scratch.createBlobWriter(digest);
        try {
          for await (const c of entry) await w.write(c as Buffer);
        } catch (e) {
          await w.abort();
          throw e;
        }
        try {
          await w.commit();
        } catch (e) {
          if (e instanceof RegistryError && e.code === 'DIGEST_INVALID') {
            const actual = (e.detail as { actual?: string } | undefined)?.actual;
            throw new BundleError(`blob ${digest} in the bundle is corrupt: its content hashes to ${actual ?? 'something else'}`);
          }
          throw e;
        }
        blobs.set(digest, w.bytesWritten);
      }
    }
  })();
  try {
    await Promise.all([pipeline(input, extract), consume]);
  } catch (e) {
    extract.destroy();
    if (e instanceof BundleError) throw e;
    const msg = (e as Error).message;
    if (/unexpected end|truncated|invalid tar|checksum|header/i.test(msg)) {
      throw new BundleError(`the bundle is truncated or not a tar archive (${msg})`);
    }
    throw e;
  }
  if (!index) throw new BundleError('the bundle is not an OCI image layout: it has no index.json');
  if (layout) {
    const v = (() => {
      try {
        return (JSON.parse(layout.toString('utf8')) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
      } catch {
        return undefined;
      }
    })();
    if (typeof v !== 'string') throw new BundleError('the bundle is not an OCI image layout: oci-layout is unreadable');
  }
  return { index, blobs };
}

interface PlannedManifest {
  upstream: string;
  repo: string;
  digest: string;
  mediaType: string;
  bytes: Buffer;
  refs: Descriptor[];
}

/** Imports a bundle (a tar stream) into the cache; nothing changes unless every blob and manifest checks out. */
export async function importBundle(
  ctx: BundleContext,
  input: Readable,
  opts: { upstream?: string; tmpDir?: string } = {},
): Promise<ImportReport> {
  if (opts.upstream !== undefined && !ctx.upstreams.includes(opts.upstream)) {
    throw new BundleError(`--upstream ${opts.upstream}: no such upstream (configured: ${ctx.upstreams.join(', ')})`);
  }
  const dir = await mkdtemp(path.join(opts.tmpDir ?? os.tmpdir(), 'regcache-import-'));
  const scratch = new BlobStore(await FilesystemDriver.open(dir));
  try {
    const unpacked = await unpackVerified(input, scratch);
    const plan = await checkBundle(ctx, scratch, unpacked, opts);
    const run = (): Promise<ImportReport> => commitImport(ctx, scratch, plan);
    return await (ctx.serial ? ctx.serial.run(run) : run());
  } finally {
    await scratch.close().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}

interface ImportPlan {
  roots: ImportRoot[];
  manifests: PlannedManifest[];
  /** Blobs the cache must hold afterwards, per repository that references them. */
  blobs: Map<string, { size: number; repos: Set<string> }>;
}

/** Pass 2: index.json → manifests → blobs; everything referenced must be in the bundle or already in the cache. */
async function checkBundle(
  ctx: BundleContext,
  scratch: BlobStore,
  unpacked: { index: Buffer; blobs: Map<string, number> },
  opts: { upstream?: string },
): Promise<ImportPlan> {
  const top = parseManifest(unpacked.index, 'index.json');
  if (!Array.isArray(top.manifests) || top.manifests.length === 0) throw new BundleError('index.json lists no images');
  const has = async (digest: string): Promise<number | undefined> =>
    unpacked.blobs.get(digest) ?? (await ctx.storage.statBlob(digest))?.size;
  const read = async (digest: string): Promise<Buffer | undefined> =>
    unpacked.blobs.has(digest) ? readSmall(scratch, digest) : readSmall(ctx.storage, digest);

  const roots: ImportRoot[] = [];
  const manifests = new Map<string, PlannedManifest>();
  const blobs: ImportPlan['blobs'] = new Map();
  const need = (digest: string, size: number, upstream: string, repo: string): void => {
    let b = blobs.get(digest);
    if (!b) blobs.set(digest, (b = { size, repos: new Set() }));
    b.repos.add(repoName(upstream, repo));
  };
  const manifest = async (r: ImportRoot, d: Descriptor, what: string, optional: boolean): Promise<boolean> => {
    if (typeof d?.digest !== 'string' || !parseDigest(d.digest)) throw new BundleError(`${what}: invalid descriptor ${JSON.stringify(d)}`);
    const bytes = await read(d.digest);
    if (!bytes) {
      if (optional) return false;
      throw new BundleError(`${what}: manifest ${d.digest} is neither in the bundle nor in the cache`);
    }
    if (typeof d.size === 'number' && d.size !== bytes.length) {
      throw new BundleError(`${what}: manifest ${d.digest} is ${bytes.length} bytes, its descriptor says ${d.size}`);
    }
    const doc = parseManifest(bytes, `${what}: ${d.digest}`);
    const mediaType = doc.mediaType ?? d.mediaType;
    if (!mediaType) throw new BundleError(`${what}: manifest ${d.digest} has no media type`);
    const refs = isIndex(doc) ? doc.manifests! : imageBlobs(doc);
    manifests.set(`${repoName(r.upstream, r.repo)}@${d.digest}`, { upstream: r.upstream, repo: r.repo, digest: d.digest, mediaType, bytes, refs });
    need(d.digest, bytes.length, r.upstream, r.repo);
    if (isIndex(doc)) {
      let present = 0;
      for (const [i, c] of refs.entries()) {
        // An index exported with --platform carries only some of its platforms: the others stay upstream's.
        if (await manifest(r, c, `${what} [platform ${i}]`, true)) present++;
      }
      if (present === 0) throw new BundleError(`${what}: none of the platforms of index ${d.digest} is in the bundle or the cache`);
      return true;
    }
    for (const b of refs) {
      if (typeof b.digest !== 'string' || !parseDigest(b.digest)) throw new BundleError(`${what}: invalid blob descriptor ${JSON.stringify(b)}`);
      const size = await has(b.digest);
      if (size === undefined) throw new BundleError(`${what}: manifest ${d.digest} references blob ${b.digest}, which is neither in the bundle nor in the cache`);
      if (typeof b.size === 'number' && b.size !== size) {
        throw new BundleError(`${what}: blob ${b.digest} is ${size} bytes, manifest ${d.digest} says ${b.size}`);
      }
      need(b.digest, size, r.upstream, r.repo);
    }
    return true;
  };
  for (const d of top.manifests) {
    const r = rootOf(d, ctx, opts);
    await manifest(r, d, `${repoName(r.upstream, r.repo)}${r.tag ? `:${r.tag}` : `@${d.digest}`}`, false);
    roots.push(r);
  }
  return { roots, manifests: [...manifests.values()], blobs };
}

/**
 * Pass 3: blobs into the cache's storage (through its verifying writer again), then manifest links, tag
 * records and the index — in that order, so a crash leaves at most unreferenced blobs for the sweeper. Blobs
 * this run added are removed again when copying fails (a full disk).
 */
async function commitImport(ctx: BundleContext, scratch: BlobStore, plan: ImportPlan): Promise<ImportReport> {
  const { storage, index } = ctx;
  const now = (ctx.now ?? Date.now)();
  const report: ImportReport = { images: [], manifests: 0, blobsAdded: 0, blobsPresent: 0, bytesAdded: 0, tagsSet: 0 };
  const added: string[] = [];
  try {
    for (const [digest, b] of plan.blobs) {
      if (await storage.statBlob(digest)) {
        report.blobsPresent++;
        continue;
      }
      const w = await storage.createBlobWriter(digest);
      try {
        for await (const c of await scratch.readBlob(digest)) await w.write(c as Buffer);
      } catch (e) {
        await w.abort();
        throw e;
      }
      await w.commit();
      added.push(digest);
      report.blobsAdded++;
      report.bytesAdded += b.size;
    }
  } catch (e) {
    for (const d of added) if (!index.blob(d)) await storage.deleteBlob(d).catch(() => {});
    throw new BundleError(`import failed while copying blobs into the cache, nothing was imported: ${(e as Error).message}`);
  }

  for (const m of plan.manifests) {
    const key = manifestLinkKey(m.upstream, m.repo, m.digest);
    if (!parseRecord(await storage.getObject(key), isStoredManifestLink)) {
      await storage.putObject(key, encodeManifestLink({ mediaType: m.mediaType, size: m.bytes.length, fetchedAt: now }));
    }
    if (!index.manifest(m.upstream, m.repo, m.digest)) {
      index.manifestFetched(m.upstream, m.repo, m.digest, m.mediaType, m.bytes, now);
      report.manifests++;
    }
    for (const r of m.refs) {
      const size = plan.blobs.get(r.digest)?.size;
      if (size === undefined || index.manifest(m.upstream, m.repo, r.digest)) continue; // a child manifest: its own entry
      const rec = index.blob(r.digest);
      if (!rec || !rec.repos.includes(repoName(m.upstream, m.repo))) index.blobFetched(r.digest, size, m.upstream, m.repo, rec?.fetchedAt ?? now);
    }
  }
  for (const r of plan.roots) {
    report.images.push({ upstream: r.upstream, repo: r.repo, digest: r.digest, ...(r.tag && { tag: r.tag }) });
    if (!r.tag) continue;
    const key = tagKey(r.upstream, r.repo, r.tag);
    const old = parseRecord<StoredTag>(await storage.getObject(key), isStoredTag);
    if (old?.digest === r.digest && index.tag(r.upstream, r.repo, r.tag)?.digest === r.digest) continue;
    const mediaType = plan.manifests.find((m) => m.digest === r.digest)!.mediaType;
    await storage.putObject(key, encodeTag({ digest: r.digest, mediaType, validatedAt: now }));
    index.tagValidated(r.upstream, r.repo, r.tag, r.digest, now);
    ctx.live?.forgetTag(r.upstream, r.repo, r.tag);
    report.tagsSet++;
    if (old && old.digest !== r.digest) ctx.logger?.info({ upstream: r.upstream, repo: r.repo, tag: r.tag, from: old.digest, to: r.digest }, 'import moved a tag');
  }
  await index.flush();
  ctx.logger?.info({ images: report.images.length, blobsAdded: report.blobsAdded, bytesAdded: report.bytesAdded }, 'bundle imported');
  return report;
}
