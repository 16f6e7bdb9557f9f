import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { CredentialHelper, helperProgram } from '../../src/upstream/credhelper.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

describe('docker credential helper', () => {
  let dir: string;
  let script: string;
  const logger = pino({ level: 'silent' });

  before(async () => {
    dir = await makeTempDir('credhelper-');
    script = join(dir, 'docker-credential-fake');
    // Records each call's stdin and returns a counter-stamped secret, like a helper minting tokens.
    await writeFile(
      script,
      `#!/bin/sh
[ "$1" = get ] || exit 3
read -r server
echo "$server" >> "${dir}/calls"
n=$(wc -l < "${dir}/calls")
printf '{"ServerURL":"%s","Username":"AWS","Secret":"token-%s"}' "$server" "$n"
`,
    );
    await chmod(script, 0o755);
  });
  after(async () => removeDir(dir));

  it('maps docker credHelpers names to programs', () => {
    assert.equal(helperProgram('ecr-login'), 'docker-credential-ecr-login');
    assert.equal(helperProgram('docker-credential-gcr'), 'docker-credential-gcr');
    assert.equal(helperProgram('/opt/bin/helper'), '/opt/bin/helper');
  });

  it('runs the helper with the server on stdin, caches, refreshes after the period and on invalidate', async () => {
    let clock = 1_000_000;
    const h = new CredentialHelper(script, '123.dkr.ecr.eu-west-1.amazonaws.com', logger, 60_000, () => clock);
    const [a, b] = await Promise.all([h.get(), h.get()]);
    assert.deepEqual(a, { username: 'AWS', password: 'token-1' });
    assert.deepEqual(b, a, 'concurrent callers share one helper run');
    assert.deepEqual(await h.get(), a);
    clock += 61_000;
    assert.equal((await h.get()).password, 'token-2');
    h.invalidate();
    assert.equal((await h.get()).password, 'token-3');
    const calls = (await readFile(join(dir, 'calls'), 'utf8')).trim().split('\n');
    assert.deepEqual(calls, Array(3).fill('123.dkr.ecr.eu-west-1.amazonaws.com'));
  });

  it('a missing or failing helper is an UNAUTHORIZED error naming the program only', async () => {
    const missing = new CredentialHelper(join(dir, 'nope'), 'x', logger);
    await assert.rejects(missing.get(), (e: Error & { code?: string }) => e.code === 'UNAUTHORIZED' && /not found/.test(e.message));
    const bad = join(dir, 'bad');
    await writeFile(bad, '#!/bin/sh\necho "secret-leak" >&2; exit 1\n');
    await chmod(bad, 0o755);
    await assert.rejects(new CredentialHelper(bad, 'x', logger).get(), (e: Error) => !e.message.includes('secret-leak'));
  });
});
