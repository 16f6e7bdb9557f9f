// `regcache status` against a running server (its debug listener) and a stopped cache directory, and
// `regcache cache warm --json`: the real CLI process, a real upstream registry, real pulls.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { runCli, startRegcache, type RunningRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { copyToDir } from '../support/skopeo.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { scrape, value } from '../observability/prom.js';

describe('regcache status and cache warm --json', () => {
  let work: string;
  let upstream: RunningRegistry;
  let cache: RunningRegcache | undefined;
  let img: BuiltImage;
  let other: BuiltImage;
  let root: string;

  before(async () => {
    work = await makeTempDir('status-');
    root = join(work, 'data');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [30_000, 10_000], seed: 'status' });
    other = await buildImage({ dir: join(work, 'other'), layers: [20_000], seed: 'status-other' });
    await pushImage(img, upstream.host, 'library/alpine:3.20');
    await pushImage(other, upstream.host, 'team/tool:1');
    cache = await startRegcache({
      upstreamUrl: upstream.url,
      root,
      config: {
        http: { debug: { addr: '127.0.0.1:0', prometheus: { enabled: true, path: '/metrics' } } },
        regcache: { cache: { maxsize: '1GiB' }, dashboard: { egressprice: 0.12, currency: 'EUR' } },
      },
    });
  });

  after(async () => {
    await cache?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  it('summarises a running server: the same numbers as /metrics', async () => {
    await copyToDir(`docker://${cache!.host}/library/alpine:3.20`, join(work, 'p1'));
    await copyToDir(`docker://${cache!.host}/library/alpine:3.20`, join(work, 'p2'));
    const m = await scrape(`${cache!.app.debugUrl}/metrics`);
    const r = await runCli(['status', '--url', cache!.app.debugUrl!, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as {
      source: { server: string };
      listing: { totalBytes: number; repos: Array<{ repo: string }> };
      vars: { requests: { hit: number }; servedBytes: { cache: number }; savings: { currency: string; pricePerGB: number } };
    };
    assert.equal(j.source.server, cache!.app.debugUrl);
    assert.equal(j.listing.totalBytes, value(m, 'regcache_cache_size_bytes'));
    assert.equal(j.vars.requests.hit, value(m, 'regcache_cache_requests_total', { result: 'hit' }));
    assert.equal(j.vars.servedBytes.cache, value(m, 'regcache_served_bytes_total', { source: 'cache' }));
    assert.deepEqual(j.listing.repos.map((x) => x.repo), ['library/alpine']);
    assert.deepEqual([j.vars.savings.currency, j.vars.savings.pricePerGB], ['EUR', 0.12]);

    const text = await runCli(['status', '--url', cache!.app.debugUrl!]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^server +http:\/\/127\.0\.0\.1:\d+ \(running\), storage healthy$/m);
    assert.match(text.stdout, /^cache +\S+ KiB of 1\.00 GiB \(0\.0%\), evicts down to 90%, 4 blobs, 1 repositories$/m);
    assert.match(text.stdout, /^hit ratio +50\.0% \(4 hits, 4 misses/m);
    assert.match(text.stdout, /^upstream +127\.0\.0\.1:\d+: up, /m);
    assert.match(text.stdout, /^repository +127\.0\.0\.1:\d+\/library\/alpine /m);
    assert.ok(text.stdout.split('\n').length < 25, 'one screen');
  });

  it('cache warm --json prints one JSON object per image; plain lines without a TTY', async () => {
    const r = await runCli(['cache', 'warm', '--mirror', cache!.url, '--json', 'team/tool:1']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { image: string; bytesDone: number; bytesTotal: number; blobsDone: number });
    assert.equal(lines.length, 1);
    const blobBytes = other.blobs.reduce((s, b) => s + b.size, 0);
    assert.deepEqual({ ...lines[0], image: lines[0]!.image.replace(/^.*\//, '') }, { image: 'tool:1', blobsTotal: other.blobs.length, blobsDone: other.blobs.length, bytesTotal: blobBytes, bytesDone: blobBytes });
    assert.equal(r.stderr, '', 'no progress bar in --json mode');
    const plain = await runCli(['cache', 'warm', '--mirror', cache!.url, 'library/alpine:3.20']);
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch(plain.stderr, /\r|\x1b/, 'no terminal control codes without a TTY');
    const n = img.blobs.length;
    assert.match(plain.stderr, new RegExp(`library/alpine:3\\.20 \\[#+\\] .* layers ${n}/${n}\n$`));
  });

  it('summarises a stopped cache straight from its storage', async () => {
    await cache!.stop();
    cache = undefined;
    const file = join(work, 'config.yml');
    await writeFile(file, `version: 0.1\nstorage: { filesystem: { rootdirectory: ${root} } }\nproxy: { remoteurl: ${upstream.url} }\nregcache: { cache: { maxsize: 1GiB } }\n`);
    const r = await runCli(['status', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^server +not running; read from storage ${root}$`, 'm'));
    const blobs = img.blobs.length + other.blobs.length + 2; // and the two manifests
    assert.match(r.stdout, new RegExp(`^cache +\\S+ KiB of 1\\.00 GiB \\(0\\.0%\\), ${blobs} blobs, 2 repositories$`, 'm'));
    assert.match(r.stdout, /library\/alpine/);
    assert.match(r.stdout, /team\/tool/);
    const j = JSON.parse((await runCli(['status', '--config', file, '--json'])).stdout) as { listing: { repos: unknown[] }; vars?: unknown };
    assert.equal(j.listing.repos.length, 2);
    assert.equal(j.vars, undefined);
  });
});
