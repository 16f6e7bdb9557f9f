import { closeSync, fstat, open as openCb } from 'node:fs';
import { promisify } from 'node:util';
import { mkdir, open, readFile, readdir, rename, rm, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { RegistryError } from '../errors.js';
import { newHasher, parseDigest } from '../oci/digest.js';
import { blobKey } from './keys.js';
import { FileRangeStream } from './filerange.js';
import type { BlobWriter, ByteRange, StorageDriver } from './types.js';

const UPLOADS = '_uploads';
const openFd = promisify(openCb);
const fstatFd = promisify(fstat);

function isNotFound(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'ENOENT';
}

function storageError(op: string, e: unknown): RegistryError {
  const code = (e as NodeJS.ErrnoException)?.code ?? 'unknown';
  return new RegistryError('STORAGE_ERROR', `storage ${op} failed (${code})`, { cause: e });
}

/**
 * Local-filesystem storage. Every write goes to `<root>/_uploads/<uuid>` first and is renamed into place,
 * so a crash (kill -9) never leaves a partial blob or object under its final name.
 */
export class FilesystemStorage implements StorageDriver {
  private readonly uploads: string;

  private constructor(
    readonly root: string,
    readonly kind: string,
    private readonly ephemeral: boolean,
  ) {
    this.uploads = path.join(root, UPLOADS);
  }

  /** `ephemeral`: the directory is removed on close (the `inmemory` driver). */
  static async open(root: string, opts: { ephemeral?: boolean } = {}): Promise<FilesystemStorage> {
    const abs = path.resolve(root);
    try {
      await mkdir(path.join(abs, UPLOADS), { recursive: true });
    } catch (e) {
      throw storageError(`init of ${abs}`, e);
    }
    return new FilesystemStorage(abs, opts.ephemeral ? 'inmemory' : 'filesystem', opts.ephemeral ?? false);
  }

  private file(key: string): string {
    const p = path.join(this.root, key);
    if (!p.startsWith(this.root + path.sep)) throw new RegistryError('NAME_INVALID', 'invalid storage key');
    return p;
  }

  /**
   * Runs fn (which creates a file in _uploads). When _uploads is gone — the storage directory was deleted and
   * recreated empty under a running server — recreates it once and retries. The root itself is not recreated.
   */
  private async inUploads<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (!isNotFound(e)) throw e;
      await mkdir(this.uploads).catch((m: NodeJS.ErrnoException) => {
        if (m.code !== 'EEXIST') throw e;
      });
      return fn();
    }
  }

  localBlobPath(digest: string): string {
    return this.file(blobKey(digest));
  }

  async statBlob(digest: string): Promise<{ size: number } | null> {
    const p = this.localBlobPath(digest);
    try {
      const s = await stat(p);
      return { size: s.size };
    } catch (e) {
      if (isNotFound(e)) return null;
      throw storageError('stat', e);
    }
  }

  async readBlob(digest: string, range?: ByteRange): Promise<Readable> {
    const p = this.localBlobPath(digest);
    // A raw fd (not a FileHandle, which closes itself on GC), owned by the stream (closed when destroyed).
    let fd: number;
    try {
      fd = await openFd(p, 'r');
    } catch (e) {
      if (isNotFound(e)) throw new RegistryError('BLOB_UNKNOWN', 'blob unknown to registry', { detail: { digest } });
      throw storageError('read', e);
    }
    let size: number;
    try {
      size = (await fstatFd(fd)).size;
    } catch (e) {
      closeSync(fd);
      throw storageError('read', e);
    }
    return new FileRangeStream(fd, range?.start ?? 0, range?.end ?? size - 1);
  }

  async createBlobWriter(digest: string): Promise<BlobWriter> {
    const parsed = parseDigest(digest);
    if (!parsed) throw new RegistryError('DIGEST_INVALID', 'invalid digest', { detail: { digest } });
    const final = this.localBlobPath(digest);
    const temp = path.join(this.uploads, randomUUID());
    let fh: FileHandle;
    try {
      fh = await this.inUploads(() => open(temp, 'wx', 0o644));
    } catch (e) {
      throw storageError('create temp file', e);
    }
    const hasher = newHasher(parsed.algorithm);
    let written = 0;
    let done = false;
    const abort = async (): Promise<void> => {
      if (done) return;
      done = true;
      await fh.close().catch(() => {});
      await unlink(temp).catch(() => {});
    };
    return {
      tempPath: temp,
      get bytesWritten() {
        return written;
      },
      async write(chunk: Uint8Array) {
        if (done) throw new RegistryError('INTERNAL', 'write after commit/abort');
        hasher.update(chunk);
        let off = 0;
        try {
          while (off < chunk.length) {
            const { bytesWritten } = await fh.write(chunk, off, chunk.length - off, written + off);
            off += bytesWritten;
          }
        } catch (e) {
          await abort();
          throw storageError('write', e);
        }
        written += chunk.length;
      },
      async commit() {
        if (done) throw new RegistryError('INTERNAL', 'commit after commit/abort');
        const actual = `${parsed.algorithm}:${hasher.digest('hex')}`;
        if (actual !== digest) {
          await abort();
          throw new RegistryError('DIGEST_INVALID', 'content does not match digest', { detail: { digest, actual } });
        }
        try {
          await fh.datasync();
          await fh.close();
          done = true;
          await mkdir(path.dirname(final), { recursive: true });
          await rename(temp, final);
        } catch (e) {
          done = false;
          await abort();
          throw storageError('commit', e);
        }
      },
      abort,
    };
  }

  async deleteBlob(digest: string): Promise<void> {
    await rm(this.localBlobPath(digest), { force: true });
  }

  async *listBlobs(): AsyncIterable<{ digest: string; size: number }> {
    const base = path.join(this.root, 'blobs');
    for (const alg of await readdirOrEmpty(base)) {
      for (const pre of await readdirOrEmpty(path.join(base, alg))) {
        for (const hex of await readdirOrEmpty(path.join(base, alg, pre))) {
          const digest = `${alg}:${hex}`;
          if (!parseDigest(digest)) continue;
          const s = await stat(path.join(base, alg, pre, hex)).catch(() => null);
          if (s?.isFile()) yield { digest, size: s.size };
        }
      }
    }
  }

  async getObject(key: string): Promise<Buffer | null> {
    const p = this.file(key);
    try {
      return await readFile(p);
    } catch (e) {
      if (isNotFound(e) || (e as NodeJS.ErrnoException).code === 'EISDIR') return null;
      throw storageError('read', e);
    }
  }

  async putObject(key: string, data: Buffer): Promise<void> {
    const final = this.file(key);
    const temp = path.join(this.uploads, randomUUID());
    try {
      await this.inUploads(() => writeFile(temp, data, { flag: 'wx' }));
      await mkdir(path.dirname(final), { recursive: true });
      await rename(temp, final);
    } catch (e) {
      await unlink(temp).catch(() => {});
      throw storageError('write', e);
    }
  }

  async deleteObject(key: string): Promise<void> {
    await rm(this.file(key), { force: true });
  }

  async *listObjects(prefix: string): AsyncIterable<string> {
    const start = this.file(prefix.replace(/\/+$/, ''));
    const walk = async function* (dir: string, rel: string): AsyncIterable<string> {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        if (isNotFound(e) || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return;
        throw storageError('list', e);
      }
      for (const ent of entries) {
        const childRel = `${rel}/${ent.name}`;
        if (ent.isDirectory()) yield* walk(path.join(dir, ent.name), childRel);
        else if (ent.isFile()) yield childRel;
      }
    };
    yield* walk(start, prefix.replace(/\/+$/, ''));
  }

  async cleanup(): Promise<number> {
    const names = await readdirOrEmpty(this.uploads);
    await Promise.all(names.map((n) => rm(path.join(this.uploads, n), { force: true, recursive: true })));
    return names.length;
  }

  async close(): Promise<void> {
    if (this.ephemeral) await rm(this.root, { recursive: true, force: true });
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (e) {
    if (isNotFound(e)) return [];
    throw storageError('list', e);
  }
}

