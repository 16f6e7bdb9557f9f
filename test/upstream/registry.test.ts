// The upstream client against real distribution registries: anonymous, htpasswd (Basic) and token auth.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RegistryError } from '../../src/errors.js';
import { streamDigest } from '../support/digest.js';
import { rejectsWith as rejectsWithCode } from '../support/errors.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { startTokenServer, type TokenServer } from '../support/tokenserver.js';
import { upstreamClients } from '../support/upstream.js';

const USER = 'puller';
const PASSWORD = 'S3cret-upstream-pw!';
const SECRETS = [PASSWORD, Buffer.from(`${USER}:${PASSWORD}`).toString('base64')];

/** Every log line of every client made in this file, to check that no secret was ever logged. */
const { logLines, client, closeAll } = upstreamClients('test-upstream');

/** rejectsWith (support), and no secret shows up in the error's message or detail. */
async function rejectsWith(p: Promise<unknown>, code: string): Promise<RegistryError> {
  const err = await rejectsWithCode(p, code);
  for (const s of SECRETS) assert.ok(!err.message.includes(s) && !JSON.stringify(err.detail ?? '').includes(s), 'secret in error');
  return err;
}

const accessLog401 = async (r: RunningRegistry) =>
  (await readFile(r.logFile, 'utf8')).split('\n').filter((l) => /" 401 /.test(l) && l.includes('regcache/')).length;

let work: string;
let image: BuiltImage;
let manifestBytes: Buffer;
let anon: RunningRegistry;

before(async () => {
  work = await makeTempDir('regcache-upstream-test-');
  image = await buildImage({ dir: join(work, 'layout'), layers: [2048, 300_000], seed: 'upstream-registry-test' });
  manifestBytes = await readFile(join(image.layoutDir, 'blobs', 'sha256', image.manifestDigest.slice(7)));
  anon = await startRegistry();
  await pushImage(image, anon.host, 'test/app:v1');
  await pushImage(image, anon.host, 'test/app:v2');
  await pushImage(image, anon.host, 'library/alpine:3');
});

after(async () => {
  await closeAll();
  await anon?.stop();
  await removeDir(work);
});

describe('anonymous upstream', () => {
  test('manifest by tag and by digest: exact bytes, media type, digest', async () => {
    const u = client(anon.url);
    const byTag = await u.getManifest('test/app', 'v1');
    assert.deepEqual(byTag.bytes, manifestBytes);
    assert.equal(byTag.digest, image.manifestDigest);
    assert.equal(byTag.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    const byDigest = await u.getManifest('test/app', image.manifestDigest);
    assert.deepEqual(byDigest.bytes, manifestBytes);
    const head = await u.headManifest('test/app', 'v1');
    assert.deepEqual(head, { digest: image.manifestDigest, mediaType: image.mediaType, size: manifestBytes.length });
  });

  test('blobs: HEAD size, GET streams the exact bytes with Content-Length', async () => {
    const u = client(anon.url);
    for (const blob of image.blobs) {
      assert.deepEqual(await u.headBlob('test/app', blob.digest), { size: blob.size });
      const res = await u.getBlob('test/app', blob.digest);
      assert.equal(res.size, blob.size);
      assert.deepEqual(await streamDigest(res.body), { digest: blob.digest, size: blob.size });
    }
  });

  test('tags list', async () => {
    const u = client(anon.url);
    assert.deepEqual((await u.listTags('test/app')).sort(), ['v1', 'v2']);
  });

  test('404s map to MANIFEST_UNKNOWN / BLOB_UNKNOWN / NAME_UNKNOWN', async () => {
    const u = client(anon.url);
    const missing = `sha256:${'0'.repeat(64)}`;
    const e = await rejectsWith(u.getManifest('test/app', 'nope'), 'MANIFEST_UNKNOWN');
    assert.equal(e.status, 404);
    assert.match(e.message, /test-upstream/);
    assert.match(e.message, /404/);
    await rejectsWith(u.headManifest('test/app', 'nope'), 'MANIFEST_UNKNOWN');
    await rejectsWith(u.getBlob('test/app', missing), 'BLOB_UNKNOWN');
    await rejectsWith(u.headBlob('test/app', missing), 'BLOB_UNKNOWN');
    await rejectsWith(u.listTags('no/such-repo'), 'NAME_UNKNOWN');
  });

  test('Docker Hub normalization: `alpine` is requested as `library/alpine`', async () => {
    const u = client(anon.url, { dockerHub: true });
    assert.equal(u.normalizeRepo('alpine'), 'library/alpine');
    assert.equal(u.normalizeRepo('test/app'), 'test/app');
    assert.equal((await u.getManifest('alpine', '3')).digest, image.manifestDigest);
    assert.equal(client(anon.url).normalizeRepo('alpine'), 'alpine');
  });

  test('unreachable upstream → UNAVAILABLE', async () => {
    const stopped = await startRegistry();
    const url = stopped.url;
    await stopped.stop();
    const e = await rejectsWith(client(url).getManifest('test/app', 'v1'), 'UNAVAILABLE');
    assert.equal(e.status, 503);
    assert.ok(e.cause, 'underlying error attached');
  });
});

describe('htpasswd (Basic) upstream', () => {
  let reg: RunningRegistry;
  before(async () => {
    reg = await startRegistry({ htpasswd: { username: USER, password: PASSWORD }, rootDir: anon.rootDir });
  });
  after(async () => reg?.stop());

  test('sends Basic after the challenge, then preemptively', async () => {
    const u = client(reg.url, { username: USER, password: PASSWORD });
    assert.equal((await u.getManifest('test/app', 'v1')).digest, image.manifestDigest);
    assert.equal(await accessLog401(reg), 1);
    await u.headManifest('test/app', 'v2');
    await u.headBlob('test/app', image.blobs[0]!.digest);
    assert.deepEqual((await u.listTags('test/app')).sort(), ['v1', 'v2']);
    assert.equal(await accessLog401(reg), 1, 'later requests carried credentials up front');
  });

  test('no or wrong credentials → UNAUTHORIZED without the password in the message', async () => {
    await rejectsWith(client(reg.url).getManifest('test/app', 'v1'), 'UNAUTHORIZED');
    const e = await rejectsWith(
      client(reg.url, { username: USER, password: PASSWORD + 'x' }).getManifest('test/app', 'v1'),
      'UNAUTHORIZED',
    );
    assert.match(e.message, /401/);
  });
});

describe('token (Bearer) upstream', () => {
  let tokens: TokenServer;
  let reg: RunningRegistry;
  let foreign: TokenServer;
  let foreignReg: RunningRegistry;
  const issued = (t: TokenServer, scope: string) =>
    t.requests.filter((r) => r.status === 200 && r.scopes.includes(scope)).length;

  before(async () => {
    tokens = await startTokenServer({ credentials: { username: USER, password: PASSWORD } });
    reg = await startRegistry({ config: tokens.registryConfig(), rootDir: anon.rootDir });
    // realm on 127.0.0.2: a host name different from the upstream's 127.0.0.1
    foreign = await startTokenServer({ host: '127.0.0.2', accessTokenField: true, expiresIn: null });
    foreignReg = await startRegistry({ config: foreign.registryConfig(), rootDir: anon.rootDir });
  });
  after(async () => {
    await Promise.all([reg?.stop(), foreignReg?.stop()]);
    await Promise.all([tokens?.stop(), foreign?.stop()]);
  });

  test('distribution accepts our tokens; one token per scope, not per request', async () => {
    const u = client(reg.url, { username: USER, password: PASSWORD });
    const m = await u.getManifest('test/app', 'v1');
    assert.deepEqual(m.bytes, manifestBytes);
    await u.getManifest('test/app', image.manifestDigest);
    await u.headManifest('test/app', 'v2');
    for (const blob of image.blobs) {
      const res = await u.getBlob('test/app', blob.digest);
      assert.equal((await streamDigest(res.body)).digest, blob.digest);
    }
    assert.deepEqual((await u.listTags('test/app')).sort(), ['v1', 'v2']);
    assert.equal(issued(tokens, 'repository:test/app:pull'), 1);
    assert.ok(tokens.requests.every((r) => r.service === tokens.service && r.account === USER), 'token requests carried service and credentials');

    await u.getManifest('library/alpine', '3');
    await u.headManifest('library/alpine', '3');
    assert.equal(issued(tokens, 'repository:library/alpine:pull'), 1);
    assert.equal(tokens.requests.length, 2);
    assert.equal(await accessLog401(reg), 1, 'a new scope is fetched preemptively once the realm is known');
  });

  test('concurrent requests share one token fetch', async () => {
    const u = client(reg.url, { username: USER, password: PASSWORD });
    const before = tokens.requests.length;
    await u.headManifest('test/app', 'v1'); // learn the realm
    await Promise.all(image.blobs.flatMap((b) => [u.headBlob('test/app', b.digest), u.headBlob('library/alpine', b.digest)]));
    assert.equal(tokens.requests.length - before, 2);
  });

  test('token endpoint refusing or failing → UNAUTHORIZED, no secrets', async () => {
    const e = await rejectsWith(client(reg.url).getManifest('test/app', 'v1'), 'UNAUTHORIZED');
    assert.match(e.message, /token/);
    tokens.failWith(500);
    try {
      const e2 = await rejectsWith(
        client(reg.url, { username: USER, password: PASSWORD }).getManifest('test/app', 'v1'),
        'UNAUTHORIZED',
      );
      assert.match(e2.message, /500/);
    } finally {
      tokens.failWith(undefined);
    }
  });

  test('expired tokens are renewed', async () => {
    tokens.configure({ expiresIn: 1 });
    try {
      const u = client(reg.url, { username: USER, password: PASSWORD });
      const scope = 'repository:test/app:pull';
      const start = issued(tokens, scope);
      const deadline = Date.now() + 10_000;
      while (issued(tokens, scope) - start < 2) {
        assert.ok(Date.now() < deadline, 'token was not renewed');
        await u.headManifest('test/app', 'v1');
      }
    } finally {
      tokens.configure({ expiresIn: 300 });
    }
  });

  test('credentials are not sent to a realm on another host; token fetched anonymously with a warning', async () => {
    const mark = logLines.length;
    const u = client(foreignReg.url, { username: USER, password: PASSWORD });
    assert.deepEqual((await u.getManifest('test/app', 'v1')).bytes, manifestBytes);
    await u.headManifest('test/app', 'v2');
    assert.equal(foreign.requests.length, 1, 'access_token without expires_in is cached');
    assert.equal(foreign.requests[0]!.hadAuthorization, false);
    const warnings = logLines.slice(mark).filter((l) => JSON.parse(l).level === 40 && l.includes('anonymously'));
    assert.equal(warnings.length, 1);
  });

  test('a realm host listed in authhosts receives the credentials', async () => {
    const u = client(foreignReg.url, { username: USER, password: PASSWORD, authhosts: ['127.0.0.2'] });
    await u.headManifest('test/app', 'v1');
    assert.equal(foreign.requests.at(-1)!.hadAuthorization, true);
    const withPort = client(foreignReg.url, { username: USER, password: PASSWORD, authhosts: [new URL(foreign.realm).host] });
    await withPort.headManifest('test/app', 'v1');
    assert.equal(foreign.requests.at(-1)!.hadAuthorization, true);
  });
});

test('an aborted request rejects with the abort reason, not a RegistryError', async () => {
  const ac = new AbortController();
  ac.abort(new Error('client went away'));
  await assert.rejects(client(anon.url).getManifest('test/app', 'v1', ac.signal), /client went away/);
});

test('no credential or token ever appeared in the logs (runs last)', () => {
  const all = logLines.join('');
  assert.ok(logLines.length > 20, 'logs were captured');
  for (const s of SECRETS) assert.ok(!all.includes(s), 'a credential appeared in the logs');
  assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\./.test(all), 'a token appeared in the logs');
});
