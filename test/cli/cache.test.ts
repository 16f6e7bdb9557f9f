// `regcache cache ...` as operators run it: against a running server (admin API on the debug listener) and
// against a stopped one (storage directly); kill -9 does not corrupt the cache.
import assert from 'node:assert/strict';
import { open, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildImage, buildMultiArchImage, pushImage, type BuiltImage } from '../support/images.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { freePort, startRegcacheProcess, runCli } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { copyToDir } from '../support/skopeo.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const cli = runCli;

describe('regcache cache CLI', () => {
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let work: string;
  let root: string;
  let app: BuiltImage;
  let other: BuiltImage;
  let multi: BuiltImage;
  let port: number;
  let debugPort: number;
  let configYaml: string;

  before(async () => {
    work = await makeTempDir('cli-cache-');
    root = join(work, 'data');
    upstream = await startRegistry();
    app = await buildImage({ dir: join(work, 'app'), layers: [20_000, 30_000], seed: 'cli-app' });
    other = await buildImage({ dir: join(work, 'other'), layers: [25_000], seed: 'cli-other' });
    multi = await buildMultiArchImage({
      dir: join(work, 'multi'),
      seed: 'cli-multi',
      platforms: [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
      layers: [15_000],
    });
    await pushImage(app, upstream.host, 'cli/app:1');
    await pushImage(other, upstream.host, 'cli/other:1');
    await pushImage(multi, upstream.host, 'cli/multi:1');
    proxy = await startFaultProxy(upstream.url);
    port = await freePort();
    debugPort = await freePort();
    configYaml = [
      'version: 0.1',
      'log: { level: info, formatter: json }',
      `storage: { filesystem: { rootdirectory: ${root} } }`,
      `http: { addr: 127.0.0.1:${port}, draintimeout: 5s, debug: { addr: 127.0.0.1:${debugPort} } }`,
      `proxy: { remoteurl: ${proxy.url} }`,
      'regcache: { freshness: 1h }',
    ].join('\n');
  });

  after(async () => {
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  const blobFile = (digest: string) => join(root, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));
  const exists = (digest: string) => stat(blobFile(digest)).then(
    () => true,
    () => false,
  );

  it('ls, rm and warm go through the running server; after kill -9 the cache is intact', async () => {
    let rc = await startRegcacheProcess({ configYaml, port });
    const config = join(rc.work, 'config.yml');
    try {
      await copyToDir(`docker://127.0.0.1:${port}/cli/app:1`, join(work, 'p1'));
      await copyToDir(`docker://127.0.0.1:${port}/cli/other:1`, join(work, 'p2'));

      const ls = await cli(['cache', 'ls', '-c', config]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stdout, /cache: .* in 7 blobs, 2 repositories/);
      assert.match(ls.stdout, /\/cli\/app\s+1\s+\S+ KiB\s+4\s/);
      assert.match(ls.stdout, /\/cli\/other\s+1\s+\S+ KiB\s+3\s/);
      const one = await cli(['cache', 'ls', 'cli/app', '-c', config]);
      assert.match(one.stdout, new RegExp(`:1  ${app.manifestDigest}`));
      assert.doesNotMatch(one.stdout, /cli\/other/);

      const rm = await cli(['cache', 'rm', 'cli/other:1', '-c', config]);
      assert.equal(rm.code, 0, rm.stderr);
      assert.match(rm.stdout, /removed .*cli\/other@sha256:\S+ \(.*cli\/other:1\): 1 manifests, 3 blobs/);
      assert.equal(await exists(other.blobs[1]!.digest), false);
      assert.equal(await exists(app.blobs[1]!.digest), true);
      const none = await cli(['cache', 'rm', 'cli/other:1', '-c', config]);
      assert.notEqual(none.code, 0);
      assert.match(none.stderr, /nothing cached matches cli\/other:1/);

      const amd64 = multi.manifests.find((m) => m.platform.architecture === 'amd64')!.layers[0]!.digest;
      const arm64 = multi.manifests.find((m) => m.platform.architecture === 'arm64')!.layers[0]!.digest;
      const warm = await cli(['cache', 'warm', '--mirror', rc.url, '--platform', 'linux/arm64', 'cli/multi:1']);
      assert.equal(warm.code, 0, warm.stderr);
      assert.match(warm.stderr, /cli\/multi:1 \[#+\] .* layers 2\/2/);
      assert.equal(await exists(arm64), true);
      assert.equal(await exists(amd64), false, '--platform warms one platform only');
      const all = await cli(['cache', 'warm', '--mirror', rc.url, 'cli/multi:1']);
      assert.match(all.stderr, /layers 4\/4/);
      assert.equal(await exists(amd64), true);

      // kill -9 right after caching: the journal may miss the last changes; storage is the truth.
      await copyToDir(`docker://127.0.0.1:${port}/cli/other:1`, join(work, 'p3'));
      process.kill(rc.proc.pid, 'SIGKILL');
      await rc.proc.exited;
      await rc.stop();
      rc = await startRegcacheProcess({ configYaml, port });
      proxy.reset();
      for (const ref of ['cli/app:1', 'cli/other:1']) await copyToDir(`docker://127.0.0.1:${port}/${ref}`, join(work, `again-${ref.replace(/\W/g, '')}`));
      assert.equal(proxy.count({ method: 'GET', path: /\/blobs\// }), 0, 'everything still served from cache');
      const after = await cli(['cache', 'ls', '-c', join(rc.work, 'config.yml'), '--json']);
      const listing = JSON.parse(after.stdout) as { totalBytes: number; repos: Array<{ repo: string; tags: unknown[] }> };
      assert.deepEqual(listing.repos.map((r) => [r.repo, r.tags.length]), [['cli/app', 1], ['cli/multi', 1], ['cli/other', 1]]);
      const vars = (await (await fetch(`http://127.0.0.1:${debugPort}/debug/vars`)).json()) as { regcache: { cache: { bytes: number } } };
      assert.equal(listing.totalBytes, vars.regcache.cache.bytes);
    } finally {
      await rc.stop();
    }
  });

  it('verify and prune work on a stopped cache directly', async () => {
    const config = join(work, 'offline.yml');
    await writeFile(config, configYaml);
    const victim = app.blobs[2]!.digest;
    const fh = await open(blobFile(victim), 'r+');
    try {
      await fh.write(Buffer.from('X'), 0, 1, 100);
    } finally {
      await fh.close();
    }
    const verify = await cli(['cache', 'verify', '-c', config]);
    assert.equal(verify.code, 1, verify.stderr);
    assert.match(verify.stdout, new RegExp(`corrupt ${victim} \\(content hashes to sha256:[0-9a-f]{64}\\): removed`));
    assert.equal(await exists(victim), false);
    const clean = await cli(['cache', 'verify', '-c', config]);
    assert.equal(clean.code, 0, clean.stderr);
    assert.match(clean.stdout, /no corrupt blobs/);

    const dry = await cli(['cache', 'prune', '--max-size', '0', '--dry-run', '-c', config]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would remove .*cli\/app@/);
    assert.match(dry.stdout, /would free .* → 0 B/);
    assert.equal(await exists(app.blobs[1]!.digest), true, 'dry run removes nothing');
    const prune = await cli(['cache', 'prune', '--older-than', '0s', '-c', config]);
    assert.equal(prune.code, 0, prune.stderr);
    assert.match(prune.stdout, /freed .* → 0 B/);
    assert.equal(await exists(app.blobs[1]!.digest), false);
    const ls = await cli(['cache', 'ls', '-c', config]);
    assert.match(ls.stdout, /cache: 0 B in 0 blobs, 0 repositories/);
  });
});
