import type { Readable } from 'node:stream';
import { RegistryError } from '../errors.js';
import type { ByteRange, ObjectDriver, ObjectWriter } from '../seams.js';

/** Storage operations as they are timed and counted (regcache_storage_operation_seconds / _errors_total). */
export type StorageOp = 'stat' | 'get' | 'read' | 'put' | 'writer' | 'write' | 'commit' | 'abort' | 'delete' | 'list' | 'redirect' | 'cleanup';

/** Receives each operation's duration and whether it failed. */
export type StorageObserver = (driver: string, op: StorageOp, seconds: number, failed: boolean) => void;

/**
 * Refuses keys that could address anything outside a driver's root: empty, absolute, with empty, `.` or
 * `..` segments, backslashes or NUL.
 */
function checkKey(key: string): string {
  if (!key || key.includes('\\') || key.includes('\0') || key.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new RegistryError('NAME_INVALID', 'invalid storage key');
  }
  return key;
}

/**
 * The one wrapper around every driver (distribution's base.Base): validates keys before a driver sees them,
 * and times and counts every operation, so that drivers stay narrow and metrics are the same for all.
 */
export function checkedDriver(driver: ObjectDriver, observe: StorageObserver = () => {}): ObjectDriver {
  const kind = driver.kind;
  async function timed<T>(op: StorageOp, fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const v = await fn();
      observe(kind, op, (performance.now() - started) / 1000, false);
      return v;
    } catch (e) {
      observe(kind, op, (performance.now() - started) / 1000, true);
      throw e;
    }
  }
  const checkedWriter = (w: ObjectWriter): ObjectWriter => ({
    localPath: w.localPath,
    write: (chunk) => timed('write', () => w.write(chunk)),
    commit: () => timed('commit', () => w.commit()),
    abort: () => timed('abort', () => w.abort()),
  });
  /** Key refusals are the caller's error, not the storage's: checked before the clock starts. */
  async function onKey<T>(op: StorageOp, key: string, fn: (key: string) => Promise<T>): Promise<T> {
    const k = checkKey(key);
    return timed(op, () => fn(k));
  }
  const localPath = driver.localPath?.bind(driver);
  const redirectUrl = driver.redirectUrl?.bind(driver);
  return {
    kind,
    stat: (key) => onKey('stat', key, (k) => driver.stat(k)),
    get: (key: string, range?: ByteRange): Promise<Readable | null> => onKey('get', key, (k) => driver.get(k, range)),
    read: (key) => onKey('read', key, (k) => driver.read(k)),
    put: (key, data) => onKey('put', key, (k) => driver.put(k, data)),
    writer: (key) => onKey('writer', key, async (k) => checkedWriter(await driver.writer(k))),
    delete: (key) => onKey('delete', key, (k) => driver.delete(k)),
    async *list(prefix) {
      const k = checkKey(prefix.replace(/\/+$/, ''));
      const started = performance.now();
      let failed = false;
      try {
        yield* driver.list(k);
      } catch (e) {
        failed = true;
        throw e;
      } finally {
        observe(kind, 'list', (performance.now() - started) / 1000, failed);
      }
    },
    localPath: localPath && ((key) => localPath(checkKey(key))),
    redirectUrl: redirectUrl && ((key) => onKey('redirect', key, redirectUrl)),
    cleanup: () => timed('cleanup', () => driver.cleanup()),
    close: () => driver.close(),
  };
}
