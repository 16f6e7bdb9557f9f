import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { pino } from 'pino';
import { HtpasswdAuthenticator } from '../../src/auth/htpasswd.js';
import { FailureThrottle } from '../../src/auth/throttle.js';
import { ConfigError, RegistryError } from '../../src/errors.js';
import { rejectsWith } from '../support/errors.js';
import { waitFor } from '../support/process.js';

const REALM = 'regcache realm';
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

function logCapture(): { logger: pino.Logger; text: () => string } {
  const lines: string[] = [];
  return { logger: pino({ level: 'trace' }, { write: (s: string) => void lines.push(s) }), text: () => lines.join('') };
}

/** Atomic replace by rename, the way editors and config management tools write files. */
function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

async function accepted(auth: HtpasswdAuthenticator, user: string, password: string, from = '10.0.0.1'): Promise<boolean> {
  try {
    return (await auth.authenticate(basic(user, password), from)) === user;
  } catch (e) {
    if (e instanceof RegistryError && e.code === 'UNAUTHORIZED') return false;
    throw e;
  }
}

const entry = (user: string, password: string, cost = 4, variant = '2y'): string =>
  `${user}:${bcrypt.hashSync(password, cost).replace(/^\$2b\$/, `$${variant}$`)}`;

describe('HtpasswdAuthenticator', () => {
  let dir: string;
  const opened: HtpasswdAuthenticator[] = [];
  const open = async (file: string, extra: Partial<Parameters<typeof HtpasswdAuthenticator.open>[0]> = {}) => {
    const a = await HtpasswdAuthenticator.open({ path: file, realm: REALM, logger: pino({ level: 'silent' }), ...extra });
    opened.push(a);
    return a;
  };
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regcache-htpasswd-'));
  });
  after(() => {
    for (const a of opened) a.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('accepts $2y$/$2b$/$2a$ users and rejects everything else with a Basic challenge', async () => {
    const file = path.join(dir, 'basic');
    fs.writeFileSync(
      file,
      ['# comment', entry('alice', 's3cret', 4, '2y'), '', entry('bob', 'pw:with:colons', 4, '2b'), entry('carol', 'c', 4, '2a')].join('\n') + '\n',
    );
    const auth = await open(file);
    assert.equal(auth.size, 3);
    assert.equal(await auth.authenticate(basic('alice', 's3cret'), '10.0.0.1'), 'alice');
    assert.equal(await auth.authenticate(basic('bob', 'pw:with:colons'), '10.0.0.1'), 'bob');
    assert.equal(await auth.authenticate(`bAsIc  ${Buffer.from('carol:c').toString('base64')}`, '10.0.0.1'), 'carol');

    for (const header of [undefined, '', basic('alice', 'wrong'), basic('alice', ''), basic('mallory', 's3cret'), 'Bearer abc', 'Basic !!!', `Basic ${Buffer.from('alice').toString('base64')}`]) {
      const e = await rejectsWith(auth.authenticate(header, '10.0.0.2'));
      assert.equal(e.code, 'UNAUTHORIZED', String(header));
      assert.equal(e.status, 401);
      assert.equal(e.headers['WWW-Authenticate'], `Basic realm="${REALM}"`);
    }
  });

  test('open() refuses a file with a non-bcrypt entry, naming the user, and a missing file', async () => {
    const file = path.join(dir, 'md5');
    fs.writeFileSync(file, `${entry('alice', 'x')}\nbob:$apr1$Cx4Ju6wc$e4W1z5aQe1ZOj0mOZ8vQ61\ncarol:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n`);
    await assert.rejects(open(file), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /user "bob".*bcrypt/);
      assert.match(e.message, /user "carol".*bcrypt/);
      assert.doesNotMatch(e.message, /apr1|SHA\}/, 'hashes are not echoed');
      return true;
    });
    await assert.rejects(open(path.join(dir, 'absent')), (e: unknown) => e instanceof ConfigError && /cannot read .*absent.*ENOENT/.test(e.message));
  });

  test('a pull of many requests costs one bcrypt run, and the cache never accepts a wrong password', async () => {
    const file = path.join(dir, 'cost10');
    fs.writeFileSync(file, `${entry('alice', 'pw', 10)}\n`);
    const auth = await open(file);
    assert.equal(await auth.authenticate(basic('alice', 'pw'), '10.0.0.1'), 'alice');
    assert.equal(auth.bcryptRuns, 1);
    for (let i = 0; i < 20; i++) assert.equal(await auth.authenticate(basic('alice', 'pw'), '10.0.0.1'), 'alice');
    assert.equal(auth.bcryptRuns, 1, '20 cached checks ran no bcrypt');
    assert.equal(await accepted(auth, 'alice', 'pW'), false);
    assert.equal(auth.bcryptRuns, 2, 'a wrong password is checked, never answered from the cache');

    // Cold cache, 20 requests at once: they share one bcrypt run.
    const cold = await open(file);
    const users = await Promise.all(Array.from({ length: 20 }, () => cold.authenticate(basic('alice', 'pw'), '10.0.0.1')));
    assert.deepEqual(new Set(users), new Set(['alice']));
    assert.equal(cold.bcryptRuns, 1, '20 parallel cold checks share one bcrypt run');
  });

  test('file changes are picked up (atomic replace); a broken file keeps the previous users', async () => {
    const file = path.join(dir, 'reload');
    fs.writeFileSync(file, `${entry('alice', 'old')}\n`);
    const { logger, text } = logCapture();
    const auth = await open(file, { logger, watch: { debounceMs: 20, pollMs: 60_000 }, throttle: { burst: 10_000 } });
    assert.equal(await accepted(auth, 'alice', 'old'), true); // now cached

    writeAtomic(file, `${entry('alice', 'new')}\n${entry('bob', 'b')}\n`);
    await waitFor(() => accepted(auth, 'alice', 'new'), { what: 'the new password', intervalMs: 20 });
    assert.equal(await accepted(auth, 'alice', 'old'), false, 'the cached old password is forgotten');
    assert.equal(await accepted(auth, 'bob', 'b'), true);

    writeAtomic(file, `${entry('alice', 'newer')}\nbob:plaintext\n`);
    await waitFor(async () => text().includes('htpasswd reload failed'), { what: 'the reload error to be logged', intervalMs: 20 });
    assert.match(text(), /user \\"bob\\"/);
    assert.equal(await accepted(auth, 'alice', 'new'), true, 'previous users stay');
    assert.equal(await accepted(auth, 'alice', 'newer'), false);

    fs.rmSync(file);
    writeAtomic(file, `${entry('carol', 'c')}\n`);
    await waitFor(() => accepted(auth, 'carol', 'c'), { what: 'carol', intervalMs: 20 });
    assert.equal(await accepted(auth, 'alice', 'new'), false, 'removed users are refused');
  });

  test('without watcher events, authenticate re-checks the file (at most once a second)', async () => {
    const file = path.join(dir, 'lazy');
    fs.writeFileSync(file, `${entry('alice', 'old')}\n`);
    const auth = await open(file, { watch: { debounceMs: 3_600_000, pollMs: 3_600_000 }, throttle: { burst: 10_000 } });
    assert.equal(await accepted(auth, 'alice', 'old'), true);
    writeAtomic(file, `${entry('alice', 'new')}\n`);
    await waitFor(() => accepted(auth, 'alice', 'new'), { what: 'the lazily re-read password', timeoutMs: 5_000, intervalMs: 20 });
  });

  test('repeated failures from one address are throttled without bcrypt; other addresses are not', async () => {
    const file = path.join(dir, 'throttle');
    fs.writeFileSync(file, `${entry('alice', 'pw', 10)}\n`);
    // perSecond so low that nothing refills during the test (refill timing: FailureThrottle test below)
    const auth = await open(file, { throttle: { burst: 3, perSecond: 0.01 } });
    for (let i = 0; i < 3; i++) assert.equal((await rejectsWith(auth.authenticate(basic('alice', `guess${i}`), '192.0.2.66'))).code, 'UNAUTHORIZED');

    const runs = auth.bcryptRuns;
    const e = await rejectsWith(auth.authenticate(basic('alice', 'pw'), '192.0.2.66'));
    assert.equal(e.code, 'TOOMANYREQUESTS');
    assert.equal(e.status, 429);
    assert.ok(Number(e.headers['Retry-After']) >= 90, `Retry-After ${e.headers['Retry-After']}`);
    assert.equal(auth.bcryptRuns, runs, 'the throttled answer ran no bcrypt');

    assert.equal(await auth.authenticate(basic('alice', 'pw'), '192.0.2.7'), 'alice', 'other addresses are unaffected');
  });

  test('passwords and Authorization headers are never logged', async () => {
    const file = path.join(dir, 'logs');
    fs.writeFileSync(file, `${entry('alice', 'TopSecretPw')}\n`);
    const { logger, text } = logCapture();
    const auth = await open(file, { logger, throttle: { burst: 2 } });
    await auth.authenticate(basic('alice', 'TopSecretPw'), '10.0.0.1');
    for (let i = 0; i < 4; i++) await auth.authenticate(basic('alice', `WrongGuess${i}`), '10.0.0.9').catch(() => {});
    assert.match(text(), /authentication failed/);
    assert.match(text(), /throttled/);
    assert.doesNotMatch(text(), /TopSecretPw|WrongGuess/);
    assert.ok(!text().includes(Buffer.from('alice:TopSecretPw').toString('base64').slice(0, 12)));
  });
});

describe('FailureThrottle', () => {
  test('refills over time and keeps at most maxEntries addresses', () => {
    let now = 0;
    const th = new FailureThrottle({ burst: 2, perSecond: 1, maxEntries: 100 }, () => now);
    th.fail('a');
    assert.equal(th.retryAfterSeconds('a'), 0);
    assert.equal(th.fail('a'), true);
    assert.equal(th.retryAfterSeconds('a'), 1);
    now += 500;
    assert.equal(th.retryAfterSeconds('a'), 1);
    now += 500;
    assert.equal(th.retryAfterSeconds('a'), 0);

    for (let i = 0; i < 1000; i++) th.fail(`addr${i}`);
    assert.ok(th.size <= 100, `size ${th.size}`);
    th.fail('addr999');
    assert.equal(th.retryAfterSeconds('addr999'), 1, 'the most recent failures are kept');
  });
});
