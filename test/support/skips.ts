// When a test may skip for a missing tool or privilege. Outside CI (a developer's laptop without podman, or
// not root) it skips with the reason. Under CI=true it never skips: the test runs and fails on what is missing,
// because a green CI that skipped is not a green CI. The only exceptions are listed here, each with its reason.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';

/** Requirements CI may lack without failing, and why. */
export const CI_ALLOWED_SKIPS: Record<string, string> = {
  hadolint: 'no Debian, npm or PyPI package; scripts/test.sh cannot install it (the Dockerfile is linted where a developer has it)',
};

const inCi = (): boolean => process.env.CI === 'true' || process.env.CI === '1';

/**
 * The `skip` option of a test or suite: false when `available`; otherwise the reason, outside CI or when the
 * requirement is allow-listed; under CI otherwise false, so that the test runs and fails.
 */
export function skipUnless(available: boolean, requirement: string, reason: string): string | false {
  if (available) return false;
  if (!inCi() || requirement in CI_ALLOWED_SKIPS) return `${reason}${requirement in CI_ALLOWED_SKIPS ? ` (allowed: ${CI_ALLOWED_SKIPS[requirement]})` : ''}`;
  return false;
}

/** Inside a running test: skip outside CI, fail under CI (unless allow-listed). */
export function skipOrFail(t: TestContext, requirement: string, reason: string): void {
  if (inCi() && !(requirement in CI_ALLOWED_SKIPS)) assert.fail(`${reason} (CI=true: a missing ${requirement} fails, it does not skip)`);
  t.skip(reason);
}
