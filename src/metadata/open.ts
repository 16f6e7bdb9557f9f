import path from 'node:path';
import type { Logger } from 'pino';
import type { StorageConfig } from '../config/types.js';
import { MetadataIndex } from './index.js';
import { acquireLock, type LockHolder, type MetadataLock } from './lock.js';

/** Where the embedded index lives: `<rootdirectory>/_metadata` for filesystem storage; other drivers keep it in memory. */
export function metadataDir(storage: StorageConfig): string | undefined {
  return storage.driver === 'filesystem' ? path.join(path.resolve(storage.rootdirectory), '_metadata') : undefined;
}

export interface OpenedMetadata {
  index: MetadataIndex;
  /** This process owns the index (journal + lifecycle). False: another live process does; ours is memory-only. */
  owner: boolean;
  /** The owner when it is another process. */
  heldBy?: LockHolder;
  close(): Promise<void>;
}

/** Opens the index as its single writer, or memory-only when another process (a running server) holds the lock. */
export async function openMetadata(
  dir: string | undefined,
  logger?: Logger,
  opts: { flushIntervalMs?: number; /** Never takes the lock: another process of this server owns the index. */ serveOnly?: boolean } = {},
): Promise<OpenedMetadata> {
  if (!dir) {
    const index = await MetadataIndex.open({ logger });
    return { index, owner: true, close: () => index.close() };
  }
  if (opts.serveOnly) return openShared(undefined, logger);
  const lock = await acquireLock(dir);
  return 'heldBy' in lock ? openShared(lock.heldBy, logger) : openOwned(dir, lock, logger, opts);
}

/** The index of a process that only serves: in memory, rebuilt from storage by the caller. */
async function openShared(heldBy: LockHolder | undefined, logger?: Logger): Promise<OpenedMetadata> {
  const index = await MetadataIndex.open({ logger });
  return { index, owner: false, heldBy, close: () => index.close() };
}

/**
 * For a process that only serves: takes the lock over once its holder is gone (a crashed server in another
 * container is only known to be gone when its lock goes stale). Resolves with the owned index, or undefined
 * while the lock is held.
 */
export async function tryTakeOver(dir: string, logger?: Logger, opts: { flushIntervalMs?: number } = {}): Promise<OpenedMetadata | undefined> {
  const lock = await acquireLock(dir);
  if ('heldBy' in lock) return undefined;
  return openOwned(dir, lock, logger, opts);
}

async function openOwned(dir: string, lock: MetadataLock, logger?: Logger, opts: { flushIntervalMs?: number } = {}): Promise<OpenedMetadata> {
  let index: MetadataIndex;
  try {
    index = await MetadataIndex.open({ dir, logger, flushIntervalMs: opts.flushIntervalMs });
  } catch (e) {
    await lock.release();
    throw e;
  }
  return { index, owner: true, close: () => closeBoth(index, lock) };
}

async function closeBoth(index: MetadataIndex, lock: MetadataLock): Promise<void> {
  try {
    await index.close();
  } finally {
    await lock.release();
  }
}
