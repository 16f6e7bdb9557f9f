// Graceful shutdown of the real process: SIGTERM stops accepting, lets an in-flight blob download finish within
// http.draintimeout, and discards downloads cut off by the deadline.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request, type IncomingMessage } from 'node:http';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { probeHttp, waitFor } from '../support/process.js';
import { freePort, startRegcache, startRegcacheProcess } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const LAYER = 4 * 1024 * 1024;

describe('graceful shutdown (SIGTERM)', () => {
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let work: string;
  let img: BuiltImage;

  before(async () => {
    work = await makeTempDir('shutdown-');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [LAYER], seed: 'drain' });
    await pushImage(img, upstream.host, 'drain/app:1');
    proxy = await startFaultProxy(upstream.url);
  });

  after(async () => {
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  async function start(drain: string, root: string) {
    const port = await freePort();
    const configYaml = [
      'version: 0.1',
      'log: { level: info, formatter: json }',
      `storage: { filesystem: { rootdirectory: ${root} } }`,
      `http: { addr: 127.0.0.1:${port}, draintimeout: ${drain} }`,
      `proxy: { remoteurl: ${proxy.url} }`,
    ].join('\n');
    return startRegcacheProcess({ configYaml, port });
  }

  /** GET the layer; resolves with the response once its first body bytes arrived. */
  function getLayer(url: string): Promise<{ res: IncomingMessage; body: Promise<{ bytes: number; digest: string; error?: Error }> }> {
    const layer = img.blobs[1]!;
    return new Promise((resolve, reject) => {
      request(`${url}/v2/drain/app/blobs/${layer.digest}`, (res) => {
        const hash = createHash('sha256');
        let bytes = 0;
        const body = new Promise<{ bytes: number; digest: string; error?: Error }>((done) => {
          res.on('data', (c: Buffer) => {
            if (bytes === 0) resolve({ res, body });
            bytes += c.length;
            hash.update(c);
          });
          res.on('end', () => done({ bytes, digest: `sha256:${hash.digest('hex')}` }));
          res.on('error', (error) => done({ bytes, digest: '', error }));
          res.on('aborted', () => done({ bytes, digest: '', error: new Error('aborted') }));
        });
      })
        .on('error', reject)
        .end();
    });
  }

  it('finishes an in-flight blob download, refuses new connections meanwhile, exits 0', async () => {
    const root = join(work, 'data-1');
    const rc = await start('20s', root);
    try {
      const layer = img.blobs[1]!;
      // A download of a few seconds: the proxy pauses 20 ms after every upstream chunk (tens of KiB).
      proxy.setRules([{ method: 'GET', path: new RegExp(layer.digest), fault: { kind: 'drip', bytesPerTick: 64 * 1024, tickMs: 20 } }]);
      const { body } = await getLayer(rc.url);
      process.kill(rc.proc.pid, 'SIGTERM');
      await waitFor(async () => (await probeHttp(`${rc.url}/v2/`)) === undefined, { timeoutMs: 5000, what: 'listener closed' });
      assert.equal(rc.proc.hasExited(), false, 'still draining while the download runs');
      const got = await body;
      assert.equal(got.error, undefined);
      assert.equal(got.bytes, layer.size);
      assert.equal(got.digest, layer.digest);
      const exit = await rc.proc.exited;
      assert.deepEqual(exit, { code: 0, signal: null }, await rc.proc.logTail());
      const hex = layer.digest.slice('sha256:'.length);
      assert.equal((await stat(join(root, 'blobs', 'sha256', hex.slice(0, 2), hex))).size, layer.size, 'blob committed');
      assert.match(await rc.proc.logTail(), /"msg":"stopped"/);
    } finally {
      proxy.clearRules();
      await rc.stop();
    }
  });

  it('after http.draintimeout cuts off a download, discards it cleanly (no partial blob, no temp file)', async () => {
    // Same close() path as SIGTERM, in-process to keep the suite quick.
    const cache = await startRegcache({ upstreamUrl: proxy.url, config: { http: { draintimeout: '300ms' } } });
    const layer = img.blobs[1]!;
    try {
      // Tens of seconds of download: far beyond the drain timeout.
      proxy.setRules([{ method: 'GET', path: new RegExp(layer.digest), fault: { kind: 'drip', bytesPerTick: 64 * 1024, tickMs: 250 } }]);
      const { body } = await getLayer(cache.url);
      const started = Date.now();
      await cache.app.close();
      assert.ok(Date.now() - started < 4000, 'close() waited for the download beyond the drain timeout');
      const got = await body;
      assert.ok(got.error || got.bytes < layer.size, 'client must not see a complete body');
      assert.deepEqual(await readdir(join(cache.root, '_uploads')), [], 'temp file of the cut-off download removed');
      assert.equal(await cache.app.storage.statBlob(layer.digest), null, 'no partial blob committed');
    } finally {
      proxy.clearRules();
      await cache.stop();
    }
  });
});
