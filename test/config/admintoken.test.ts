// regcache.admin.tokenfile: the admin API's credential file. Unreadable or empty stops the start (exit 2, key path);
// a short token is warned about; the token itself never appears in a message.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isLoopbackAddr, isLoopbackHost } from '../../src/config/admintoken.js';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { freePort, runCli } from '../support/regcache.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const KEY = 'regcache.admin.tokenfile';

async function problemsOf(p: Promise<unknown>): Promise<Array<{ path: string; message: string }>> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    return e.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('regcache.admin.tokenfile', () => {
  let work: string;
  const configWith = async (name: string, tokenfile: string): Promise<string> => {
    const file = join(work, `${name}.yml`);
    const port = await freePort();
    await writeFile(
      file,
      [
        'version: 0.1',
        `storage: { filesystem: { rootdirectory: ${join(work, `data-${name}`)} } }`,
        `http: { addr: 127.0.0.1:${port}, debug: { addr: 127.0.0.1:${await freePort()} } }`,
        `regcache: { admin: { tokenfile: ${JSON.stringify(tokenfile)} } }`,
      ].join('\n'),
    );
    return file;
  };

  before(async () => {
    work = await makeTempDir('admintoken-');
    await writeFile(join(work, 'empty'), '  \n\t\n');
    await writeFile(join(work, 'short'), 'short-secret\n');
    await writeFile(join(work, 'good'), `${'a1b2c3d4'.repeat(8)}\n`);
    await mkdir(join(work, 'adir'));
  });
  after(async () => {
    if (work) await removeDir(work);
  });

  it('a missing, unreadable or empty token file is a problem of regcache.admin.tokenfile', async () => {
    for (const name of ['missing', 'adir', 'empty']) {
      const problems = await problemsOf(loadConfig({ file: await configWith(name, join(work, name)), env: {} }));
      assert.equal(problems.length, 1, JSON.stringify(problems));
      assert.equal(problems[0]!.path, KEY, name);
      assert.match(problems[0]!.message, name === 'empty' ? /is empty/ : name === 'adir' ? /EISDIR/ : /ENOENT/, name);
    }
    const blank = (() => {
      try {
        parseConfig('regcache: { admin: { tokenfile: "" } }', {});
      } catch (e) {
        return (e as ConfigError).problems;
      }
      return [];
    })();
    assert.deepEqual(blank.map((p) => p.path), [KEY]);
  });

  it('a short token loads with a warning that names the key, never the token; paths resolve against the cwd', async () => {
    const { config, warnings } = await loadConfig({ file: await configWith('short', join(work, 'short')), env: {} });
    assert.equal(config.regcache.admin?.tokenfile, join(work, 'short'));
    const w = warnings.find((x) => x.includes(KEY));
    assert.ok(w, `warning about the short token: ${JSON.stringify(warnings)}`);
    assert.match(w, /shorter than 16 characters/);
    assert.ok(!warnings.join('\n').includes('short-secret'), 'the token is not in any warning');

    const good = await loadConfig({ file: await configWith('good', join(work, 'good')), env: {} });
    assert.deepEqual(good.warnings, []);
    const rel = parseConfig('regcache: { admin: { tokenfile: secrets/token } }', {});
    assert.equal(rel.config.regcache.admin?.tokenfile, resolve('secrets/token'));
    const env = parseConfig(undefined, { REGISTRY_REGCACHE_ADMIN_TOKENFILE: '/run/secrets/regcache-admin' });
    assert.equal(env.config.regcache.admin?.tokenfile, '/run/secrets/regcache-admin');
    assert.equal(parseConfig(undefined, {}).config.regcache.admin, undefined, 'zero-config: no token needed');
  });

  it('serve and config check exit 2 with the key path for an unreadable or empty token file', async () => {
    for (const name of ['missing', 'empty']) {
      const file = await configWith(`cli-${name}`, join(work, name));
      for (const args of [
        ['serve', '--config', file],
        ['config', 'check', '--config', file],
      ]) {
        const r = await runCli(args);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /regcache\.admin\.tokenfile: /);
        assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      }
    }
    const short = await runCli(['config', 'check', '--config', await configWith('cli-short', join(work, 'short'))]);
    assert.equal(short.code, 0, short.stderr);
    assert.match(short.stdout, /warning: key "regcache\.admin\.tokenfile": .*shorter than 16/);
    assert.doesNotMatch(short.stdout + short.stderr, /short-secret/);
  });

  it('loopback listen addresses', () => {
    for (const a of ['127.0.0.1:5001', '127.8.9.10:1', 'localhost:5001', '[::1]:5001', '[0:0:0:0:0:0:0:1]:5001', '[::ffff:127.0.0.1]:1']) {
      assert.equal(isLoopbackAddr(a), true, a);
    }
    for (const a of [':5001', '0.0.0.0:5001', '[::]:5001', '10.0.0.5:5001', 'mirror.example.com:5001', '[::2]:5001', '128.0.0.1:1']) {
      assert.equal(isLoopbackAddr(a), false, a);
    }
    assert.equal(isLoopbackHost(undefined), false);
  });
});
