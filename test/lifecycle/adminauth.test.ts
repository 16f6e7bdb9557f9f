// The admin API is not an open door: reading stays open, state-changing requests need the admin token
// (regcache.admin.tokenfile) or a loopback-only debug listener. Real server processes, a real distribution
// upstream, the real CLI.
import assert from 'node:assert/strict';
import { stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { freePort, runCli, startRegcacheProcess } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { copyToDir } from '../support/skopeo.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const KEY = 'regcache.admin.tokenfile';
const REPO = 'adm/app';

describe('admin API credential', () => {
  let upstream: RunningRegistry;
  let work: string;
  let image: BuiltImage;

  before(async () => {
    work = await makeTempDir('adminauth-');
    upstream = await startRegistry();
    image = await buildImage({ dir: join(work, 'img'), layers: [20_000, 10_000], seed: 'adminauth' });
    await pushImage(image, upstream.host, `${REPO}:1`);
  });
  after(async () => {
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  /** A regcache process whose debug listener is on debugHost; returns its config file (for the CLI) and URLs. */
  async function server(name: string, debugHost: string, tokenfile?: string) {
    const root = join(work, `data-${name}`);
    const port = await freePort();
    const debugPort = await freePort();
    const configYaml = [
      'version: 0.1',
      'log: { level: info, formatter: json }',
      `storage: { filesystem: { rootdirectory: ${root} } }`,
      `http: { addr: 127.0.0.1:${port}, draintimeout: 5s, debug: { addr: "${debugHost}:${debugPort}", prometheus: { enabled: true } } }`,
      `proxy: { remoteurl: ${upstream.url} }`,
      tokenfile ? `regcache: { admin: { tokenfile: ${tokenfile} } }` : '',
    ].join('\n');
    const rc = await startRegcacheProcess({ configYaml, port });
    const blob = image.blobs[1]!.digest;
    return {
      rc,
      config: join(rc.work, 'config.yml'),
      debugUrl: `http://127.0.0.1:${debugPort}`,
      pull: () => copyToDir(`docker://127.0.0.1:${port}/${REPO}:1`, join(work, `pull-${name}-${Date.now()}`)),
      cached: () => stat(join(root, 'blobs', 'sha256', blob.slice(7, 9), blob.slice(7))).then(() => true, () => false),
    };
  }

  async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
    const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });
    return { status: res.status, headers: res.headers, body: (await res.json()) as { error?: string; planned?: unknown[] } };
  }

  it('debug listener on 0.0.0.0 without a token: admin POSTs are 403 naming the key; reads stay open; nothing is removed', async () => {
    const s = await server('open', '0.0.0.0');
    try {
      await s.pull();
      assert.equal(await s.cached(), true, 'pulled through regcache');
      for (const [op, body] of [
        ['rm', { ref: `${REPO}:1` }],
        ['prune', { olderThanMs: 0 }],
        ['verify', {}],
      ] as const) {
        const r = await post(`${s.debugUrl}/admin/cache/${op}`, body);
        assert.equal(r.status, 403, `${op}: ${JSON.stringify(r.body)}`);
        assert.match(r.body.error ?? '', /regcache\.admin\.tokenfile/, op);
      }
      // Also refused with a made-up token: without a configured one there is nothing to match.
      assert.equal((await post(`${s.debugUrl}/admin/cache/rm`, { ref: REPO }, { Authorization: 'Bearer guess' })).status, 403);
      for (const path of ['/debug/vars', '/metrics', '/debug/health', '/admin/cache']) {
        const res = await fetch(`${s.debugUrl}${path}`);
        await res.arrayBuffer();
        assert.equal(res.status, 200, path);
      }
      const listing = (await (await fetch(`${s.debugUrl}/admin/cache`)).json()) as { repos: Array<{ repo: string }> };
      assert.deepEqual(listing.repos.map((r) => r.repo), [REPO]);
      assert.equal(await s.cached(), true, 'still cached after the refused requests');

      const warning = (await s.rc.proc.logTail(1 << 20)).split('\n').find((l) => l.includes('"level":40') && l.includes(KEY));
      assert.ok(warning, 'a warning at start names regcache.admin.tokenfile');

      const rm = await runCli(['cache', 'rm', `${REPO}:1`, '-c', s.config]);
      assert.notEqual(rm.code, 0, rm.stdout);
      assert.match(rm.stderr, /admin operations are disabled.*regcache\.admin\.tokenfile/);
      const ls = await runCli(['cache', 'ls', '-c', s.config]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stdout, /adm\/app/);
      assert.equal(await s.cached(), true);
    } finally {
      await s.rc.stop();
    }
  });

  it('with regcache.admin.tokenfile: missing or wrong token 401, the right one runs; rotation without restart; the CLI sends it', async () => {
    const tokenfile = join(work, 'admin-token');
    const token = 'f'.repeat(64);
    await writeFile(tokenfile, `${token}\n`);
    const s = await server('token', '0.0.0.0', tokenfile);
    try {
      await s.pull();
      const rmUrl = `${s.debugUrl}/admin/cache/rm`;
      const body = { ref: `${REPO}:1` };
      for (const headers of [{}, { Authorization: 'Bearer wrong' }, { Authorization: `Basic ${token}` }, { Authorization: `Bearer ${token}x` }] as Array<Record<string, string>>) {
        const r = await post(rmUrl, body, headers);
        assert.equal(r.status, 401, `${JSON.stringify(headers)}: ${JSON.stringify(r.body)}`);
        assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="regcache-admin"');
        assert.equal(typeof r.body.error, 'string');
        assert.ok(!JSON.stringify(r.body).includes(token), 'the token is never echoed');
      }
      assert.equal(await s.cached(), true, 'nothing removed by refused requests');
      const plain = await fetch(rmUrl, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'text/plain' }, body: JSON.stringify(body) });
      assert.equal(plain.status, 415, 'cross-site protection still applies with a valid token');
      await plain.arrayBuffer();
      const ok = await post(rmUrl, body, { Authorization: `Bearer ${token}` });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.equal(ok.body.planned?.length, 1);
      assert.equal(await s.cached(), false, 'the right token removes the image');
      const logs = await s.rc.proc.logTail(1 << 20);
      assert.ok(!logs.includes(token), 'the token is never logged');
      assert.ok(!logs.includes('is not loopback'), 'no open-door warning with a token');

      // The CLI reads the same config's tokenfile, no flags.
      await s.pull();
      const rm = await runCli(['cache', 'rm', `${REPO}:1`, '-c', s.config]);
      assert.equal(rm.code, 0, rm.stderr);
      assert.match(rm.stdout, /removed .*adm\/app@sha256:/);
      assert.equal(await s.cached(), false);

      // Remote: --admin URL with --admin-token-file (no config); without the file it is a 401.
      await s.pull();
      const anon = await runCli(['cache', 'rm', `${REPO}:1`, '--admin', s.debugUrl]);
      assert.notEqual(anon.code, 0);
      assert.match(anon.stderr, /admin token required/);
      const missing = await runCli(['cache', 'rm', `${REPO}:1`, '--admin', s.debugUrl, '--admin-token-file', join(work, 'nope')]);
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, /--admin-token-file.*ENOENT/);
      const remote = await runCli(['cache', 'rm', `${REPO}:1`, '--admin', s.debugUrl, '--admin-token-file', tokenfile]);
      assert.equal(remote.code, 0, remote.stderr);
      assert.equal(await s.cached(), false);

      // Rotation: the file changes, the old token stops working, the new one works, no restart.
      await s.pull();
      const rotated = 'e'.repeat(48);
      await writeFile(tokenfile, rotated);
      const later = new Date(Date.now() + 5_000);
      await utimes(tokenfile, later, later);
      assert.equal((await post(rmUrl, body, { Authorization: `Bearer ${token}` })).status, 401, 'old token after rotation');
      const prune = await runCli(['cache', 'prune', '--older-than', '0s', '--dry-run', '-c', s.config]);
      assert.equal(prune.code, 0, prune.stderr);
      assert.match(prune.stdout, /would remove .*adm\/app@/);
      assert.equal((await post(rmUrl, body, { Authorization: `Bearer ${rotated}` })).status, 200);
      assert.equal(await s.cached(), false);
    } finally {
      await s.rc.stop();
    }
  });

  it('loopback debug listener without a token: admin POSTs and the CLI work as before', async () => {
    const s = await server('loopback', '127.0.0.1');
    try {
      await s.pull();
      const text = await fetch(`${s.debugUrl}/admin/cache/rm`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: '{}' });
      assert.equal(text.status, 415);
      await text.arrayBuffer();
      const r = await post(`${s.debugUrl}/admin/cache/rm`, { ref: `${REPO}:1` });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(await s.cached(), false);
      await s.pull();
      const rm = await runCli(['cache', 'rm', `${REPO}:1`, '-c', s.config]);
      assert.equal(rm.code, 0, rm.stderr);
      assert.equal(await s.cached(), false);
      const verify = await runCli(['cache', 'verify', '-c', s.config]);
      assert.equal(verify.code, 0, verify.stderr);
      assert.ok(!(await s.rc.proc.logTail(1 << 20)).includes(KEY), 'no warning for a loopback listener');
    } finally {
      await s.rc.stop();
    }
  });
});
