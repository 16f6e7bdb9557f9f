// The upstream client under faults: a fault proxy in front of a real registry, and small node:http stand-ins
// for what distribution does not do (CDN redirects, rate-limit headers, HTML pages, pagination, TLS, stalls).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RegistryError } from '../../src/errors.js';
import { MAX_MANIFEST_BYTES, OCI_MANIFEST } from '../../src/oci/mediatypes.js';
import { sha256 } from '../support/digest.js';
import { rejectsWith as rejectsWithCode } from '../support/errors.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { startStandIn, type StandIn } from '../support/standin.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { generateCertChain, type CertChain } from '../support/tokenserver.js';
import { upstreamClients } from '../support/upstream.js';

const PASSWORD = 'never-forward-me-42';

const { logLines, client, closeAll } = upstreamClients('faulty');

/** rejectsWith (support), and the password never shows up in the error message. */
async function rejectsWith(p: Promise<unknown>, code: string): Promise<RegistryError> {
  const err = await rejectsWithCode(p, code);
  assert.ok(!err.message.includes(PASSWORD), 'password in error message');
  return err;
}

/** Reads a stream to the end; resolves with the error it emitted (or undefined). */
async function drain(body: AsyncIterable<unknown>): Promise<{ bytes: Buffer; error?: Error }> {
  const chunks: Buffer[] = [];
  try {
    for await (const c of body) chunks.push(c as Buffer);
    return { bytes: Buffer.concat(chunks) };
  } catch (error) {
    return { bytes: Buffer.concat(chunks), error: error as Error };
  }
}

const standIns: StandIn[] = [];
async function standIn(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  tls?: { key: string; cert: string },
): Promise<StandIn> {
  const s = await startStandIn(handler, { tls });
  standIns.push(s);
  return s;
}

let work: string;
let image: BuiltImage;
let manifestBytes: Buffer;
let bigBlob: { digest: string; size: number };
let reg: RunningRegistry;
let proxy: FaultProxy;
let certs: CertChain;

before(async () => {
  work = await makeTempDir('regcache-upstream-faults-');
  image = await buildImage({ dir: join(work, 'layout'), layers: [200_000], seed: 'upstream-faults' });
  manifestBytes = await readFile(join(image.layoutDir, 'blobs', 'sha256', image.manifestDigest.slice(7)));
  bigBlob = image.blobs.reduce((a, b) => (b.size > a.size ? b : a));
  reg = await startRegistry();
  await pushImage(image, reg.host, 'test/app:v1');
  proxy = await startFaultProxy(reg.url);
  certs = await generateCertChain(work);
});

after(async () => {
  await closeAll();
  await Promise.all(standIns.map((s) => s.close()));
  await proxy?.stop();
  await reg?.stop();
  await removeDir(work);
});

describe('through the fault proxy', () => {
  const manifestPath = /\/manifests\//;

  test('429 → TOOMANYREQUESTS with Retry-After, no retry, no sleeping', async () => {
    proxy.reset();
    proxy.setRules([{ path: manifestPath, fault: { kind: 'status', status: 429, headers: { 'retry-after': '120' } } }]);
    const started = Date.now();
    const e = await rejectsWith(client(proxy.url).getManifest('test/app', 'v1'), 'TOOMANYREQUESTS');
    assert.equal(e.status, 429);
    assert.equal(e.headers['Retry-After'], '120');
    assert.ok(Date.now() - started < 2000, 'answered without waiting');
    assert.equal(proxy.count({ path: manifestPath }), 1);

    const when = new Date(Date.now() + 30_000).toUTCString();
    proxy.setRules([{ path: manifestPath, fault: { kind: 'status', status: 429, headers: { 'retry-after': when } } }]);
    const e2 = await rejectsWith(client(proxy.url).headManifest('test/app', 'v1'), 'TOOMANYREQUESTS');
    const secs = Number(e2.headers['Retry-After']);
    assert.ok(secs >= 28 && secs <= 31, `Retry-After ${secs}`);
  });

  test('502/503/504 and resets before headers are retried (3 attempts); 500 is not', async () => {
    proxy.reset();
    proxy.setRules([{ path: manifestPath, fault: { kind: 'status', status: 503 }, times: 2 }]);
    assert.equal((await client(proxy.url).getManifest('test/app', 'v1')).digest, image.manifestDigest);
    assert.equal(proxy.count({ path: manifestPath }), 3);

    proxy.reset();
    proxy.setRules([{ path: manifestPath, fault: { kind: 'close-before-headers' }, times: 1 }]);
    assert.equal((await client(proxy.url).headManifest('test/app', 'v1')).digest, image.manifestDigest);
    assert.equal(proxy.count({ path: manifestPath }), 2);

    proxy.reset();
    proxy.setRules([{ path: manifestPath, fault: { kind: 'status', status: 503 } }]);
    const e = await rejectsWith(client(proxy.url).getManifest('test/app', 'v1'), 'UNAVAILABLE');
    assert.match(e.message, /503/);
    assert.match(e.message, /faulty/);
    assert.equal(proxy.count({ path: manifestPath }), 3);

    proxy.reset();
    proxy.setRules([{ path: manifestPath, fault: { kind: 'status', status: 504 } }]);
    await rejectsWith(client(proxy.url).getManifest('test/app', 'v1'), 'UPSTREAM_ERROR');
    assert.equal(proxy.count({ path: manifestPath }), 3);

    proxy.reset();
    proxy.setRules([{ path: manifestPath, fault: { kind: 'status', status: 500 } }]);
    const e500 = await rejectsWith(client(proxy.url).getManifest('test/app', 'v1'), 'UPSTREAM_ERROR');
    assert.equal(e500.status, 502);
    assert.equal(proxy.count({ path: manifestPath }), 1);
  });

  test('no response headers within headersMs → UNAVAILABLE, not retried', { timeout: 15_000 }, async () => {
    proxy.reset();
    proxy.setRules([{ path: manifestPath, fault: { kind: 'stall' } }]);
    const started = Date.now();
    const e = await rejectsWith(
      client(proxy.url, { timeouts: { connectMs: 2000, headersMs: 400, idleMs: 5000 } }).getManifest('test/app', 'v1'),
      'UNAVAILABLE',
    );
    assert.match(e.message, /timed out/);
    assert.ok(Date.now() - started < 3000, 'gave up after headersMs');
    assert.equal(proxy.count({ path: manifestPath }), 1);
  });

  test('blob body reset or cut short against Content-Length → stream error, never retried', { timeout: 15_000 }, async () => {
    const blobPath = /\/blobs\//;
    for (const fault of [
      { kind: 'reset-after', bytes: 1000 } as const,
      { kind: 'truncate', bytes: 5000, keepLength: true } as const,
    ]) {
      proxy.reset();
      proxy.setRules([{ method: 'GET', path: blobPath, fault }]);
      const res = await client(proxy.url).getBlob('test/app', bigBlob.digest);
      assert.equal(res.size, bigBlob.size);
      const { bytes, error } = await drain(res.body);
      assert.ok(error, `${fault.kind}: the stream must fail`);
      assert.ok(bytes.length < bigBlob.size, 'fewer bytes than the blob');
      assert.equal(proxy.count({ path: blobPath }), 1);
    }
  });

  test('an HTML page with 200 is not a manifest → UPSTREAM_ERROR', async () => {
    proxy.reset();
    proxy.setRules([
      {
        path: manifestPath,
        fault: { kind: 'status', status: 200, headers: { 'content-type': 'text/html' }, body: '<html>Sign in</html>' },
      },
    ]);
    const e = await rejectsWith(client(proxy.url).getManifest('test/app', 'v1'), 'UPSTREAM_ERROR');
    assert.match(e.message, /not a manifest/);
  });

  test('manifest larger than MAX_MANIFEST_BYTES (by Content-Length) → UPSTREAM_ERROR', async () => {
    proxy.reset();
    const body = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, pad: 'x'.repeat(MAX_MANIFEST_BYTES) });
    proxy.setRules([
      { path: manifestPath, fault: { kind: 'status', status: 200, headers: { 'content-type': OCI_MANIFEST }, body } },
    ]);
    await rejectsWith(client(proxy.url).getManifest('test/app', 'v1'), 'UPSTREAM_ERROR');
  });

  test('fetched by digest, other bytes → UPSTREAM_ERROR, nothing returned', async () => {
    proxy.reset();
    const other = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] });
    proxy.setRules([
      { path: manifestPath, fault: { kind: 'status', status: 200, headers: { 'content-type': OCI_MANIFEST }, body: other } },
    ]);
    const e = await rejectsWith(client(proxy.url).getManifest('test/app', image.manifestDigest), 'UPSTREAM_ERROR');
    assert.match(e.message, new RegExp(sha256(Buffer.from(other))));
  });

  test('Docker Hub rate-limit headers are recorded; a warning when nearly exhausted', async () => {
    proxy.reset();
    const headers = {
      'content-type': OCI_MANIFEST,
      'docker-content-digest': image.manifestDigest,
      'ratelimit-limit': '100;w=21600',
      'ratelimit-remaining': '5;w=21600',
    };
    proxy.setRules([
      { path: manifestPath, fault: { kind: 'status', status: 200, headers, body: manifestBytes.toString('utf8') } },
    ]);
    const mark = logLines.length;
    const u = client(proxy.url);
    assert.equal(u.rateLimit(), undefined);
    await u.getManifest('test/app', 'v1');
    const rl = u.rateLimit();
    assert.equal(rl?.limit, 100);
    assert.equal(rl?.remaining, 5);
    assert.ok(logLines.slice(mark).some((l) => JSON.parse(l).level === 40 && l.includes('rate limit')), 'rate-limit warning logged');
  });
});

describe('stand-ins', () => {
  test('blob redirect to another origin is followed without the Authorization header', async () => {
    const blob = Buffer.from('cdn bytes '.repeat(1000));
    const digest = sha256(blob);
    const cdn = await standIn((_req, res) => {
      res.writeHead(200, { 'content-length': blob.length });
      res.end(blob);
    });
    const basic = 'Basic ' + Buffer.from(`u:${PASSWORD}`).toString('base64');
    const origin = await standIn((req, res) => {
      if (req.headers.authorization !== basic) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end();
      } else if (req.url!.endsWith('/loop')) {
        res.writeHead(302, { location: req.url }).end();
      } else {
        res.writeHead(307, { location: `${cdn.url}/signed/blob?X-Amz-Signature=abc` }).end();
      }
    });
    const u = client(origin.url, { username: 'u', password: PASSWORD });
    const res = await u.getBlob('test/app', digest);
    assert.deepEqual((await drain(res.body)).bytes, blob);
    assert.equal(cdn.requests.length, 1);
    assert.equal(cdn.requests[0]!.path, '/signed/blob?X-Amz-Signature=abc');
    assert.equal(cdn.requests[0]!.headers.authorization, undefined);
    assert.equal(origin.requests.at(-1)!.headers.authorization, basic);
    // HEAD follows too
    assert.deepEqual(await u.headBlob('test/app', digest), { size: blob.length });
    assert.equal(cdn.requests.at(-1)!.method, 'HEAD');
    // a loop stops after 5 redirects
    const before = origin.requests.length;
    const e = await rejectsWith(u.getBlob('test/app', 'loop'), 'UPSTREAM_ERROR');
    assert.match(e.message, /redirect/);
    assert.ok(!e.message.includes('X-Amz'), 'signed URL in error message');
    assert.equal(origin.requests.length - before, 6);
  });

  test('blob body silent for idleMs → stream error', { timeout: 15_000 }, async () => {
    const s = await standIn((_req, res) => {
      res.writeHead(200, { 'content-length': 1000 });
      res.write(Buffer.alloc(100)); // then nothing
    });
    const u = client(s.url, { timeouts: { connectMs: 2000, headersMs: 5000, idleMs: 300 } });
    const res = await u.getBlob('test/app', sha256(Buffer.alloc(1000)));
    const started = Date.now();
    const { bytes, error } = await drain(res.body);
    assert.ok(error, 'idle body must error');
    assert.equal((error as { code?: string }).code, 'UND_ERR_BODY_TIMEOUT');
    assert.equal(bytes.length, 100);
    assert.ok(Date.now() - started < 3000, 'gave up after idleMs');
  });

  test('chunked manifest body beyond MAX_MANIFEST_BYTES is refused while reading', async () => {
    let sent = 0;
    const s = await standIn((_req, res) => {
      res.writeHead(200, { 'content-type': OCI_MANIFEST }); // no Content-Length: chunked
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = () => {
        while (sent <= MAX_MANIFEST_BYTES * 2) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      res.on('error', () => {});
      pump();
    });
    await rejectsWith(client(s.url).getManifest('test/app', 'v1'), 'UPSTREAM_ERROR');
    assert.ok(sent < MAX_MANIFEST_BYTES * 2, 'reading stopped early');
  });

  test('tags list follows Link pagination', async () => {
    const pages: Record<string, { tags: string[]; next?: string }> = {
      '': { tags: ['a', 'b'], next: '/v2/test/app/tags/list?last=b&n=2' },
      b: { tags: ['c', 'd'], next: '/v2/test/app/tags/list?last=d&n=2' },
      d: { tags: ['e'] },
    };
    const s = await standIn((req, res) => {
      const page = pages[new URL(req.url!, 'http://x').searchParams.get('last') ?? '']!;
      res.writeHead(200, {
        'content-type': 'application/json',
        ...(page.next ? { link: `<${page.next}>; rel="next"` } : {}),
      });
      res.end(JSON.stringify({ name: 'test/app', tags: page.tags }));
    });
    assert.deepEqual(await client(s.url).listTags('test/app'), ['a', 'b', 'c', 'd', 'e']);
    assert.equal(s.requests.length, 3);
  });

  test('path prefix, HEAD without Docker-Content-Digest falls back to GET, kept-alive connections', async () => {
    const s = await standIn((req, res) => {
      if (req.url !== '/some/prefix/v2/test/app/manifests/v1') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': OCI_MANIFEST, 'content-length': manifestBytes.length });
      res.end(req.method === 'HEAD' ? undefined : manifestBytes);
    });
    const u = client(`${s.url}/some/prefix/`);
    const head = await u.headManifest('test/app', 'v1');
    assert.deepEqual(head, { digest: image.manifestDigest, mediaType: OCI_MANIFEST, size: manifestBytes.length });
    assert.deepEqual(
      s.requests.map((r) => r.method),
      ['HEAD', 'GET'],
    );
    for (let i = 0; i < 10; i++) await (i % 2 ? u.getManifest('test/app', 'v1') : u.headManifest('test/app', 'v1'));
    assert.equal(s.requests.length, 2 + 5 * 2 + 5); // each HEAD falls back to a GET
    // keep-alive, HEAD included (undici may open a second socket while the first is being released)
    assert.ok(s.requests.every((r) => r.headers.connection !== 'close'), 'a request asked to close the connection');
    assert.ok(s.connections <= 2, `${s.connections} connections for ${s.requests.length} requests`);
  });

  test('https upstream with a private CA: trusted via `ca`, refused without, accepted with insecureSkipVerify', async () => {
    const tls = { key: await readFile(certs.leafKey, 'utf8'), cert: await readFile(certs.leafCert, 'utf8') };
    const s = await standIn((_req, res) => {
      res.writeHead(200, { 'content-type': OCI_MANIFEST, 'docker-content-digest': image.manifestDigest });
      res.end(manifestBytes);
    }, tls);
    assert.match(s.url, /^https:/);
    assert.equal((await client(s.url, { ca: certs.caCert }).getManifest('test/app', 'v1')).digest, image.manifestDigest);
    const e = await rejectsWith(client(s.url).getManifest('test/app', 'v1'), 'UNAVAILABLE');
    assert.ok(e.cause, 'TLS error attached as cause');
    assert.equal(
      (await client(s.url, { insecureSkipVerify: true }).getManifest('test/app', 'v1')).digest,
      image.manifestDigest,
    );
  });
});

test('the password never appeared in the logs (runs last)', () => {
  assert.ok(logLines.length > 20, 'logs were captured');
  assert.ok(!logLines.join('').includes(PASSWORD), 'a credential appeared in the logs');
});
