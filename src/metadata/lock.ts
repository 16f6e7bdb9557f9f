import { randomUUID } from 'node:crypto';
import { link, mkdir, readFile, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isAlive, OWNER, sameNamespace } from '../util/owner.js';

export const LOCK_FILE = 'lock';
/** The holder touches its lock file this often, so that processes that cannot check its pid see it alive. */
export const LOCK_REFRESH_MS = 5_000;
/** A lock whose holder we cannot check by pid, untouched for this long, belongs to a process that is gone. */
export const LOCK_STALE_MS = 30_000;

/** Who holds a lock: its pid (in its own pid namespace) and its owner tag (see src/util/owner.ts). */
export interface LockHolder {
  pid: number;
  owner: string;
}

export interface MetadataLock {
  release(): Promise<void>;
}

interface Observed extends LockHolder {
  ino: number;
  mtimeMs: number;
}

/**
 * Reads the lock file. Its content is `{"owner":"<boot>.<pidns>.<pid>","pid":N}`; a bare pid (written by
 * earlier versions) counts as a process of our namespace.
 */
async function observe(file: string): Promise<Observed | undefined> {
  try {
    const [text, st] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      v = undefined;
    }
    const holder: LockHolder =
      typeof v === 'object' && v !== null
        ? { pid: Number((v as Partial<LockHolder>).pid), owner: String((v as Partial<LockHolder>).owner ?? '') }
        : { pid: Number(text.trim()), owner: `${OWNER.slice(0, OWNER.lastIndexOf('.'))}.${text.trim()}` };
    return { ...holder, ino: st.ino, mtimeMs: st.mtimeMs };
  } catch {
    return undefined;
  }
}

/**
 * Whether a lock's holder is alive. In our pid namespace the pid says so at once (a pid equal to ours is a
 * previous incarnation of this container, or another instance inside this process: not someone else).
 * Elsewhere — two containers on one volume are both pid 1 — a pid means nothing: the holder refreshes the
 * file's mtime every LOCK_REFRESH_MS, and a lock untouched for LOCK_STALE_MS is stale.
 */
function holderAlive(h: Observed, now = Date.now()): boolean {
  if (sameNamespace(h.owner)) return Number.isSafeInteger(h.pid) && h.pid > 0 && h.pid !== process.pid && isAlive(h.pid);
  return now - h.mtimeMs < LOCK_STALE_MS;
}

/** The live process holding the metadata lock in `dir`, if any (a stale lock does not count). */
export async function lockHolder(dir: string): Promise<LockHolder | undefined> {
  const h = await observe(path.join(dir, LOCK_FILE));
  return h && holderAlive(h) ? { pid: h.pid, owner: h.owner } : undefined;
}

/**
 * One writer per metadata directory: the server holds this lock while it runs, and `regcache cache` commands
 * take it to work on the storage directly (or go through the server's admin API when it is held).
 *
 * The lock file is created whole: its content is written to a temp file that is then hard-linked to `lock`,
 * which fails if it exists — so there is no moment when the lock exists but is empty, and exactly one of
 * several racing processes gets it. A stale lock is moved aside by rename and checked to be the one judged
 * stale (same inode); if a racing process replaced it meanwhile, it is linked back. Returns the holder when
 * another live process holds it.
 */
export async function acquireLock(dir: string): Promise<MetadataLock | { heldBy: LockHolder }> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  const temp = path.join(dir, `${LOCK_FILE}.${randomUUID()}`);
  await writeFile(temp, JSON.stringify({ owner: OWNER, pid: process.pid }));
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await link(temp, file);
        return holdLock(file, (await stat(file)).ino);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const held = await observe(file);
      if (!held) continue; // released meanwhile
      if (holderAlive(held)) return { heldBy: { pid: held.pid, owner: held.owner } };
      await moveAsideIfSame(file, held.ino);
    }
    const held = await observe(file);
    return { heldBy: { pid: held?.pid ?? -1, owner: held?.owner ?? 'unknown' } };
  } finally {
    await unlink(temp).catch(() => {});
  }
}

async function moveAsideIfSame(file: string, ino: number): Promise<void> {
  const aside = `${file}.stale-${randomUUID()}`;
  try {
    await rename(file, aside);
  } catch {
    return; // gone already
  }
  if ((await stat(aside).catch(() => undefined))?.ino !== ino) {
    // A racing process took the lock between our look and the rename: give it back.
    await link(aside, file).catch(() => {});
  }
  await unlink(aside).catch(() => {});
}

function holdLock(file: string, ino: number): MetadataLock {
  const touch = setInterval(() => {
    const now = new Date();
    void utimes(file, now, now).catch(() => {});
  }, LOCK_REFRESH_MS);
  touch.unref();
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      clearInterval(touch);
      if ((await stat(file).catch(() => undefined))?.ino === ino) await unlink(file).catch(() => {});
    },
  };
}
