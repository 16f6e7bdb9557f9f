// The end-to-end client matrix: one real distribution upstream, one regcache, every real client pulls through
// it and gets exactly the upstream's content (checked against the digests the upstream serves):
// skopeo, podman, buildah, containerd (ctr with a hosts.toml), oras.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { copyToDir, dirDigests } from '../support/skopeo.js';
import { canRunContainerd, containerdPullThroughMirror, have, startContainerd } from '../support/containerd.js';
import { haveOras, oras } from '../support/oras.js';
import { skipUnless } from '../support/skips.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { fileDigest } from '../support/digest.js';

const run = promisify(execFile);

describe('client matrix: real clients pull byte-identical content through regcache', () => {
  let work: string;
  let upstream: RunningRegistry;
  let cache: RunningRegcache;
  let img: BuiltImage;
  /** what the upstream serves for team/app:1: manifest digest and the config + layer digests */
  let want: { manifest: string; config: string; layers: string[] };
  const artifactFiles = { 'report.json': '{"result":"pass"}\n', 'notes.txt': 'matrix artifact\n' };
  let artifactDigest: string;

  before(async () => {
    work = await makeTempDir('regcache-matrix-');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [200_000, 30_000], seed: 'client-matrix' });
    await pushImage(img, upstream.host, 'team/app:1');
    const res = await fetch(`${upstream.url}/v2/team/app/manifests/1`, { headers: { Accept: img.mediaType } });
    const manifest = (await res.json()) as { config: { digest: string }; layers: Array<{ digest: string }> };
    want = { manifest: res.headers.get('docker-content-digest')!, config: manifest.config.digest, layers: manifest.layers.map((l) => l.digest) };
    assert.equal(want.manifest, img.manifestDigest);
    cache = await startRegcache({ upstreamUrl: upstream.url });
  });
  after(async () => {
    await cache?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  test('skopeo copy', async () => {
    const dir = join(work, 'skopeo');
    await copyToDir(`docker://${cache.host}/team/app:1`, dir);
    const files = [...(await dirDigests(dir)).values()];
    for (const d of [want.config, ...want.layers]) assert.ok(files.includes(d), `skopeo's copy lacks ${d}`);
    assert.equal(await fileDigest(join(dir, 'manifest.json')), want.manifest);
  });

  // podman and buildah: rootful with a private store (vfs), plain HTTP to the mirror. containers/image checks
  // every blob against its digest while pulling; the image's digest and ID (its config digest) must be the upstream's.
  for (const tool of ['podman', 'buildah'] as const) {
    test(`${tool} pull`, { skip: skipUnless(have(tool), tool, `${tool} not installed`) }, async () => {
      const dir = await makeTempDir(`regcache-matrix-${tool}-`);
      try {
        await writeFile(join(dir, 'registries.conf'), 'unqualified-search-registries = []\n');
        await writeFile(join(dir, 'containers.conf'), '');
        await writeFile(join(dir, 'auth.json'), '{}');
        await writeFile(join(dir, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
        const env = {
          ...process.env,
          CONTAINERS_REGISTRIES_CONF: join(dir, 'registries.conf'),
          CONTAINERS_CONF: join(dir, 'containers.conf'),
          REGISTRY_AUTH_FILE: join(dir, 'auth.json'),
        };
        const base = ['--root', join(dir, 'root'), '--runroot', join(dir, 'run'), '--storage-driver', 'vfs'];
        const ref = `${cache.host}/team/app:1`;
        await run(tool, [...base, 'pull', '--quiet', '--tls-verify=false', '--signature-policy', join(dir, 'policy.json'), ref], { env, timeout: 120_000 });
        const format = tool === 'podman' ? '{{.Digest}} {{.Id}}' : '{{.FromImageDigest}} {{.FromImageID}}';
        const args = tool === 'podman' ? ['image', 'inspect', '--format', format, ref] : ['inspect', '--type', 'image', '--format', format, ref];
        const [digest, id] = (await run(tool, [...base, ...args], { env })).stdout.trim().split(' ');
        assert.equal(digest, want.manifest);
        assert.equal(`sha256:${id!.replace(/^sha256:/, '')}`, want.config);
        await run(tool, [...base, 'rmi', '--all', '--force'], { env }).catch(() => undefined);
      } finally {
        await removeDir(dir);
      }
    });
  }

  test('containerd (ctr, hosts.toml for docker.io; one upstream serves every ns=)', { skip: skipUnless(canRunContainerd(), 'containerd', 'needs root, containerd and ctr') }, async () => {
    const ctrd = await startContainerd();
    try {
      assert.equal(await containerdPullThroughMirror(ctrd, cache.url, ['docker.io'], 'docker.io/team/app:1'), want.manifest);
      // containerd verifies every blob it unpacks against its digest; the content store holds the upstream's.
      const { stdout } = await run('ctr', ['-a', ctrd.socket, '-n', 'regcache-test', 'content', 'ls', '-q']);
      for (const d of [want.manifest, want.config, ...want.layers]) assert.ok(stdout.includes(d), `containerd's content store lacks ${d}`);
    } finally {
      await ctrd.stop();
    }
  });

  test('oras pull (an artifact oras pushed to the upstream) and oras copy of the image', { skip: skipUnless(haveOras(), 'oras', 'oras not built (scripts/tools.sh oras)') }, async () => {
    const src = join(work, 'oras-src');
    await mkdir(src, { recursive: true });
    for (const [name, content] of Object.entries(artifactFiles)) await writeFile(join(src, name), content);
    const pushed = await oras(['push', '--plain-http', '--format', 'json', '--artifact-type', 'application/vnd.example.report', `${upstream.host}/team/report:1`, 'report.json:application/json', 'notes.txt:text/plain'], { cwd: src });
    artifactDigest = (JSON.parse(pushed.stdout) as { digest: string }).digest;
    const out = join(work, 'oras-out');
    const pulled = await oras(['pull', '--plain-http', '--format', 'json', '-o', out, `${cache.host}/team/report:1`]);
    assert.equal((JSON.parse(pulled.stdout) as { reference: string }).reference, `${cache.host}/team/report@${artifactDigest}`);
    for (const [name, content] of Object.entries(artifactFiles)) assert.ok((await readFile(join(out, name))).equals(Buffer.from(content)), `${name} differs`);
    // The image (its layers carry no file names, so `oras pull` would skip them): copied whole to an OCI layout.
    const layout = join(work, 'oras-layout');
    await oras(['cp', '--from-plain-http', '--to-oci-layout', `${cache.host}/team/app:1`, `${layout}:1`]);
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    assert.deepEqual(index.manifests.map((m) => m.digest), [want.manifest]);
    for (const d of [want.manifest, want.config, ...want.layers]) assert.equal(await fileDigest(join(layout, 'blobs/sha256', d.slice(7))), d);
  });
});
