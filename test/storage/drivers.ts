// One harness per storage driver, so the conformance suites run the same assertions against each: the object
// driver itself (through the one checking wrapper every driver gets), and the blob store over it.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ObjectDriver } from '../../src/seams.js';
import { BlobStore } from '../../src/storage/blobstore.js';
import { checkedDriver } from '../../src/storage/checked.js';
import { FilesystemDriver } from '../../src/storage/filesystem.js';
import { InMemoryDriver } from '../../src/storage/inmemory.js';
import { S3Driver, type S3StorageConfig } from '../../src/storage/s3/driver.js';
import { Spool } from '../../src/storage/spool.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import type { RunningS3 } from './s3server.js';
import { S3_IMPLEMENTATIONS } from './s3impls.js';

/** S3 part size used by the tests: the S3 minimum, so a few MiB cross part boundaries. */
export const TEST_PART_SIZE = 5 * 1024 * 1024;

export interface DriverHarness {
  name: string;
  /** The driver as the blob store sees it: wrapped once for key checks and metrics. */
  driver: ObjectDriver;
  store: BlobStore;
  /** A fresh blob store over the same storage, as after a restart (a crashed process's writers abandoned). */
  reopen(): Promise<BlobStore>;
  /** Interrupted-write leftovers that are not visible as objects: temp files, spool files, incomplete multipart uploads. */
  leftovers(): Promise<number>;
  /**
   * False for S3 servers without AbortMultipartUpload / ListMultipartUploads (s3rver): an aborted or abandoned
   * multipart upload stays on the server, invisible, and cleanup() reports a warning instead of removing it.
   */
  removesUploads: boolean;
  /** The leftovers this process can remove on any server: local temp and spool files. */
  localLeftovers(): Promise<number>;
  /** Every stored thing outside the driver's root (must stay empty). */
  outsideRoot(): Promise<string[]>;
  stop(): Promise<void>;
}

export async function filesystemHarness(): Promise<DriverHarness> {
  const dir = await makeTempDir('conformance-fs-');
  const root = join(dir, 'root');
  const driver = checkedDriver(await FilesystemDriver.open(root));
  return {
    name: 'filesystem',
    driver,
    store: new BlobStore(driver),
    reopen: async () => new BlobStore(checkedDriver(await FilesystemDriver.open(root))),
    leftovers: async () => (await readdir(join(root, '_uploads'))).length,
    removesUploads: true,
    localLeftovers: async () => (await readdir(join(root, '_uploads'))).length,
    outsideRoot: async () => (await readdir(dir)).filter((n) => n !== 'root'),
    stop: () => removeDir(dir),
  };
}

export async function inmemoryHarness(): Promise<DriverHarness> {
  const spoolDir = await makeTempDir('conformance-inmemory-spool-');
  const driver = checkedDriver(new InMemoryDriver());
  return {
    name: 'inmemory',
    driver,
    store: new BlobStore(driver, await Spool.open(spoolDir)),
    // The process's memory survives this "restart"; what the crashed writer left is its spool file.
    reopen: async () => new BlobStore(driver, await Spool.open(spoolDir)),
    leftovers: async () => (await readdir(spoolDir)).length,
    removesUploads: true,
    localLeftovers: async () => (await readdir(spoolDir)).length,
    outsideRoot: async () => [],
    async stop() {
      await driver.close();
      await removeDir(spoolDir);
    },
  };
}

export function s3Config(s3: RunningS3, rootdirectory: string): S3StorageConfig {
  return {
    driver: 's3',
    region: 'us-east-1',
    bucket: s3.bucket,
    regionendpoint: s3.endpoint,
    accesskey: s3.accessKey,
    secretkey: s3.secretKey,
    rootdirectory,
    forcepathstyle: true,
    encrypt: false,
    chunksize: TEST_PART_SIZE,
  };
}

/** The s3 driver over a server the harness starts and stops. */
export async function s3Harness(start: () => Promise<RunningS3>, name: string, removesUploads = true): Promise<DriverHarness> {
  const server = await start();
  const spoolDir = await makeTempDir('conformance-s3-spool-');
  const cfg = s3Config(server, '/conformance/root');
  const raw = await S3Driver.open(cfg, { redirect: true });
  const driver = checkedDriver(raw);
  const extra: ObjectDriver[] = [];
  return {
    name,
    driver,
    store: new BlobStore(driver, await Spool.open(spoolDir)),
    async reopen() {
      // staleUploadMs 0: every incomplete upload counts as abandoned (the test cannot wait an hour).
      const d = checkedDriver(await S3Driver.open(cfg, { staleUploadMs: 0 }));
      extra.push(d);
      return new BlobStore(d, await Spool.open(spoolDir));
    },
    leftovers: async () => (await server.uploads()).length + (await readdir(spoolDir)).length,
    removesUploads,
    localLeftovers: async () => (await readdir(spoolDir)).length,
    outsideRoot: async () =>
      [...(await server.objects()).keys(), ...(await server.uploads())].filter((k) => !k.startsWith('conformance/root/')),
    async stop() {
      for (const d of [driver, ...extra]) await d.close();
      await removeDir(spoolDir);
      await server.stop();
    },
  };
}

export const HARNESSES: Array<[string, () => Promise<DriverHarness>]> = [
  ['inmemory', inmemoryHarness],
  ['filesystem', filesystemHarness],
  // s3rver as users get it (no AbortMultipartUpload, no ListMultipartUploads) and moto.
  ...S3_IMPLEMENTATIONS.map((impl): [string, () => Promise<DriverHarness>] => [`s3 (${impl.name})`, () => s3Harness(impl.start, `s3 (${impl.name})`, impl.removesUploads)]),
];

/** Nothing an aborted or failed write left: on servers that cannot remove uploads, nothing this process holds. */
export async function leftoversAfterAbort(h: DriverHarness): Promise<number> {
  return h.removesUploads ? h.leftovers() : h.localLeftovers();
}
