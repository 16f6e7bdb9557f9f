// A second regcache process on the same storage directory (a rolling deploy, a `regcache serve` started by
// mistake, the CLI) must not remove the first one's in-flight downloads.
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { streamDigest } from '../support/digest.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { waitFor } from '../support/process.js';
import { freePort, startRegcache, startRegcacheProcess } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

describe('two processes on one storage directory', () => {
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let work: string;
  let img: BuiltImage;

  before(async () => {
    work = await makeTempDir('shared-storage-');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [4 * 1024 * 1024], seed: 'shared-storage' });
    await pushImage(img, upstream.host, 'team/shared:1');
    proxy = await startFaultProxy(upstream.url);
  });

  after(async () => {
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  it("starting a second server does not delete the first one's download in flight", async () => {
    const layer = img.blobs.reduce((a, b) => (b.size > a.size ? b : a));
    // ~4 MiB at 128 KiB per 25 ms: the download runs for about a second while the second server starts.
    proxy.setRules([{ method: 'GET', path: /\/blobs\//, fault: { kind: 'drip', bytesPerTick: 128 * 1024, tickMs: 25 } }]);
    const root = join(work, 'data');
    const first = await startRegcache({ upstreamUrl: proxy.url, root });
    let second: Awaited<ReturnType<typeof startRegcacheProcess>> | undefined;
    try {
      const pull = (async () => {
        const res = await request(`${first.url}/v2/team/shared/blobs/${layer.digest}`);
        return { status: res.statusCode, ...(await streamDigest(res.body)) };
      })();
      await waitFor(async () => (await readdir(join(root, '_uploads'))).length > 0, { what: 'the download has a temp file' });
      const port = await freePort();
      second = await startRegcacheProcess({
        port,
        configYaml: `version: 0.1\nstorage: { filesystem: { rootdirectory: ${root} } }\nhttp: { addr: 127.0.0.1:${port} }\nproxy: { remoteurl: ${proxy.url} }\n`,
      });
      const got = await pull;
      assert.deepEqual(got, { status: 200, digest: layer.digest, size: layer.size });
      assert.deepEqual(await first.app.storage.statBlob(layer.digest), { size: layer.size });
      assert.equal(proxy.count({ method: 'GET', path: /\/blobs\// }), 1, 'one upstream fetch');
    } finally {
      await second?.stop();
      await first.stop();
    }
  });
});
