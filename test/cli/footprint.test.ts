// What `regcache serve` loads at start: only what its configuration uses. Parts a mirror without them never runs
// (client auth, TLS files, cache bundles, the admin client, other commands, undici's fetch/WebSocket/mocks) load on use, so they
// cost neither start-up time nor idle memory (docs/benchmarks.md). Counted by module, not timed.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { freePort, startRegcacheProcess } from '../support/regcache.js';
import { waitFor } from '../support/process.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const PRELOAD = new URL('../support/modulelog.mjs', import.meta.url).href;

/** Never loaded by a server without client auth, TLS, S3, Redis or ACME, before any request for them. */
const NOT_AT_START: Array<[string, RegExp]> = [
  ['undici package index (fetch, WebSocket, mocks)', /\/node_modules\/undici\/index\.js$/],
  ['undici fetch', /\/node_modules\/undici\/lib\/web\/fetch\//],
  ['tar-stream (cache bundles)', /\/node_modules\/tar-stream\//],
  ['bcryptjs (client auth)', /\/node_modules\/bcryptjs\//],
  ['cache bundles', /\/src\/lifecycle\/bundle\.ts$/],
  ['admin API client', /\/src\/lifecycle\/adminclient\.ts$/],
  ['client-config generators', /\/src\/clientconfig\//],
  ['config check command', /\/src\/cli\/configcheck\.ts$/],
  ['htpasswd', /\/src\/auth\/htpasswd\.ts$/],
  ['TLS certificate files', /\/src\/tls\/certfiles\.ts$/],
  ['ACME', /\/src\/tls\/acme\.ts$|\/node_modules\/acme-client\//],
  ['S3', /\/node_modules\/@aws-sdk\//],
  ['Redis', /\/node_modules\/ioredis\//],
];

describe('regcache serve loads what its configuration uses', () => {
  let work: string;

  before(async () => {
    work = await makeTempDir('footprint-');
  });

  after(async () => {
    if (work) await removeDir(work);
  });

  /** Starts the real CLI with `extra` config, waits for /v2/, returns every module file it has loaded. */
  async function loadedBy(name: string, extra: string): Promise<string[]> {
    const port = await freePort();
    const log = join(work, `${name}.modules`);
    await writeFile(log, '');
    const configYaml = `version: 0.1
log: { level: info, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: ${join(work, name)} } }
http: { addr: "127.0.0.1:${port}" }
proxy: { remoteurl: "http://127.0.0.1:9" }
${extra}`;
    const server = await startRegcacheProcess({ configYaml, port, env: { NODE_OPTIONS: `--import ${PRELOAD}`, REGCACHE_MODULE_LOG: log } });
    try {
      process.kill(server.proc.pid, 'SIGUSR2');
      await waitFor(async () => (await readFile(log, 'utf8')).endsWith('#done\n'), { what: 'the module list' });
      return (await readFile(log, 'utf8')).split('\n').filter((l) => l && l !== '#done');
    } finally {
      await server.stop();
    }
  }

  it('one upstream, filesystem storage, no auth or TLS: none of the optional parts', async () => {
    const loaded = await loadedBy('minimal', '');
    assert.ok(loaded.some((m) => /\/node_modules\/undici\/lib\/dispatcher\/agent\.js$/.test(m)), 'the upstream client (undici Agent) is loaded at start');
    assert.ok(loaded.some((m) => /\/src\/server\/app\.ts$/.test(m)), 'the server is loaded');
    const unexpected = NOT_AT_START.filter(([, re]) => loaded.some((m) => re.test(m))).map(([what]) => what);
    assert.deepEqual(unexpected, [], `loaded at start though the configuration does not use them: ${unexpected.join(', ')}`);
  });

  it('with auth.htpasswd the client-auth modules load (the probe sees modules loaded on use)', async () => {
    const htpasswd = join(work, 'htpasswd');
    await writeFile(htpasswd, `user:${bcrypt.hashSync('pw', 4)}\n`);
    const loaded = await loadedBy('auth', `auth: { htpasswd: { realm: mirror, path: ${htpasswd} } }`);
    assert.ok(loaded.some((m) => /\/node_modules\/bcryptjs\//.test(m)), 'bcryptjs');
    assert.ok(loaded.some((m) => /\/src\/auth\/htpasswd\.ts$/.test(m)), 'htpasswd.ts');
  });
});
