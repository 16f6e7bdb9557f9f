import os from 'node:os';
import path from 'node:path';
import type { StorageConfig } from '../config/types.js';
import type { ObjectDriver } from '../seams.js';
import { BlobStore } from './blobstore.js';
import { checkedDriver, type StorageObserver } from './checked.js';
import { Spool } from './spool.js';

export { BlobStore, type BlobWriter } from './blobstore.js';

export interface OpenStorageOptions {
  /** storage.redirect (s3): blob GETs may be answered with a presigned URL. */
  redirect?: boolean;
  /** Per-operation timings and errors (metrics). */
  observe?: StorageObserver;
  /** Where blobs of drivers without local files are spooled while they download (default: <tmpdir>/regcache-spool). */
  spoolDir?: string;
}

type DriverFactory = (cfg: StorageConfig, opts: OpenStorageOptions) => Promise<ObjectDriver>;

/**
 * The storage drivers by config name. A new driver adds one line here. Drivers that pull in large SDKs are
 * loaded on demand: the AWS SDK costs tens of MB of memory that filesystem users should not pay.
 */
const DRIVERS: Record<StorageConfig['driver'], DriverFactory> = {
  filesystem: async (cfg) => {
    const { FilesystemDriver } = await import('./filesystem.js');
    return FilesystemDriver.open((cfg as Extract<StorageConfig, { driver: 'filesystem' }>).rootdirectory);
  },
  inmemory: async () => new (await import('./inmemory.js')).InMemoryDriver(),
  s3: async (cfg, opts) => {
    const { S3Driver } = await import('./s3/driver.js');
    return S3Driver.open(cfg as Extract<StorageConfig, { driver: 's3' }>, { redirect: opts.redirect });
  },
};

/** Opens the configured driver, wrapped once for key checks and metrics, under the blob store. */
export async function openStorage(cfg: StorageConfig, opts: OpenStorageOptions = {}): Promise<BlobStore> {
  const driver = checkedDriver(await DRIVERS[cfg.driver](cfg, opts), opts.observe);
  const spool = driver.localPath ? undefined : await Spool.open(opts.spoolDir ?? path.join(os.tmpdir(), 'regcache-spool'));
  return new BlobStore(driver, spool);
}
