// kill -9 of the real regcache process during concurrent cold downloads, then a restart on the same storage.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { waitFor } from '../support/process.js';
import { freePort, startRegcacheProcess } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { copyToDir, dirDigests } from '../support/skopeo.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { assertHonest, assertStoreConsistent, fileSize, listFiles, request } from './support.js';

describe('crash (kill -9) during downloads', () => {
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let work: string;
  let img: BuiltImage;

  before(async () => {
    work = await makeTempDir('reliability-crash-');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [2 << 20, 2 << 20, 2 << 20, 2 << 20], seed: 'crash' });
    await pushImage(img, upstream.host, 'team/crash:1');
    proxy = await startFaultProxy(upstream.url);
  });

  after(async () => {
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  const configYaml = (root: string, port: number) =>
    stringify({
      version: 0.1,
      log: { level: 'info', formatter: 'json' },
      storage: { filesystem: { rootdirectory: root } },
      http: { addr: `127.0.0.1:${port}` },
      proxy: { remoteurl: proxy.url },
      regcache: { timeouts: { connect: '1s', headers: '2s', idle: '5s' } },
    });

  it('no temp file is visible as a blob; orphans are removed at startup; the cache stays consistent; pulls then succeed', async () => {
    const root = join(work, 'data');
    const layers = img.manifests[0]!.layers;
    proxy.reset();
    // slow every blob body so that all four downloads are in flight when the process dies
    proxy.setRules([{ method: 'GET', path: /\/blobs\//, fault: { kind: 'drip', bytesPerTick: 32 * 1024, tickMs: 50 } }]);

    const port1 = await freePort();
    const first = await startRegcacheProcess({ configYaml: configYaml(root, port1), port: port1 });
    let clients: Promise<Awaited<ReturnType<typeof request>>>[] = [];
    try {
      clients = layers.map((l) => request(`${first.url}/v2/team/crash/blobs/${l.digest}`));
      // all four downloads have written something to their temp files
      await waitFor(
        async () => {
          const temps = await listFiles(join(root, '_uploads'));
          if (temps.length < 4) return false;
          const sizes = await Promise.all(temps.map((t) => fileSize(join(root, '_uploads', t)).catch(() => 0)));
          return sizes.every((s) => s >= 128 * 1024);
        },
        { timeoutMs: 20_000, what: 'four downloads in flight' },
      );
      process.kill(first.proc.pid, 'SIGKILL');
      const exit = await first.proc.exited;
      assert.equal(exit.signal, 'SIGKILL');
    } finally {
      await first.stop();
    }

    // every client saw an aborted transfer, never a complete-looking body
    for (const [i, o] of (await Promise.all(clients)).entries()) {
      assert.equal(assertHonest(o, layers[i]!, `client ${i}`), false, `client ${i} completed although the server was killed`);
      assert.ok(o.body.length < layers[i]!.size, `client ${i} received the whole blob`);
    }
    const orphans = await listFiles(join(root, '_uploads'));
    assert.equal(orphans.length, 4, `orphan temp files: ${orphans.join(', ')}`);
    assert.deepEqual(await assertStoreConsistent(root), [], 'no blob may be visible after the crash');

    proxy.clearRules();
    const port2 = await freePort();
    const second = await startRegcacheProcess({ configYaml: configYaml(root, port2), port: port2 });
    try {
      assert.deepEqual(await listFiles(join(root, '_uploads')), [], 'orphans cleaned at startup');
      const log = await second.proc.logTail(64 * 1024);
      assert.match(log, /"removed":4[,}].*leftovers|leftovers.*"removed":4[,}]/, 'cleanup is logged with the count');

      const dest = join(work, 'pulled');
      await copyToDir(`docker://127.0.0.1:${port2}/team/crash:1`, dest);
      const pulled = new Set((await dirDigests(dest)).values());
      for (const l of layers) assert.ok(pulled.has(l.digest), `layer ${l.digest} pulled`);
      for (const l of layers) assert.equal(assertHonest(await request(`${second.url}/v2/team/crash/blobs/${l.digest}`), l, 'warm'), true, 'served after the restart');
      const stored = await assertStoreConsistent(root);
      for (const l of layers) assert.ok(stored.includes(l.digest), 'layer cached after restart');
      assert.deepEqual(await listFiles(join(root, '_uploads')), []);
    } finally {
      await second.stop();
    }
  });
});
