import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RegistryError } from '../errors.js';
import type { StorageConfig } from '../config/types.js';
import { FilesystemStorage } from './filesystem.js';
import type { StorageDriver } from './types.js';

export type { StorageDriver, BlobWriter, ByteRange } from './types.js';

/**
 * Opens the configured storage driver. `inmemory` is an ephemeral directory removed on close (tests, trials).
 * `redirect` (storage.redirect, s3 only): blob GETs may be answered with a presigned URL.
 */
export async function openStorage(cfg: StorageConfig, opts: { redirect?: boolean } = {}): Promise<StorageDriver> {
  switch (cfg.driver) {
    case 'filesystem':
      return FilesystemStorage.open(cfg.rootdirectory);
    case 'inmemory': {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'regcache-inmemory-'));
      return FilesystemStorage.open(dir, { ephemeral: true });
    }
    case 's3':
      // Loaded on demand: the AWS SDK costs tens of MB of memory that filesystem users should not pay.
      const { S3Storage } = await import('./s3.js');
      return S3Storage.open(cfg, { redirect: opts.redirect });
  }
}
