import { closeSync, fstat, open as openCb } from 'node:fs';
import { promisify } from 'node:util';
import { mkdir, open, readFile, readdir, rename, rm, unlink, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { RegistryError } from '../errors.js';
import type { ByteRange, CleanupReport, ObjectDriver, ObjectWriter } from '../seams.js';
import { FileRangeStream } from './filerange.js';
import { isLeftover, ownedName } from '../util/owner.js';

const UPLOADS = '_uploads';
/**
 * A temp file of a writer in another container or on another host that was not written to for this long is
 * a leftover. Live downloads write continuously, and a stalled one is cut off by the upstream idle timeout
 * long before this.
 */
const STALE_UPLOAD_MS = 10 * 60 * 1000;
const openFd = promisify(openCb);
const fstatFd = promisify(fstat);

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

function isNotFound(e: unknown): boolean {
  return errnoOf(e) === 'ENOENT';
}

function storageError(op: string, e: unknown): RegistryError {
  return new RegistryError('STORAGE_ERROR', `storage ${op} failed (${errnoOf(e) ?? 'unknown'})`, { cause: e });
}

/**
 * Local-filesystem objects under one root directory. Every write goes to `<root>/_uploads/<owner>-<uuid>` first
 * and is renamed into place, so a crash (kill -9) never leaves a partial object under its final name; that temp
 * file is the writer's `localPath`, which concurrent readers follow while it grows. Several processes may share
 * the root (a second server, `regcache cache` commands): cleanup removes only temp files whose writer is gone.
 */
export class FilesystemDriver implements ObjectDriver {
  private readonly uploads: string;
  /** Temp files of this process's writers. */
  private readonly active = new Set<string>();

  constructor(
    readonly root: string,
    readonly kind = 'filesystem',
  ) {
    this.uploads = path.join(root, UPLOADS);
  }

  static async open(root: string, kind?: string): Promise<FilesystemDriver> {
    const abs = path.resolve(root);
    try {
      await mkdir(path.join(abs, UPLOADS), { recursive: true });
    } catch (e) {
      throw storageError(`init of ${abs}`, e);
    }
    return new FilesystemDriver(abs, kind);
  }

  localPath(key: string): string {
    return path.join(this.root, key);
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

  async stat(key: string): Promise<{ size: number } | null> {
    try {
      const s = await stat(this.localPath(key));
      return s.isFile() ? { size: s.size } : null;
    } catch (e) {
      if (isNotFound(e) || errnoOf(e) === 'ENOTDIR') return null;
      throw storageError('stat', e);
    }
  }

  async get(key: string, range?: ByteRange): Promise<FileRangeStream | null> {
    // A raw fd (not a FileHandle, which closes itself on GC), owned by the stream (closed when destroyed).
    let fd: number;
    try {
      fd = await openFd(this.localPath(key), 'r');
    } catch (e) {
      if (isNotFound(e) || errnoOf(e) === 'ENOTDIR') return null;
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

  async read(key: string): Promise<Buffer | null> {
    try {
      return await readFile(this.localPath(key));
    } catch (e) {
      if (isNotFound(e) || errnoOf(e) === 'EISDIR' || errnoOf(e) === 'ENOTDIR') return null;
      throw storageError('read', e);
    }
  }

  async put(key: string, data: Buffer): Promise<void> {
    const final = this.localPath(key);
    const name = ownedName();
    const temp = path.join(this.uploads, name);
    this.active.add(name);
    try {
      // Synced before the rename: a crash never leaves an empty or torn object under its final name.
      await this.inUploads(async () => {
        const fh = await open(temp, 'wx', 0o644);
        try {
          await fh.writeFile(data);
          await fh.datasync();
        } finally {
          await fh.close();
        }
      });
      await mkdir(path.dirname(final), { recursive: true });
      await rename(temp, final);
    } catch (e) {
      await unlink(temp).catch(() => {});
      throw storageError('write', e);
    } finally {
      this.active.delete(name);
    }
  }

  async writer(key: string): Promise<ObjectWriter> {
    const final = this.localPath(key);
    const name = ownedName();
    const temp = path.join(this.uploads, name);
    let fh: FileHandle;
    try {
      fh = await this.inUploads(() => open(temp, 'wx', 0o644));
    } catch (e) {
      throw storageError('create temp file', e);
    }
    this.active.add(name);
    return new FileWriter(fh, temp, final, () => this.active.delete(name));
  }

  async delete(key: string): Promise<void> {
    await rm(this.localPath(key), { force: true });
  }

  async *list(prefix: string): AsyncIterable<{ key: string; size: number }> {
    const walk = async function* (dir: string, rel: string): AsyncIterable<{ key: string; size: number }> {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        if (isNotFound(e) || errnoOf(e) === 'ENOTDIR') return;
        throw storageError('list', e);
      }
      for (const ent of entries) {
        const child = path.join(dir, ent.name);
        if (ent.isDirectory()) yield* walk(child, `${rel}/${ent.name}`);
        else if (ent.isFile()) {
          const s = await stat(child).catch(() => null);
          if (s) yield { key: `${rel}/${ent.name}`, size: s.size };
        }
      }
    };
    yield* walk(this.localPath(prefix), prefix);
  }

  async cleanup(): Promise<CleanupReport> {
    let names: string[];
    try {
      names = await readdir(this.uploads);
    } catch (e) {
      if (isNotFound(e)) return { removed: 0, warnings: [] };
      throw storageError('list', e);
    }
    let removed = 0;
    for (const name of names) {
      const file = path.join(this.uploads, name);
      const mtime = (await stat(file).catch(() => undefined))?.mtimeMs ?? 0;
      if (!isLeftover(name, mtime, { active: this.active, staleMs: STALE_UPLOAD_MS })) continue;
      await rm(file, { force: true, recursive: true });
      removed++;
    }
    return { removed, warnings: [] };
  }

  async close(): Promise<void> {}
}

/** Appends to a temp file with positional writes; commit syncs it and renames it to the object's key. */
class FileWriter implements ObjectWriter {
  private written = 0;
  private done = false;

  constructor(
    private readonly fh: FileHandle,
    readonly localPath: string,
    private readonly final: string,
    private readonly onEnd: () => void,
  ) {}

  async write(chunk: Uint8Array): Promise<void> {
    if (this.done) throw new RegistryError('INTERNAL', 'write after commit/abort');
    let off = 0;
    try {
      while (off < chunk.length) {
        const { bytesWritten } = await this.fh.write(chunk, off, chunk.length - off, this.written + off);
        off += bytesWritten;
      }
    } catch (e) {
      await this.abort();
      throw storageError('write', e);
    }
    this.written += chunk.length;
  }

  async commit(): Promise<void> {
    if (this.done) throw new RegistryError('INTERNAL', 'commit after commit/abort');
    this.done = true;
    try {
      await this.fh.datasync();
      await this.fh.close();
      await mkdir(path.dirname(this.final), { recursive: true });
      await rename(this.localPath, this.final);
      this.onEnd();
    } catch (e) {
      this.done = false;
      await this.abort();
      throw storageError('commit', e);
    }
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.fh.close().catch(() => {});
    await unlink(this.localPath).catch(() => {});
    this.onEnd();
  }
}
