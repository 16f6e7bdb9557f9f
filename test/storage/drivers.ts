// One harness per storage driver, so the conformance suite runs the same assertions against each.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { FilesystemStorage } from '../../src/storage/filesystem.js';
import { openStorage } from '../../src/storage/index.js';
import { S3Storage, type S3StorageConfig } from '../../src/storage/s3.js';
import type { StorageDriver } from '../../src/storage/types.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { startS3, S3RVER_KEY, S3RVER_SECRET, type RunningS3 } from './s3server.js';

/** S3 part size used by the tests: the S3 minimum, so a few MiB cross part boundaries. */
export const TEST_PART_SIZE = 5 * 1024 * 1024;

export interface DriverHarness {
  name: string;
  driver: StorageDriver;
  /** A fresh driver over the same storage, as after a restart (a crashed process's writers abandoned). */
  reopen(): Promise<StorageDriver>;
  /** Interrupted-write leftovers that are not visible as objects: temp files, incomplete multipart uploads. */
  leftovers(): Promise<number>;
  /** Every stored thing outside the driver's root (must stay empty). */
  outsideRoot(): Promise<string[]>;
  stop(): Promise<void>;
}

export async function filesystemHarness(): Promise<DriverHarness> {
  const dir = await makeTempDir('conformance-fs-');
  const root = join(dir, 'root');
  const driver = await FilesystemStorage.open(root);
  const extra: StorageDriver[] = [];
  return {
    name: 'filesystem',
    driver,
    async reopen() {
      const d = await FilesystemStorage.open(root);
      extra.push(d);
      return d;
    },
    leftovers: async () => (await readdir(join(root, '_uploads'))).length,
    outsideRoot: async () => (await readdir(dir)).filter((n) => n !== 'root'),
    async stop() {
      for (const d of [driver, ...extra]) await d.close();
      await removeDir(dir);
    },
  };
}

export async function inmemoryHarness(): Promise<DriverHarness> {
  const driver = (await openStorage({ driver: 'inmemory' })) as FilesystemStorage;
  return {
    name: 'inmemory',
    driver,
    reopen: () => FilesystemStorage.open(driver.root),
    leftovers: async () => (await readdir(join(driver.root, '_uploads'))).length,
    outsideRoot: async () => [],
    stop: () => driver.close(),
  };
}

export async function s3Harness(s3?: RunningS3): Promise<DriverHarness> {
  const server = s3 ?? (await startS3());
  const spool = await makeTempDir('conformance-s3-spool-');
  const cfg: S3StorageConfig = {
    driver: 's3',
    region: 'us-east-1',
    bucket: server.bucket,
    regionendpoint: server.endpoint,
    accesskey: S3RVER_KEY,
    secretkey: S3RVER_SECRET,
    rootdirectory: '/conformance/root',
    forcepathstyle: true,
    encrypt: false,
    chunksize: TEST_PART_SIZE,
  };
  const driver = await S3Storage.open(cfg, { spoolDir: spool, redirect: true });
  const extra: StorageDriver[] = [];
  return {
    name: 's3',
    driver,
    async reopen() {
      // staleUploadMs 0: every incomplete upload counts as abandoned (the test cannot wait an hour).
      const d = await S3Storage.open(cfg, { spoolDir: spool, staleUploadMs: 0 });
      extra.push(d);
      return d;
    },
    leftovers: async () => (await server.uploads()).length + (await readdir(spool)).length,
    outsideRoot: async () =>
      [...(await server.objects()).keys(), ...(await server.uploads())].filter((k) => !k.startsWith('conformance/root/')),
    async stop() {
      for (const d of [driver, ...extra]) await d.close();
      await removeDir(spool);
      if (!s3) await server.stop();
    },
  };
}
