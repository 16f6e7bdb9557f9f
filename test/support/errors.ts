// Assertions on the errors regcache code rejects with.
import assert from 'node:assert/strict';
import { RegistryError } from '../../src/errors.js';

/**
 * Awaits p, which must reject with a RegistryError (with this code, when one is given); returns the error
 * for further checks.
 */
export async function rejectsWith(p: Promise<unknown>, code?: string): Promise<RegistryError> {
  const err = await p.then(
    () => assert.fail(code === undefined ? 'expected a rejection' : `expected ${code}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof RegistryError, `expected RegistryError, got ${String(err)}`);
  if (code !== undefined) assert.equal(err.code, code, err.message);
  return err;
}
