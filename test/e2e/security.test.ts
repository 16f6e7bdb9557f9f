// Client auth (htpasswd) and TLS (certificate files) on the real server, with skopeo as the client.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { Agent, request } from 'undici';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { copyToDir, dirDigests } from '../support/skopeo.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const PASSWORD = 'pw-Correct-Horse-7';

function selfSigned(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
    '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'pipe' });
  return { cert, key };
}

describe('client auth and TLS', () => {
  let upstream: RunningRegistry;
  let cache: RunningRegcache;
  let work: string;
  let img: BuiltImage;

  before(async () => {
    work = await makeTempDir('security-');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [3000], seed: 'sec' });
    await pushImage(img, upstream.host, 'team/app:1');
    const htpasswd = join(work, 'htpasswd');
    await writeFile(htpasswd, `alice:${bcrypt.hashSync(PASSWORD, 6)}\n`);
    const { cert, key } = selfSigned(work);
    cache = await startRegcache({
      upstreamUrl: upstream.url,
      config: {
        auth: { htpasswd: { realm: 'regcache-test', path: htpasswd } },
        http: { tls: { certificate: cert, key } },
      },
    });
  });

  after(async () => {
    await cache?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  const insecure = new Agent({ connect: { rejectUnauthorized: false } });

  it('serves HTTPS and answers /v2/ with 401 + Basic challenge without credentials', async () => {
    assert.match(cache.url, /^https:/);
    const res = await request(`${cache.url}/v2/`, { dispatcher: insecure });
    assert.equal(res.statusCode, 401);
    assert.equal(res.headers['www-authenticate'], 'Basic realm="regcache-test"');
    const body = (await res.body.json()) as { errors: Array<{ code: string }> };
    assert.equal(body.errors[0]!.code, 'UNAUTHORIZED');
  });

  it('skopeo with the right credentials pulls byte-identical content; wrong ones get 401', async () => {
    const dest = join(work, 'pulled');
    await copyToDir(`docker://${cache.host}/team/app:1`, dest, { creds: `alice:${PASSWORD}` });
    const direct = join(work, 'direct');
    await copyToDir(`docker://${upstream.host}/team/app:1`, direct);
    assert.deepEqual(await dirDigests(dest), await dirDigests(direct));
    await assert.rejects(copyToDir(`docker://${cache.host}/team/app:1`, join(work, 'nope'), { creds: 'alice:wrong' }), /401|unauthorized|authentication required/i);
  });

  it('never logs the client password or Authorization header', async () => {
    const basic = Buffer.from(`alice:${PASSWORD}`).toString('base64');
    const text = JSON.stringify(cache.logs);
    assert.ok(!text.includes(PASSWORD), '!text.includes(PASSWORD)');
    assert.ok(!text.includes(basic), '!text.includes(basic)');
  });
});

describe('open-mirror guard', () => {
  it('warns loudly when upstream credentials are set and clients are not authenticated', async () => {
    const c = await startRegcache({
      upstreamUrl: 'http://127.0.0.1:9',
      config: { proxy: { username: 'bot', password: 'sekrit-upstream-pw' } },
    });
    try {
      assert.ok(c.logs.some((l) => /SECURITY: upstream credentials/.test(String(l.msg))), 'c.logs.some((l) => /SECURITY: upstream credentials/.test(String(l.m...');
      assert.ok(!JSON.stringify(c.logs).includes('sekrit-upstream-pw'), 'password not logged');
    } finally {
      await c.stop();
    }
  });
});
