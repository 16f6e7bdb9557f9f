import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, rm, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { RegistryError } from '../errors.js';

/** Spool file names start with the writer's pid, so cleanup can tell leftovers of dead processes apart. */
function spoolName(): string {
  return `${process.pid}-${randomUUID()}`;
}

function ownerPid(name: string): number | undefined {
  const m = /^(\d+)-/.exec(name);
  return m ? Number(m[1]) : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

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
    const file = path.join(this.dir, spoolName());
    let fh: FileHandle;
    try {
      fh = await open(file, 'wx', 0o600);
    } catch (e) {
      throw new RegistryError('STORAGE_ERROR', `cannot create spool file in ${this.dir}: ${(e as Error).message}`, { cause: e });
    }
    this.active.add(file);
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
        this.active.delete(file);
      },
    };
  }

  /** Removes spool files of dead processes, and this process's that no writer holds any more. */
  async cleanup(): Promise<number> {
    let removed = 0;
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      const file = path.join(this.dir, name);
      const pid = ownerPid(name);
      const leftover = pid === undefined || (pid === process.pid ? !this.active.has(file) : !isAlive(pid));
      if (!leftover) continue;
      await rm(file, { force: true, recursive: true });
      removed++;
    }
    return removed;
  }
}
