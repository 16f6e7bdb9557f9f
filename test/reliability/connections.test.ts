// 1,000 concurrent connections of mixed warm requests against the real regcache process: no crash, no fd leak,
// memory does not grow from one burst to the next.
import assert from 'node:assert/strict';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { waitFor } from '../support/process.js';
import { freePort, startRegcacheProcess } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { assertHonest, request, type Outcome } from './support.js';

const CONNECTIONS = 1000;

const fdCount = async (pid: number) => (await readdir(`/proc/${pid}/fd`)).length;

// Preloaded into the regcache process: on SIGUSR2, collect garbage and write process.memoryUsage() to a file,
// so that memory is compared after GC rather than as RSS, which V8 returns to the OS lazily.
const PRELOAD = `
import v8 from 'node:v8';
import vm from 'node:vm';
import { writeFileSync } from 'node:fs';
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
process.on('SIGUSR2', () => {
  gc();
  gc();
  writeFileSync(process.env.REGCACHE_TEST_MEMFILE, JSON.stringify(process.memoryUsage()));
});
`;
const MiB = 1024 * 1024;

describe(`${CONNECTIONS} concurrent connections`, () => {
  let upstream: RunningRegistry;
  let work: string;
  let img: BuiltImage;
  let cache: Awaited<ReturnType<typeof startRegcacheProcess>>;
  let memFile: string;

  /** heap + external bytes (and RSS) of the regcache process after a full GC */
  async function memoryAfterGc(): Promise<NodeJS.MemoryUsage> {
    await rm(memFile, { force: true });
    process.kill(cache.proc.pid, 'SIGUSR2');
    let text = '';
    await waitFor(async () => {
      text = await readFile(memFile, 'utf8').catch(() => '');
      return text.endsWith('}');
    }, { what: 'memory report' });
    return JSON.parse(text) as NodeJS.MemoryUsage;
  }

  before(async () => {
    work = await makeTempDir('reliability-conns-');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [256 * 1024, 4096, 20_000], seed: 'conns' });
    await pushImage(img, upstream.host, 'team/app:1');
    const preload = join(work, 'memreport.mjs');
    await writeFile(preload, PRELOAD);
    memFile = join(work, 'memory.json');
    const port = await freePort();
    cache = await startRegcacheProcess({
      port,
      env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${preload}`, REGCACHE_TEST_MEMFILE: memFile },
      configYaml: stringify({
        version: 0.1,
        log: { level: 'warn', formatter: 'json' },
        storage: { filesystem: { rootdirectory: join(work, 'data') } },
        http: { addr: `127.0.0.1:${port}` },
        proxy: { remoteurl: upstream.url },
        regcache: { freshness: '1h' },
      }),
    });
  });

  after(async () => {
    await cache?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  it('mixed warm requests: all answered correctly, fds and memory back near baseline', async (t) => {
    type Layer = BuiltImage['manifests'][number]['layers'][number];
    const [big, small, mid] = img.manifests[0]!.layers as [Layer, Layer, Layer];
    const manifestBytes = await readFile(join(img.layoutDir, 'blobs', 'sha256', img.manifestDigest.slice(7)));
    const manifest = { digest: img.manifestDigest, size: manifestBytes.length };
    const accept = { accept: img.mediaType };
    const u = cache.url;
    // each kind: a request and how to check its outcome
    const kinds: Array<{ go: () => Promise<Outcome>; check: (o: Outcome) => void }> = [
      { go: () => request(`${u}/v2/team/app/manifests/1`, { headers: accept }), check: (o) => assert.ok(assertHonest(o, manifest, 'tag'), 'manifest by tag') },
      { go: () => request(`${u}/v2/team/app/manifests/${img.manifestDigest}`, { headers: accept }), check: (o) => assert.ok(assertHonest(o, manifest, 'digest'), 'manifest by digest') },
      { go: () => request(`${u}/v2/team/app/blobs/${small.digest}`), check: (o) => assert.ok(assertHonest(o, small, 'small blob'), 'small blob') },
      { go: () => request(`${u}/v2/team/app/blobs/${mid.digest}`), check: (o) => assert.ok(assertHonest(o, mid, 'blob'), 'blob') },
      { go: () => request(`${u}/v2/team/app/blobs/${big.digest}`), check: (o) => assert.ok(assertHonest(o, big, 'big blob'), 'big blob') },
      {
        go: () => request(`${u}/v2/team/app/blobs/${big.digest}`, { method: 'HEAD' }),
        check: (o) => {
          assert.equal(o.status, 200);
          assert.equal(o.headers['content-length'], String(big.size));
        },
      },
      {
        go: () => request(`${u}/v2/team/app/blobs/${big.digest}`, { headers: { range: 'bytes=1000-1999' } }),
        check: (o) => {
          assert.equal(o.status, 206);
          assert.equal(o.body.length, 1000);
        },
      },
      { go: () => request(`${u}/v2/team/app/tags/list`), check: (o) => assert.deepEqual(JSON.parse(o.body.toString()).tags, ['1']) },
      { go: () => request(`${u}/v2/`), check: (o) => assert.equal(o.status, 200) },
      // clients that hang up mid-body
      {
        go: () => request(`${u}/v2/team/app/blobs/${big.digest}`, { abortAfterBytes: 1 }),
        check: (o) => assert.ok(o.status === 200 || o.status === 0, `hung-up client: status ${o.status}`),
      },
    ];
    const t0 = Date.now();
    // warm everything
    for (const k of kinds.slice(0, 8)) k.check(await k.go());
    await waitFor(async () => (await fdCount(cache.proc.pid)) > 0);

    t.diagnostic(`warm-up ${Date.now() - t0} ms`);
    const pid = cache.proc.pid;
    const fds0 = await fdCount(pid);
    const mem0 = await memoryAfterGc();
    const mem: NodeJS.MemoryUsage[] = [];
    for (let burst = 0; burst < 2; burst++) {
      const t0 = Date.now();
      const outcomes = await Promise.all(
        Array.from({ length: CONNECTIONS }, async (_, i) => {
          const k = kinds[i % kinds.length]!;
          return { k, o: await k.go() };
        }),
      );
      t.diagnostic(`burst ${burst}: ${CONNECTIONS} requests in ${Date.now() - t0} ms`);
      for (const { k, o } of outcomes) k.check(o);
      assert.ok(!cache.proc.hasExited(), 'regcache crashed');
      // the server closes its side of every connection (clients sent Connection: close)
      await waitFor(async () => (await fdCount(pid)) <= fds0 + 5, {
        timeoutMs: 15_000,
        what: `fds back to ~${fds0} (now ${await fdCount(pid)})`,
      });
      // Memory, not just its growth: bounded caches (e.g. the server's read-buffer pool) are dropped
      // once idle, so live memory must come back near where it started.
      let m = await memoryAfterGc();
      await waitFor(
        async () => {
          m = await memoryAfterGc();
          return m.heapUsed + m.external - (mem0.heapUsed + mem0.external) < 4 * MiB;
        },
        { timeoutMs: 15_000, intervalMs: 250, what: 'heap+external back near baseline' },
      ).catch(() => {});
      mem.push(m);
    }
    const show = (k: keyof NodeJS.MemoryUsage) => [mem0, ...mem].map((m) => (m[k] / MiB).toFixed(1)).join(' → ');
    t.diagnostic(`fds: ${fds0} → ${await fdCount(pid)}; after GC, MiB: heapUsed ${show('heapUsed')}; external ${show('external')}; rss ${show('rss')}`);
    const live = (m: NodeJS.MemoryUsage) => m.heapUsed + m.external;
    assert.ok(live(mem[1]!) - live(mem0) < 16 * MiB, `heap+external not back near baseline: heapUsed ${show('heapUsed')}, external ${show('external')}`);
    assert.ok(live(mem[1]!) - live(mem[0]!) < 8 * MiB, `heap+external grows burst after burst: heapUsed ${show('heapUsed')}`);
    assert.equal((await request(`${u}/v2/`)).status, 200);
  });
});
