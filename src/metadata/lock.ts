import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';

export const LOCK_FILE = 'lock';

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid of the live process holding the metadata lock in `dir`, if any (a stale lock from a killed process does not count). */
export async function lockHolder(dir: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(dir, LOCK_FILE), 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
}

export interface MetadataLock {
  release(): Promise<void>;
}

/**
 * One writer per metadata directory: the server holds this lock while it runs, and `regcache cache` commands
 * take it to work on the storage directly (or go through the server's admin API when it is held).
 * A lock left by a killed process is taken over. Returns the holder's pid when another live process holds it.
 */
export async function acquireLock(dir: string): Promise<MetadataLock | { heldBy: number }> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(file, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      let released = false;
      return {
        async release() {
          if (released) return;
          released = true;
          const text = await readFile(file, 'utf8').catch(() => '');
          if (text.trim() === String(process.pid)) await unlink(file).catch(() => {});
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const text = await readFile(file, 'utf8').catch(() => '');
    const pid = Number(text.trim());
    // Our own pid in the file: a previous process of ours in the same pid namespace (container restart) or
    // another instance in this process (tests); either way not someone else's lock.
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) return { heldBy: pid };
    await unlink(file).catch(() => {});
  }
  return { heldBy: -1 };
}
