// One global memory budget for response buffers: 1,000 slow clients of a 64 MiB blob do not cost a megabyte
// or two each. Real server process, raw sockets that read nothing.
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { streamDigest } from '../support/digest.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { rssMb, waitFor } from '../support/process.js';
import { freePort, startRegcacheProcess } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const CLIENTS = 1000;
const BLOB = 64 * 1024 * 1024;
/** docs/reliability.md: response buffers are bounded by 256 MiB; the process's own baseline and per-connection state come on top. */
const RSS_BOUND_MB = 600;

describe('1,000 slow readers of a 64 MiB blob', () => {
  let upstream: RunningRegistry;
  let work: string;
  let img: BuiltImage;

  before(async () => {
    work = await makeTempDir('slow-');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [BLOB], seed: 'slow' });
    await pushImage(img, upstream.host, 'team/big:1');
  });

  after(async () => {
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  it('reading steadily (1 MiB/s each), they leave no growing heap behind', async (t) => {
    const port = await freePort();
    const debugPort = await freePort();
    const server = await startRegcacheProcess({
      port,
      configYaml: `version: 0.1\nlog: { level: warn, accesslog: { disabled: true } }\nstorage: { filesystem: { rootdirectory: ${join(work, 'data-steady')} } }\nhttp: { addr: 127.0.0.1:${port}, debug: { addr: 127.0.0.1:${debugPort} } }\nproxy: { remoteurl: ${upstream.url} }\n`,
    });
    const sockets: net.Socket[] = [];
    try {
      const layer = img.manifests[0]!.layers[0]!;
      const path = `/v2/team/big/blobs/${layer.digest}`;
      await (await request(`http://127.0.0.1:${port}${path}`)).body.dump();
      const heapMb = async () =>
        ((await (await request(`http://127.0.0.1:${debugPort}/debug/vars`)).body.json()) as { memstats: { HeapAlloc: number } }).memstats.HeapAlloc / 2 ** 20;
      let received = 0;
      for (let i = 0; i < CLIENTS; i++) {
        const s = net.connect({ port, host: '127.0.0.1' });
        s.on('error', () => {});
        const started = Date.now();
        let got = 0;
        s.on('data', (d: Buffer) => {
          got += d.length;
          received += d.length;
          // 1 MiB/s: pause for as long as this client is ahead of that rate
          const ahead = got / 1024 - (Date.now() - started);
          if (ahead > 1) {
            s.pause();
            setTimeout(() => s.resume(), ahead);
          }
        });
        s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
        sockets.push(s);
      }
      // Samples of the server's heap while 1,000 clients read, until 12 GiB went out (however long that takes
      // on a busy machine): it must not climb with the chunks sent. Before the fix it grew ~5 MB per GiB.
      const target = 12 * 2 ** 30;
      const samples: number[] = [];
      await waitFor(
        async () => {
          samples.push(await heapMb());
          return received >= target && samples.length >= 6;
        },
        { timeoutMs: 240_000, intervalMs: 2000, what: '12 GiB sent to the slow clients' },
      );
      t.diagnostic(JSON.stringify({ clients: CLIENTS, receivedMb: Math.round(received / 2 ** 20), heapMb: samples.map(Math.round) }));
      const early = Math.min(...samples.slice(0, 3));
      const late = Math.max(...samples.slice(-3));
      assert.ok(late - early < 40, `heap grew from ${early.toFixed(0)} to ${late.toFixed(0)} MB while clients read: ${samples.map(Math.round).join(', ')}`);
    } finally {
      for (const s of sockets) s.destroy();
      await server.stop();
    }
  });

  it('keep the server within its memory bound, and it serves normally once they leave', async (t) => {
    const port = await freePort();
    const server = await startRegcacheProcess({
      port,
      configYaml: `version: 0.1\nlog: { level: warn, accesslog: { disabled: true } }\nstorage: { filesystem: { rootdirectory: ${join(work, 'data')} } }\nhttp: { addr: 127.0.0.1:${port} }\nproxy: { remoteurl: ${upstream.url} }\n`,
    });
    const sockets: net.Socket[] = [];
    try {
      const layer = img.manifests[0]!.layers[0]!;
      const path = `/v2/team/big/blobs/${layer.digest}`;
      const warm = await request(`http://127.0.0.1:${port}${path}`);
      assert.deepEqual(await streamDigest(warm.body), { digest: layer.digest, size: layer.size }, 'cached');
      const baseline = await rssMb(server.proc.pid);

      let headers = 0;
      for (let i = 0; i < CLIENTS; i++) {
        const s = net.connect({ port, host: '127.0.0.1' });
        s.on('error', () => {});
        // Read the status line, then nothing more: a client that stalls.
        s.once('data', (d) => {
          if (String(d).startsWith('HTTP/1.1 200')) headers++;
          s.pause();
        });
        s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
        sockets.push(s);
      }
      await waitFor(() => headers === CLIENTS, { timeoutMs: 60_000, what: 'every client got its response headers' });
      // The server writes until every socket (or the budget) is full; its RSS then stops growing.
      let last = 0;
      let peak = 0;
      await waitFor(
        async () => {
          const now = await rssMb(server.proc.pid);
          peak = Math.max(peak, now);
          const settled = Math.abs(now - last) < 2;
          last = now;
          return settled;
        },
        { timeoutMs: 60_000, intervalMs: 500, what: 'server RSS settles' },
      );
      t.diagnostic(JSON.stringify({ clients: CLIENTS, baselineMb: Math.round(baseline), settledMb: Math.round(last), peakMb: Math.round(peak) }));
      assert.ok(peak < RSS_BOUND_MB, `server RSS ${Math.round(peak)} MB with ${CLIENTS} stalled clients (bound ${RSS_BOUND_MB} MB)`);

      for (const s of sockets) s.destroy();
      const after = await request(`http://127.0.0.1:${port}${path}`);
      assert.deepEqual(await streamDigest(after.body), { digest: layer.digest, size: layer.size }, 'buffers came back: a full GET works');
    } finally {
      for (const s of sockets) s.destroy();
      await server.stop();
    }
  });
});
