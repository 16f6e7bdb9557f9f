// Air-gapped / pre-seeded mirrors (issue 18): `regcache cache export` from one regcache, `cache import` into
// another whose upstream does not exist, pulls byte-identical with skopeo and podman; corrupt bundles refused
// with nothing half-imported; regcache.warm refreshing a moved tag on its schedule.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import tar from 'tar-stream';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { freePort, runCli, startRegcache, type RunningRegcache } from '../support/regcache.js';
import { buildImage, buildMultiArchImage, pushImage } from '../support/images.js';
import { copyToDir, dirDigests, inspectRaw } from '../support/skopeo.js';
import { have } from '../support/containerd.js';
import { skipUnless } from '../support/skips.js';
import { waitFor } from '../support/process.js';
import { sha256 } from '../support/digest.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const run = promisify(execFile);

/** Every file under a storage root with its size (what "unchanged" means for storage). */
async function listing(root: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for (const e of await readdir(root, { recursive: true, withFileTypes: true })) {
      if (!e.isFile()) continue;
      const p = join(e.parentPath ?? e.path, e.name);
      out.push(`${relative(root, p)} ${(await stat(p)).size}`);
    }
  } catch {
    // no root yet
  }
  return out.sort();
}

/** Copies a tar, letting `edit` change (Buffer), keep (undefined) or drop (null) each entry. */
async function rewriteTar(src: string, dst: string, edit: (name: string, body: Buffer) => Buffer | null | undefined): Promise<void> {
  const extract = tar.extract();
  const pack = tar.pack();
  const written = pipeline(pack, createWriteStream(dst));
  const reading = pipeline(createReadStream(src), extract);
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const next = edit(entry.header.name, body);
    if (next === null) continue;
    await new Promise<void>((res, rej) => pack.entry({ name: entry.header.name, size: (next ?? body).length }, next ?? body, (e) => (e ? rej(e) : res())));
  }
  await reading;
  pack.finalize();
  await written;
}

function configFile(root: string, upstreamUrl: string, extra = ''): string {
  return `version: 0.1\nlog: { level: warn }\nstorage: { filesystem: { rootdirectory: ${root} } }\nhttp: { addr: 127.0.0.1:1 }\nproxy: { remoteurl: ${upstreamUrl} }\n${extra}`;
}

describe('cache export / import: an air-gapped mirror', () => {
  let work: string;
  let upstream: RunningRegistry;
  let source: RunningRegcache;
  let deadUrl: string;
  let bundle: string;
  let originalDir: string;
  let layer: string;
  /** The upstream name regcache derives from the dead upstream's URL. */
  const deadName = (): string => deadUrl.replace(/^https?:\/\//, '');

  before(async () => {
    work = await makeTempDir('regcache-bundle-');
    upstream = await startRegistry();
    const multi = await buildMultiArchImage({
      dir: join(work, 'multi'),
      seed: 'bundle-multi',
      platforms: [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }],
      layers: [300_000, 20_000],
    });
    await pushImage(multi, upstream.host, 'team/app:1');
    const single = await buildImage({ dir: join(work, 'single'), layers: [50_000], seed: 'bundle-single' });
    await pushImage(single, upstream.host, 'team/tool:2');
    layer = multi.manifests[0]!.layers[0]!.digest;
    const debugPort = await freePort();
    source = await startRegcache({ upstreamUrl: upstream.url, config: { http: { debug: { addr: `127.0.0.1:${debugPort}` } } } });
    originalDir = join(work, 'original');
    await copyToDir(`docker://${source.host}/team/app:1`, originalDir, { all: true });
    await copyToDir(`docker://${source.host}/team/tool:2`, join(work, 'tool-original'));
    deadUrl = `http://127.0.0.1:${await freePort()}`; // nothing listens there
    // Export from the running source through its admin API (loopback debug listener).
    bundle = join(work, 'bundle.tar');
    const r = await runCli(['cache', 'export', 'team/app:1', 'team/tool:2', '-o', bundle, '--admin', `http://127.0.0.1:${debugPort}`]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await source?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  test('the bundle is an OCI image layout with the tags, readable by skopeo', async () => {
    const layout = join(work, 'layout-check');
    await copyToDir(`oci-archive:${bundle}:1`, layout, { all: true });
    assert.deepEqual(await dirDigests(layout), await dirDigests(originalDir));
  });

  test('import into a stopped cache whose upstream does not exist: skopeo and podman pull byte-identical; a second import changes nothing', async () => {
    const root = join(work, 'airgap');
    const cfg = join(work, 'airgap.yml');
    await writeFile(cfg, configFile(root, deadUrl));
    // The air-gapped mirror's upstream is another address (so another name): the bundle's name is refused, clearly.
    const refused = await runCli(['cache', 'import', bundle, '-c', cfg]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /which is not configured .*choose one with --upstream/);
    const r = await runCli(['cache', 'import', bundle, '-c', cfg, '--json', '--upstream', deadName()]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { images: unknown[]; tagsSet: number; blobsAdded: number };
    assert.equal(report.images.length, 2);
    assert.equal(report.tagsSet, 2);
    const before2 = await listing(root);
    const again = await runCli(['cache', 'import', bundle, '-c', cfg, '--json', '--upstream', deadName()]);
    assert.equal(again.code, 0, again.stderr);
    const second = JSON.parse(again.stdout) as { blobsAdded: number; tagsSet: number; manifests: number };
    assert.deepEqual([second.blobsAdded, second.tagsSet, second.manifests], [0, 0, 0]);
    assert.deepEqual((await listing(root)).filter((f) => !f.startsWith('_regcache')), before2.filter((f) => !f.startsWith('_regcache')));

    const mirror = await startRegcache({ upstreamUrl: deadUrl, root });
    try {
      const pulled = join(work, 'airgap-pull');
      await copyToDir(`docker://${mirror.host}/team/app:1`, pulled, { all: true });
      assert.deepEqual(await dirDigests(pulled), await dirDigests(originalDir));
      const tool = join(work, 'airgap-tool');
      await copyToDir(`docker://${mirror.host}/team/tool:2`, tool);
      assert.deepEqual(await dirDigests(tool), await dirDigests(join(work, 'tool-original')));
      if (have('podman')) {
        const dir = await makeTempDir('regcache-bundle-podman-');
        try {
          await writeFile(join(dir, 'registries.conf'), 'unqualified-search-registries = []\n');
          await writeFile(join(dir, 'containers.conf'), '');
          await writeFile(join(dir, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
          const env = { ...process.env, CONTAINERS_REGISTRIES_CONF: join(dir, 'registries.conf'), CONTAINERS_CONF: join(dir, 'containers.conf') };
          const base = ['--root', join(dir, 'root'), '--runroot', join(dir, 'run'), '--storage-driver', 'vfs'];
          const ref = `${mirror.host}/team/tool:2`;
          await run('podman', [...base, 'pull', '--quiet', '--tls-verify=false', '--signature-policy', join(dir, 'policy.json'), ref], { env, timeout: 120_000 });
          const digest = (await run('podman', [...base, 'image', 'inspect', '--format', '{{.Digest}}', ref], { env })).stdout.trim();
          assert.equal(digest, sha256(await readFile(join(work, 'tool-original', 'manifest.json'))));
          await run('podman', [...base, 'rmi', '--all', '--force'], { env }).catch(() => undefined);
        } finally {
          await removeDir(dir);
        }
      } else if (process.env.CI === 'true') {
        assert.fail('podman is required under CI');
      }
    } finally {
      await mirror.stop();
    }
  });

  test('import into a running cache through its admin API', async () => {
    const debugPort = await freePort();
    const mirror = await startRegcache({ upstreamUrl: deadUrl, config: { http: { debug: { addr: `127.0.0.1:${debugPort}` } } } });
    try {
      const r = await runCli(['cache', 'import', bundle, '--admin', `http://127.0.0.1:${debugPort}`, '--json', '--upstream', deadName()]);
      assert.equal(r.code, 0, r.stderr);
      const pulled = join(work, 'running-pull');
      await copyToDir(`docker://${mirror.host}/team/app:1`, pulled, { all: true });
      assert.deepEqual(await dirDigests(pulled), await dirDigests(originalDir));
    } finally {
      await mirror.stop();
    }
  });

  const corrupt: Array<[string, (src: string, dst: string) => Promise<void>, RegExp]> = [
    [
      'a flipped byte in a layer',
      (src, dst) =>
        rewriteTar(src, dst, (name, body) => {
          if (name !== `blobs/sha256/${layer.slice(7)}`) return undefined;
          const b = Buffer.from(body);
          b[1000] = b[1000]! ^ 0xff;
          return b;
        }),
      /blob sha256:[0-9a-f]+ in the bundle is corrupt/,
    ],
    [
      'a truncated tar',
      async (src, dst) => {
        const buf = await readFile(src);
        await writeFile(dst, buf.subarray(0, Math.floor(buf.length * 0.6)));
      },
      /truncated|corrupt|no index\.json/,
    ],
    ['a manifest referencing a missing blob', (src, dst) => rewriteTar(src, dst, (name) => (name === `blobs/sha256/${layer.slice(7)}` ? null : undefined)), /references blob sha256:[0-9a-f]+, which is neither in the bundle nor in the cache/],
  ];
  for (const [what, make, message] of corrupt) {
    test(`a bundle with ${what} is refused with a clear error and nothing is imported`, async () => {
      const bad = join(work, `bad-${what.replace(/\W+/g, '-')}.tar`);
      await make(bundle, bad);
      const root = join(work, `bad-root-${what.replace(/\W+/g, '-')}`);
      const cfg = join(work, `bad-${what.replace(/\W+/g, '-')}.yml`);
      await writeFile(cfg, configFile(root, deadUrl));
      const before2 = await listing(join(root));
      const r = await runCli(['cache', 'import', bad, '-c', cfg, '--upstream', deadName()]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      assert.deepEqual((await listing(root)).filter((f) => f.startsWith('blobs') || f.startsWith('repositories')), before2.filter((f) => f.startsWith('blobs') || f.startsWith('repositories')));
      const ls = await runCli(['cache', 'ls', '--json', '-c', cfg]);
      assert.equal(ls.code, 0, ls.stderr);
      const l = JSON.parse(ls.stdout) as { blobs: number; repos: unknown[] };
      assert.deepEqual([l.blobs, l.repos.length], [0, 0]);
    });
  }

  test('export names what is missing instead of writing half a bundle', async () => {
    const out = join(work, 'never.tar');
    const r = await runCli(['cache', 'export', 'team/nothing:1', '-o', out, '--admin', `http://127.0.0.1:${source.config.http.debug!.addr.split(':').pop()}`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /team\/nothing:1 is not in the cache/);
    await assert.rejects(stat(out));
  });
});

describe('regcache.warm: a scheduled warm refreshes a moved tag', () => {
  test('a new digest pushed to the tag is pulled before anyone asks and served with the upstream stopped', async () => {
    const work = await makeTempDir('regcache-warm-');
    const upstream = await startRegistry();
    let mirror: RunningRegcache | undefined;
    try {
      const v1 = await buildImage({ dir: join(work, 'v1'), layers: [40_000], seed: 'warm-v1' });
      await pushImage(v1, upstream.host, 'team/moving:1');
      mirror = await startRegcache({
        upstreamUrl: upstream.url,
        // A freshness far beyond the test: only the warm schedule (1s) revalidates the tag.
        config: { regcache: { freshness: '1h', warm: { images: ['team/moving:1'], interval: '1s' } } },
      });
      const m = mirror;
      const fetched = (digest: string) => m.logs.some((l) => l.msg === 'scheduled warm fetched a new digest' && l.digest === digest);
      await waitFor(() => fetched(v1.manifestDigest), { timeoutMs: 60_000, what: "the first warm" });
      const v2 = await buildImage({ dir: join(work, 'v2'), layers: [40_000], seed: 'warm-v2' });
      await pushImage(v2, upstream.host, 'team/moving:1');
      await waitFor(() => fetched(v2.manifestDigest), { timeoutMs: 60_000, what: "the warm of the moved tag" });
      await upstream.stop();
      const raw = await inspectRaw(`docker://${mirror.host}/team/moving:1`);
      assert.equal(sha256(raw), v2.manifestDigest);
      const dir = join(work, 'pulled');
      await copyToDir(`docker://${mirror.host}/team/moving:1`, dir);
      const files = [...(await dirDigests(dir)).values()];
      for (const b of v2.blobs) assert.ok(files.includes(b.digest), `${b.digest} missing`);
    } finally {
      await mirror?.stop();
      await upstream.stop();
      await removeDir(work);
    }
  });
});
