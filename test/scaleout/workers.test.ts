// regcache.workers: several processes of one server behind one port, coordinated over IPC so that they behave
// as one process: one upstream GET per blob, one index that knows everything, one sweeper, metrics of all of
// them, a dead worker replaced, a clean stop. The same pull tests also run with workers = 2 (test/workers/).
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { isAlive } from '../../src/util/owner.js';
import { streamDigest } from '../support/digest.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { processTree, waitFor, waitForLog, type ManagedProcess } from '../support/process.js';
import { freePort } from '../support/ports.js';
import { startRegcacheProcess } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

/** startRegcacheProcess returns once /v2/ answers, which worker 0 does before the others are up. */
async function allWorkersReady(server: { proc: Pick<ManagedProcess, 'logTail'> }): Promise<void> {
  await waitForLog(server.proc, '"all workers ready"', { timeoutMs: 60_000 });
}

/** A GET on a connection of its own: the cluster hands each new connection to the next worker. */
async function getFresh(url: string): Promise<{ status: number; digest: string; bytes: number }> {
  const agent = new Agent({ connections: 1 });
  try {
    const res = await request(url, { dispatcher: agent, headersTimeout: 20_000, bodyTimeout: 20_000 });
    const { digest, size } = await streamDigest(res.body);
    return { status: res.statusCode, digest, bytes: size };
  } finally {
    await agent.close();
  }
}

/** The workers of a server: its node processes running worker.ts (not, say, tsx's esbuild service). */
async function childPids(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const p of processTree(pid).slice(1)) if ((await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')).includes('worker.')) out.push(p);
  return out;
}

async function metricSum(debugUrl: string, name: string, labels: RegExp = /.*/): Promise<number> {
  const text = await (await fetch(`${debugUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^(\w+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (m && m[1] === name && labels.test(m[2] ?? '')) sum += Number(m[3]);
  }
  return sum;
}

/** Blob files in filesystem storage (`<root>/blobs/sha256/<xx>/<hex>`). */
async function blobFiles(root: string): Promise<number> {
  const entries = await readdir(join(root, 'blobs'), { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile() && /^[0-9a-f]{64}$/.test(e.name)).length;
}

describe('regcache.workers config', () => {
  const parse = (yaml: string) => parseConfig(yaml, {}, 'test');
  it('accepts a count and auto (one per CPU), and says what is wrong otherwise', async () => {
    assert.equal(parse('regcache: { workers: 2 }').config.regcache.workers, 2);
    assert.equal(parse('version: 0.1').config.regcache.workers, 1);
    const { availableParallelism } = await import('node:os');
    assert.equal(parse('regcache: { workers: auto }').config.regcache.workers, availableParallelism());
    assert.equal(parseConfig(undefined, { REGISTRY_REGCACHE_WORKERS: '3' }).config.regcache.workers, 3);
    for (const bad of ['0', 'many', '1.5', '65']) {
      assert.throws(() => parse(`regcache: { workers: ${bad} }`), (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.message, /regcache\.workers.*expected a number of processes from 1 to 64, or auto/);
        return true;
      });
    }
    assert.throws(() => parse('storage: { inmemory: {} }\nregcache: { workers: 2 }'), /regcache\.workers.*inmemory storage is private to each process/);
    const acme = 'http: { tls: { letsencrypt: { cachefile: /tmp/le.json, email: a@example.com, hosts: [mirror.example.com] } } }';
    assert.throws(() => parse(`${acme}\nregcache: { workers: 2 }`), /regcache\.workers.*cannot share http\.tls\.letsencrypt/);
    assert.equal(parse(`${acme}\nregcache: { workers: 1 }`).config.regcache.workers, 1);
  });
});

describe('regcache serve with 2 workers (real CLI process)', () => {
  let work: string;
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let img: BuiltImage;
  let big: BuiltImage;
  let server: Awaited<ReturnType<typeof startRegcacheProcess>>;
  let url: string;
  let debugUrl: string;
  let root: string;

  before(async () => {
    work = await makeTempDir('workers-');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [300_000, 200_000, 100_000, 50_000], seed: 'workers' });
    big = await buildImage({ dir: join(work, 'big'), layers: [24 * 1024 * 1024], seed: 'workers-big' });
    await pushImage(img, upstream.host, 'team/app:1');
    await pushImage(big, upstream.host, 'team/big:1');
    proxy = await startFaultProxy(upstream.url);
    const [port, debugPort] = [await freePort(), await freePort()];
    root = join(work, 'data');
    server = await startRegcacheProcess({
      port,
      configYaml: [
        'version: 0.1',
        'log: { level: info, formatter: json }',
        `storage: { filesystem: { rootdirectory: ${root} } }`,
        `http: { addr: 127.0.0.1:${port}, draintimeout: 5s, debug: { addr: 127.0.0.1:${debugPort}, prometheus: { enabled: true } } }`,
        `proxy: { remoteurl: ${proxy.url} }`,
        'regcache: { workers: 2 }',
      ].join('\n'),
    });
    await allWorkersReady(server);
    url = server.url;
    debugUrl = `http://127.0.0.1:${debugPort}`;
  });

  after(async () => {
    await server?.stop();
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  it('runs two workers under one primary', async () => {
    assert.equal((await childPids(server.proc.pid)).length, 2);
  });

  it('8 clients of one uncached blob on both workers → 1 upstream GET, 8 identical bodies', async () => {
    const layer = big.manifests[0]!.layers[0]!;
    proxy.reset();
    // A slow upstream body: every client asks while the first fetch runs.
    proxy.setRules([{ method: 'GET', path: new RegExp(layer.digest), fault: { kind: 'drip', bytesPerTick: 512 * 1024, tickMs: 20 } }]);
    const results = await Promise.all(Array.from({ length: 8 }, () => getFresh(`${url}/v2/team/big/blobs/${layer.digest}`)));
    for (const r of results) assert.deepEqual(r, { status: 200, digest: layer.digest, bytes: layer.size });
    assert.equal(proxy.count({ method: 'GET', path: /\/blobs\// }), 1);
    proxy.setRules([]);
    const log = await server.proc.logTail(1 << 20);
    const workersServing = new Set([...log.matchAll(/"worker":(\d+)[^\n]*"path":"\/v2\/team\/big\/blobs\//g)].map((m) => m[1]));
    assert.deepEqual([...workersServing].sort(), ['0', '1'], 'the requests were spread over both workers');
  });

  it('metrics and /debug/vars add up every worker; the index knows what any worker stored', async () => {
    const before = await metricSum(debugUrl, 'regcache_http_requests_total', /route="blobs"/);
    const layers = img.manifests[0]!.layers;
    for (const l of layers) assert.deepEqual(await getFresh(`${url}/v2/team/app/blobs/${l.digest}`), { status: 200, digest: l.digest, bytes: l.size });
    assert.equal((await metricSum(debugUrl, 'regcache_http_requests_total', /route="blobs"/)) - before, layers.length);
    const vars = (await (await fetch(`${debugUrl}/debug/vars`)).json()) as { regcache: { cache: { blobs: number } }; registry: { proxy: { blobs: { Requests: number } } } };
    // 4 layers + the big one, fetched by whichever worker got the connection
    assert.equal(vars.regcache.cache.blobs, layers.length + 1);
    assert.equal(vars.registry.proxy.blobs.Requests, layers.length + 8);
    assert.equal(await metricSum(debugUrl, 'regcache_cache_blobs'), layers.length + 1, 'the cache size is not counted once per worker');
  });

  it('a dead worker is replaced; worker 0 comes back with the index, the debug listener and the merged counters', async () => {
    const log = await server.proc.logTail(1 << 20);
    const worker0 = Number([...log.matchAll(/"worker":0,"pid":(\d+),"msg":"worker ready"/g)].at(-1)![1]);
    const other = (await childPids(server.proc.pid)).find((p) => p !== worker0)!;
    assert.ok(worker0 > 0 && other > 0);
    process.kill(worker0, 'SIGKILL');
    await waitFor(async () => {
      const now = await childPids(server.proc.pid);
      return now.length === 2 && !now.includes(worker0);
    }, { timeoutMs: 30_000, what: 'a new worker 0' });
    assert.ok((await childPids(server.proc.pid)).includes(other), 'the other worker kept running');
    await waitFor(async () => (await fetch(`${debugUrl}/debug/vars`).catch(() => undefined))?.status === 200, { timeoutMs: 30_000, what: 'the debug listener' });
    const l = img.manifests[0]!.layers[0]!;
    for (let i = 0; i < 4; i++) assert.equal((await getFresh(`${url}/v2/team/app/blobs/${l.digest}`)).status, 200);
    const vars = (await (await fetch(`${debugUrl}/debug/vars`)).json()) as { regcache: { cache: { blobs: number } } };
    assert.equal(vars.regcache.cache.blobs, img.manifests[0]!.layers.length + 1, 'the new worker 0 owns the index with everything in it');
    assert.match(await server.proc.logTail(1 << 20), /worker exited unexpectedly: starting a new one/);
  });

  it('SIGTERM stops every worker and the primary with exit code 0', async () => {
    const pids = await childPids(server.proc.pid);
    process.kill(server.proc.pid, 'SIGTERM');
    assert.deepEqual(await server.proc.exited, { code: 0, signal: null });
    for (const pid of pids) await waitFor(() => !isAlive(pid), { timeoutMs: 10_000 });
  });
});

describe('one sweeper among workers', () => {
  it('evicts down to regcache.cache.maxsize when both workers filled the cache', async () => {
    const work = await makeTempDir('workers-evict-');
    const upstream = await startRegistry();
    try {
      const images: BuiltImage[] = [];
      for (let i = 0; i < 4; i++) {
        const im = await buildImage({ dir: join(work, `img${i}`), layers: [1024 * 1024], seed: `evict-${i}` });
        await pushImage(im, upstream.host, `team/e${i}:1`);
        images.push(im);
      }
      const port = await freePort();
      const root = join(work, 'data');
      const server = await startRegcacheProcess({
        port,
        configYaml: [
          'log: { level: info, formatter: json }',
          `storage: { filesystem: { rootdirectory: ${root} } }`,
          `http: { addr: 127.0.0.1:${port}, draintimeout: 5s }`,
          `proxy: { remoteurl: ${upstream.url} }`,
          'regcache: { workers: 2, cache: { maxsize: 2621440, lowwatermark: 0.5 } }',
        ].join('\n'),
      });
      try {
        await allWorkersReady(server);
        for (const [i, im] of images.entries()) {
          for (const l of im.manifests[0]!.layers) assert.equal((await getFresh(`${server.url}/v2/team/e${i}/blobs/${l.digest}`)).status, 200);
        }
        // 4 MiB stored against a 2.5 MiB cap: the sweeping worker evicts down to the low-water mark (1.25 MiB)
        // whenever the cache is over the cap, so it ends with at most 2 of the 1 MiB layers (when the last one
        // arrived after a sweep), whichever worker fetched them
        await waitFor(async () => (await blobFiles(root)) <= 2, { timeoutMs: 30_000, what: 'eviction' });
        const sweeps = [...(await server.proc.logTail(1 << 20)).matchAll(/"worker":(\d+)[^\n]*"msg":"cache sweep"/g)].map((m) => m[1]);
        assert.ok(sweeps.length > 0);
        assert.deepEqual(new Set(sweeps), new Set(['0']), 'only the worker owning the index sweeps');
        assert.ok((await stat(join(root, '_metadata'))).isDirectory());
      } catch (e) {
        throw new Error(`${(e as Error).message}\n${await server.proc.logTail(64 * 1024)}`, { cause: e });
      } finally {
        await server.stop();
      }
    } finally {
      await upstream.stop();
      await removeDir(work);
    }
  });
});
