// Self-test of the shared integration-test support code: real docker-registry, real skopeo, fault proxy.
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createGunzip } from 'node:zlib';
import { fileDigest, sha256 } from './digest.js';
import { startFaultProxy, type FaultProxy } from './faultproxy.js';
import { buildImage, buildMultiArchImage, MEDIA_TYPES, pushImage, type BuiltImage } from './images.js';
import { freePort } from './ports.js';
import { waitFor } from './process.js';
import { startRegistry, type RunningRegistry } from './registry.js';
import { copyToDir, dirDigests, inspectRaw } from './skopeo.js';
import { startStandIn } from './standin.js';
import { makeTempDir, removeDir } from './tmp.js';

interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** the body ended with a connection error / premature close instead of a clean end */
  broken: boolean;
}

/** One request on a fresh connection; collects whatever body arrives and whether it ended cleanly. */
function get(url: string, opts: { method?: string; headers?: http.OutgoingHttpHeaders; body?: string; timeoutMs?: number } = {}) {
  return new Promise<Got>((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let broken = false;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('aborted', () => (broken = true));
      res.on('error', () => (broken = true));
      res.on('close', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), broken: broken || !res.complete }),
      );
    });
    req.setTimeout(opts.timeoutMs ?? 10_000, () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

const blobFile = (img: BuiltImage, digest: string) => join(img.layoutDir, 'blobs', 'sha256', digest.slice(7));

describe('test support', () => {
  let registry: RunningRegistry;
  let work: string;
  let small: BuiltImage;

  before(async () => {
    work = await makeTempDir('regcache-support-test-');
    registry = await startRegistry();
    small = await buildImage({ dir: join(work, 'small'), layers: [1000], seed: 'small' });
    await pushImage(small, registry.host, 'test/small:1');
  });

  after(async () => {
    await registry?.stop();
    await registry?.stop(); // idempotent
    await removeDir(work);
  });

  test('freePort returns a bindable loopback port', async () => {
    const port = await freePort();
    assert.ok(port > 0 && port < 65536);
    const server = http.createServer();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
    await new Promise((resolve) => server.close(resolve));
  });

  test('registry answers /v2/ and logs requests to logFile', async () => {
    assert.match(registry.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(registry.host, `127.0.0.1:${registry.port}`);
    const res = await get(`${registry.url}/v2/`);
    assert.equal(res.status, 200);
    assert.match(await readFile(registry.logFile, 'utf8'), /"GET \/v2\/ HTTP\/1\.1" 200/);
    assert.ok((await stat(join(registry.rootDir, 'docker', 'registry', 'v2', 'repositories', 'test', 'small'))).isDirectory());
  });

  test('small image: pushed manifest bytes are the built ones; blobs are served', async () => {
    const raw = await inspectRaw(`docker://${registry.host}/test/small:1`);
    assert.equal(sha256(raw), small.manifestDigest);
    assert.equal(raw.length, small.manifestSize);
    assert.deepEqual(raw, await readFile(blobFile(small, small.manifestDigest)));
    assert.equal(JSON.parse(raw.toString()).mediaType, MEDIA_TYPES.ociManifest);
    assert.equal(small.mediaType, MEDIA_TYPES.ociManifest);
    assert.equal(small.blobs.length, 2);
    for (const blob of small.blobs) {
      const res = await get(`${registry.url}/v2/test/small/blobs/${blob.digest}`);
      assert.equal(res.status, 200);
      assert.equal(sha256(res.body), blob.digest);
      assert.equal(res.body.length, blob.size);
    }
  });

  test('layer is a gzip tar of one file whose sha256 is the diff_id in the config', async () => {
    const [layer] = small.manifests[0].layers;
    const chunks: Buffer[] = [];
    for await (const c of createReadStream(blobFile(small, layer.digest)).pipe(createGunzip())) chunks.push(c as Buffer);
    const tar = Buffer.concat(chunks);
    assert.equal(sha256(tar), layer.diffId);
    assert.equal(tar.length, layer.uncompressedSize);
    assert.equal(tar.length, 512 + 1024 + 1024); // header, 1000 bytes padded to 1024, end-of-archive
    assert.equal(tar.subarray(0, 11).toString(), 'layer-0.bin');
    assert.equal(parseInt(tar.subarray(124, 135).toString(), 8), 1000);
    assert.equal(tar.subarray(257, 262).toString(), 'ustar');
    const header = Buffer.from(tar.subarray(0, 512));
    const checksum = parseInt(header.subarray(148, 154).toString(), 8);
    header.fill(' ', 148, 156);
    assert.equal(checksum, header.reduce((sum, b) => sum + b, 0));
    const config = JSON.parse(await readFile(blobFile(small, small.manifests[0].config.digest), 'utf8'));
    assert.deepEqual(config.rootfs, { type: 'layers', diff_ids: [layer.diffId] });
    assert.equal(config.os, 'linux');
    assert.equal(config.architecture, 'amd64');
  });

  test('builds are deterministic per seed', async () => {
    const again = await buildImage({ dir: join(work, 'small-again'), layers: [1000], seed: 'small' });
    assert.equal(again.manifestDigest, small.manifestDigest);
    const other = await buildImage({ dir: join(work, 'small-other'), layers: [1000], seed: 'other' });
    assert.notEqual(other.manifestDigest, small.manifestDigest);
  });

  test('5-layer image round-trips; a dir: copy matches the built blobs', async () => {
    const sizes = [0, 1, 511, 512, 70_000];
    const img = await buildImage({ dir: join(work, 'five'), ref: 'v5', layers: sizes, seed: 'five' });
    assert.equal(await pushImage(img, registry.host, 'test/five:v5'), img.manifestDigest);
    const raw = await inspectRaw(`docker://${registry.host}/test/five:v5`);
    assert.equal(sha256(raw), img.manifestDigest);
    const manifest = JSON.parse(raw.toString());
    assert.deepEqual(
      manifest.layers.map((l: { digest: string }) => l.digest),
      img.manifests[0].layers.map((l) => l.digest),
    );
    assert.deepEqual(img.manifests[0].layers.map((l) => l.uncompressedSize), sizes.map((s) => 512 + Math.ceil(s / 512) * 512 + 1024));

    const out = join(work, 'five-copy');
    await copyToDir(`docker://${registry.host}/test/five:v5`, out);
    const digests = await dirDigests(out);
    assert.equal(digests.get('manifest.json'), img.manifestDigest);
    for (const blob of img.blobs) assert.equal(digests.get(blob.digest.slice(7)), blob.digest);
  });

  test('multi-arch index pushed with all: true keeps index and per-platform manifests', async () => {
    const img = await buildMultiArchImage({
      dir: join(work, 'multi'),
      seed: 'multi',
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
      layers: [2000, 3000],
    });
    assert.equal(img.mediaType, MEDIA_TYPES.ociIndex);
    assert.equal(img.blobs.length, 2 * 4); // per platform: manifest, config, 2 layers
    await pushImage(img, registry.host, 'test/multi:1', { all: true });
    const raw = await inspectRaw(`docker://${registry.host}/test/multi:1`);
    assert.equal(sha256(raw), img.manifestDigest);
    const index = JSON.parse(raw.toString());
    assert.equal(index.mediaType, MEDIA_TYPES.ociIndex);
    assert.deepEqual(
      index.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture),
      ['amd64', 'arm64'],
    );
    for (const child of img.manifests) {
      const childRaw = await inspectRaw(`docker://${registry.host}/test/multi@${child.digest}`);
      assert.equal(sha256(childRaw), child.digest);
      const config = JSON.parse((await get(`${registry.url}/v2/test/multi/blobs/${child.config.digest}`)).body.toString());
      assert.equal(config.architecture, child.platform.architecture);
    }
    assert.notEqual(img.manifests[0].layers[0].digest, img.manifests[1].layers[0].digest);
  });

  test("format 'v2s2' pushes a Docker schema 2 manifest with the same layers", async () => {
    const img = await buildImage({ dir: join(work, 'v2s2'), layers: [5000, 6000], seed: 'v2s2' });
    const digest = await pushImage(img, registry.host, 'test/v2s2:1', { format: 'v2s2' });
    const raw = await inspectRaw(`docker://${registry.host}/test/v2s2:1`);
    assert.equal(sha256(raw), digest);
    assert.notEqual(digest, img.manifestDigest);
    const manifest = JSON.parse(raw.toString());
    assert.equal(manifest.mediaType, MEDIA_TYPES.dockerManifest);
    assert.equal(manifest.config.mediaType, 'application/vnd.docker.container.image.v1+json');
    assert.deepEqual(
      manifest.layers.map((l: { digest: string; mediaType: string }) => [l.digest, l.mediaType]),
      img.manifests[0].layers.map((l) => [l.digest, 'application/vnd.docker.image.rootfs.diff.tar.gzip']),
    );
    const head = await get(`${registry.url}/v2/test/v2s2/manifests/1`, {
      method: 'HEAD',
      headers: { accept: MEDIA_TYPES.dockerManifest },
    });
    assert.equal(head.headers['content-type'], MEDIA_TYPES.dockerManifest);
    assert.equal(head.headers['docker-content-digest'], digest);
  });

  test('100 MiB layer builds in a few seconds', async (t) => {
    const started = Date.now();
    const img = await buildImage({ dir: join(work, 'big'), layers: [100 * 1024 * 1024], seed: 'big' });
    const ms = Date.now() - started;
    t.diagnostic(`100 MiB layer built in ${ms} ms`);
    assert.ok(ms < 10_000, `took ${ms} ms`);
    const [layer] = img.manifests[0].layers;
    assert.equal(await fileDigest(blobFile(img, layer.digest)), layer.digest);
    assert.ok(layer.size > 100 * 1024 * 1024 && layer.size < 101 * 1024 * 1024, `stored gzip size ${layer.size}`);
    await removeDir(img.layoutDir);
  });

  test('htpasswd registry demands the credentials', async () => {
    const secured = await startRegistry({ htpasswd: { username: 'alice', password: 's3cret' } });
    try {
      assert.equal((await get(`${secured.url}/v2/`)).status, 401);
      const basic = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;
      assert.equal((await get(`${secured.url}/v2/`, { headers: { authorization: basic } })).status, 200);
      await assert.rejects(pushImage(small, secured.host, 'test/small:1'), /unauthorized|authentication required/i);
      await pushImage(small, secured.host, 'test/small:1', { creds: 'alice:s3cret' });
      const raw = await inspectRaw(`docker://${secured.host}/test/small:1`, { creds: 'alice:s3cret' });
      assert.equal(sha256(raw), small.manifestDigest);
    } finally {
      await secured.stop();
    }
  });

  test('registry in pull-through proxy mode serves the upstream image', async () => {
    const mirror = await startRegistry({ config: { proxy: { remoteurl: registry.url } } });
    try {
      const raw = await inspectRaw(`docker://${mirror.host}/test/small:1`);
      assert.equal(sha256(raw), small.manifestDigest);
      const out = join(work, 'mirror-copy');
      await copyToDir(`docker://${mirror.host}/test/small:1`, out);
      assert.equal((await dirDigests(out)).get('manifest.json'), small.manifestDigest);
    } finally {
      await mirror.stop();
    }
    await assert.rejects(stat(mirror.rootDir), { code: 'ENOENT' });
  });

  test('a registry that exits during startup is reported with its log', async () => {
    // two storage drivers: distribution refuses the config and exits
    await assert.rejects(startRegistry({ config: { storage: { inmemory: {} } } }), /log tail:[\s\S]*storage/i);
  });

  describe('fault proxy', () => {
    let proxy: FaultProxy;
    const blob = () => small.manifests[0].layers[0];
    const blobUrl = () => `${proxy.url}/v2/test/small/blobs/${blob().digest}`;

    before(async () => {
      proxy = await startFaultProxy(registry.url);
    });
    after(async () => {
      await proxy?.stop();
    });

    test('forwards skopeo traffic and counts requests', async () => {
      proxy.reset();
      const raw = await inspectRaw(`docker://${proxy.host}/test/small:1`);
      assert.equal(sha256(raw), small.manifestDigest);
      assert.equal(proxy.count({ method: 'GET', path: /^\/v2\/test\/small\/manifests\/1$/ }), 1);
      assert.ok(proxy.count() >= 2, 'at least /v2/ ping and the manifest');
      assert.equal(proxy.requests.at(-1)?.status, 200);
    });

    test('status fault answers instead of upstream, for `times` requests', async () => {
      proxy.reset();
      proxy.setRules([
        { method: 'GET', path: /\/manifests\//, fault: { kind: 'status', status: 500, body: 'boom' }, times: 1 },
        { path: /\/blobs\//, fault: { kind: 'status', status: 429, headers: { 'retry-after': '7' } } },
      ]);
      const first = await get(`${proxy.url}/v2/test/small/manifests/1`);
      assert.equal(first.status, 500);
      assert.equal(first.body.toString(), 'boom');
      const second = await get(`${proxy.url}/v2/test/small/manifests/1`, { headers: { accept: MEDIA_TYPES.ociManifest } });
      assert.equal(second.status, 200);
      assert.equal(sha256(second.body), small.manifestDigest);
      for (let i = 0; i < 2; i++) {
        const limited = await get(blobUrl());
        assert.equal(limited.status, 429);
        assert.equal(limited.headers['retry-after'], '7');
      }
      assert.deepEqual(proxy.requests.map((r) => r.status), [500, 200, 429, 429]);
      assert.equal(proxy.count({ path: /\/manifests\// }), 2);
    });

    test('reset-after sends headers and exactly N bytes, then breaks the connection', async () => {
      proxy.reset();
      proxy.setRules([{ path: /\/blobs\//, fault: { kind: 'reset-after', bytes: 100 } }]);
      const res = await get(blobUrl());
      assert.equal(res.status, 200);
      assert.equal(Number(res.headers['content-length']), blob().size);
      assert.equal(res.body.length, 100);
      assert.ok(res.broken);
      const whole = await readFile(blobFile(small, blob().digest));
      assert.deepEqual(res.body, whole.subarray(0, 100));

      proxy.setRules([{ path: /\/blobs\//, fault: { kind: 'reset-after', bytes: 0 } }]);
      const empty = await get(blobUrl());
      assert.equal(empty.status, 200);
      assert.equal(empty.body.length, 0);
      assert.ok(empty.broken);
    });

    test('truncate: keepLength gives a short body; without it a clean short chunked body', async () => {
      proxy.reset();
      proxy.setRules([{ path: /\/blobs\//, fault: { kind: 'truncate', bytes: 300, keepLength: true }, times: 1 }]);
      const short = await get(blobUrl());
      assert.equal(Number(short.headers['content-length']), blob().size);
      assert.equal(short.body.length, 300);
      assert.ok(short.broken);

      proxy.setRules([{ path: /\/blobs\//, fault: { kind: 'truncate', bytes: 300, keepLength: false }, times: 1 }]);
      const clean = await get(blobUrl());
      assert.equal(clean.status, 200);
      assert.equal(clean.headers['content-length'], undefined);
      assert.equal(clean.headers['transfer-encoding'], 'chunked');
      assert.equal(clean.body.length, 300);
      assert.equal(clean.broken, false);

      const whole = await get(blobUrl()); // rules used up
      assert.equal(sha256(whole.body), blob().digest);
    });

    test('corrupt keeps the length but changes the bytes', async () => {
      proxy.setRules([{ path: /\/blobs\//, fault: { kind: 'corrupt' } }]);
      const res = await get(blobUrl());
      assert.equal(res.body.length, blob().size);
      assert.notEqual(sha256(res.body), blob().digest);
      proxy.clearRules();
    });

    test('close-before-headers, stall, delay and drip', async () => {
      proxy.reset();
      proxy.setRules([{ fault: { kind: 'close-before-headers' }, times: 1 }]);
      await assert.rejects(get(`${proxy.url}/v2/`), /socket hang up|ECONNRESET/);

      proxy.setRules([{ fault: { kind: 'stall' }, times: 1 }]);
      await assert.rejects(get(`${proxy.url}/v2/`, { timeoutMs: 300 }), /client timeout/);

      proxy.setRules([{ fault: { kind: 'delay', ms: 200 }, times: 1 }]);
      let started = Date.now();
      assert.equal((await get(`${proxy.url}/v2/`)).status, 200);
      assert.ok(Date.now() - started >= 190);

      proxy.setRules([{ fault: { kind: 'drip', bytesPerTick: 250, tickMs: 20 }, times: 1 }]);
      started = Date.now();
      const dripped = await get(blobUrl());
      assert.equal(sha256(dripped.body), blob().digest); // 4 ticks for 1000+ bytes
      assert.ok(Date.now() - started >= 60);
      assert.deepEqual(proxy.requests.map((r) => [r.fault, r.status]), [
        ['close-before-headers', 0],
        ['stall', 0],
        ['delay', 200],
        ['drip', 200],
      ]);
    });

    test('forwards method, query, body and Authorization, rewrites Host, passes redirects through', async () => {
      const echo = await startStandIn((req, res) => {
        if (req.url === '/redirect') {
          res.writeHead(307, { location: 'http://127.0.0.1:1/elsewhere' }).end();
          return;
        }
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }));
        });
      });
      const target = echo.host;
      const front = await startFaultProxy(`http://${target}`);
      try {
        const res = await get(`${front.url}/v2/x/blobs/uploads/?mount=a&from=b`, {
          method: 'POST',
          headers: { authorization: 'Bearer tok', 'content-type': 'text/plain' },
          body: 'payload',
        });
        const seen = JSON.parse(res.body.toString());
        assert.equal(seen.method, 'POST');
        assert.equal(seen.url, '/v2/x/blobs/uploads/?mount=a&from=b');
        assert.equal(seen.headers.authorization, 'Bearer tok');
        assert.equal(seen.headers.host, target);
        assert.equal(seen.body, 'payload');
        assert.equal(front.requests[0].headers.authorization, 'Bearer tok');

        const redirect = await get(`${front.url}/redirect`);
        assert.equal(redirect.status, 307);
        assert.equal(redirect.headers.location, 'http://127.0.0.1:1/elsewhere');
        assert.equal(front.count({ method: 'POST' }), 1);
        assert.equal(front.count({ path: /^\/redirect$/ }), 1);
      } finally {
        await front.stop();
        await echo.close();
      }
    });

    test('stop() closes open connections', async () => {
      const front = await startFaultProxy(registry.url);
      front.setRules([{ fault: { kind: 'stall' } }]);
      const pending = get(`${front.url}/v2/`);
      await waitFor(() => front.count() === 1, { what: 'the stalled request to arrive' });
      await front.stop();
      await assert.rejects(pending, /socket hang up|ECONNRESET/);
      await assert.rejects(get(`${front.url}/v2/`), /ECONNREFUSED/);
    });
  });
});
