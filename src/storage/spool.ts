import { mkdir, open, readdir, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { RegistryError } from '../errors.js';
import { isLeftover, ownedName } from '../util/owner.js';

/** A spool file of another namespace untouched this long is a leftover (see owner.ts). */
const STALE_SPOOL_MS = 10 * 60 * 1000;

/** A local copy of a blob while its driver writes it elsewhere: what concurrent readers follow as it grows. */
export interface SpoolFile {
  readonly path: string;
  write(chunk: Uint8Array): Promise<void>;
  /** Closes and unlinks it; readers that opened it keep reading through their own fd. */
  release(): Promise<void>;
}

/** The spool directory (default `<tmpdir>/regcache-spool`), shared by every process of the machine. */
export class Spool {
  private readonly active = new Set<string>();

  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<Spool> {
    const abs = path.resolve(dir);
    try {
      await mkdir(abs, { recursive: true });
    } catch (e) {
      throw new RegistryError('STORAGE_ERROR', `cannot create spool directory ${abs}: ${(e as Error).message}`, { cause: e });
    }
    return new Spool(abs);
  }

  async create(): Promise<SpoolFile> {
    const name = ownedName();
    const file = path.join(this.dir, name);
    let fh: FileHandle;
    try {
      fh = await open(file, 'wx', 0o600);
    } catch (e) {
      throw new RegistryError('STORAGE_ERROR', `cannot create spool file in ${this.dir}: ${(e as Error).message}`, { cause: e });
    }
    this.active.add(name);
    let written = 0;
    let released = false;
    return {
      path: file,
      write: async (chunk) => {
        let off = 0;
        while (off < chunk.length) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.length - off, written + off);
          off += bytesWritten;
        }
        written += chunk.length;
      },
      release: async () => {
        if (released) return;
        released = true;
        await fh.close().catch(() => {});
        await unlink(file).catch(() => {});
        this.active.delete(name);
      },
    };
  }

  /** Removes spool files whose writer is gone (see owner.ts); those of live writers elsewhere stay. */
  async cleanup(): Promise<number> {
    let removed = 0;
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      const file = path.join(this.dir, name);
      const mtime = (await stat(file).catch(() => undefined))?.mtimeMs ?? 0;
      if (!isLeftover(name, mtime, { active: this.active, staleMs: STALE_SPOOL_MS })) continue;
      await rm(file, { force: true, recursive: true });
      removed++;
    }
    return removed;
  }
}
