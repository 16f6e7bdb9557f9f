// Real clients pull through a mirror using files made by generateClientConfig: podman (registries.conf
// drop-in) and containerd (hosts.toml via ctr --hosts-dir). Offline: the fallback endpoints
// (registry-1.docker.io, ghcr.io) are unreachable, so a successful pull was served by the mirror.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateClientConfig } from '../../src/clientconfig/index.js';
import { startRegistry } from '../support/registry.js';
import { startRegcache } from '../support/regcache.js';
import { buildImage, pushImage } from '../support/images.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { generateCertChain, type CertChain } from '../support/tokenserver.js';
import { writeClientFiles } from '../../src/clientconfig/write.js';
import { readFile } from 'node:fs/promises';
import { skipUnless } from '../support/skips.js';
import { canRunContainerd, containerdPullThroughMirror, have, startContainerd, type Containerd } from '../support/containerd.js';

const run = promisify(execFile);

interface LoggedRequest {
  method: string;
  uri: string;
  status: number;
  userAgent: string;
}

interface FixtureMirror {
  url: string;
  /** Digests of the fixtures as clients address them. */
  hubDigest: string;
  ghcrDigest: string;
  requests(): Promise<LoggedRequest[]>;
  stop(): Promise<void>;
}

const HUB_REF = 'docker.io/library/ccfixture:1';
const GHCR_REF = 'ghcr.io/acme/app:1';

/**
 * The mirror the clients are pointed at: regcache with two upstream registries (distribution), one
 * standing in for Docker Hub (default upstream, `ns=docker.io`) and one for ghcr.io (`ns=ghcr.io` and the
 * `ghcr.io/` path prefix). The requests are read from regcache's access log.
 */
async function startFixtureMirror(tls?: CertChain): Promise<FixtureMirror> {
  const hubUpstream = await startRegistry();
  const ghcrUpstream = await startRegistry();
  const work = await makeTempDir('regcache-cc-images-');
  try {
    const hub = await buildImage({ dir: join(work, 'hub'), layers: [1024], seed: 'clientconfig-hub' });
    const ghcr = await buildImage({ dir: join(work, 'ghcr'), layers: [2048], seed: 'clientconfig-ghcr' });
    await pushImage(hub, hubUpstream.host, 'library/ccfixture:1');
    await pushImage(ghcr, ghcrUpstream.host, 'acme/app:1');
    const mirror = await startRegcache({
      config: {
        ...(tls && { http: { tls: { certificate: tls.leafCert, key: tls.leafKey } } }),
        regcache: {
          upstreams: [
            { name: 'docker.io', remoteurl: hubUpstream.url, hosts: ['docker.io'], dockerhub: true },
            { name: 'ghcr.io', remoteurl: ghcrUpstream.url, prefix: ['ghcr.io'], hosts: ['ghcr.io'] },
          ],
        },
      },
    });
    return {
      url: mirror.url,
      hubDigest: hub.manifestDigest,
      ghcrDigest: ghcr.manifestDigest,
      requests: async () =>
        mirror.logs
          .filter((l) => l.msg === 'request')
          .map((l) => ({
            method: String(l.method),
            uri: `${String(l.path)}${l.query ? String(l.query) : ''}`,
            status: Number(l.status),
            userAgent: String(l.ua ?? ''),
          })),
      stop: async () => {
        await mirror.stop();
        await ghcrUpstream.stop();
        await hubUpstream.stop();
      },
    };
  } catch (err) {
    await ghcrUpstream.stop();
    await hubUpstream.stop();
    throw err;
  } finally {
    await removeDir(work);
  }
}


// ---- podman ---------------------------------------------------------------------------------------

/**
 * Pulls `ref` with podman or buildah configured only by the generated files, installed unedited with
 * `--write ROOT` semantics (writeClientFiles under a temp root); returns the image digest. With a CA the
 * tool is pointed at the generated certs.d/<mirror host> directory (what /etc/containers/certs.d is
 * without ROOT).
 */
async function containersPullThroughMirror(
  tool: 'podman' | 'buildah',
  mirrorUrl: string,
  upstreams: string[],
  ref: string,
  ca?: { pem: string; source: string },
): Promise<string> {
  const dir = await makeTempDir(`regcache-cc-${tool}-`);
  try {
    const files = generateClientConfig('podman', { mirror: mirrorUrl, upstreams, insecure: false, ...(ca && { ca }) });
    const root = join(dir, 'fsroot');
    const written = await writeClientFiles(files, { root, home: join(dir, 'home') });
    assert.equal(written.length, ca ? 2 : 1);
    await writeFile(join(dir, 'containers.conf'), '');
    await writeFile(join(dir, 'auth.json'), '{}'); // no stored credentials (podman wants the file to exist)
    await writeFile(join(dir, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    const env = {
      ...process.env,
      CONTAINERS_REGISTRIES_CONF: join(root, 'etc/containers/registries.conf.d/regcache.conf'),
      CONTAINERS_CONF: join(dir, 'containers.conf'),
      REGISTRY_AUTH_FILE: join(dir, 'auth.json'),
    };
    const certDir = ca ? ['--cert-dir', join(root, 'etc/containers/certs.d', new URL(mirrorUrl).host)] : [];
    const base = ['--root', join(dir, 'root'), '--runroot', join(dir, 'run'), '--storage-driver', 'vfs'];
    await run(tool, [...base, 'pull', '--quiet', '--signature-policy', join(dir, 'policy.json'), ...certDir, ref], { env, timeout: 120_000 });
    const fmt = tool === 'podman' ? ['image', 'inspect', '--format', '{{.Digest}}', ref] : ['inspect', '--type', 'image', '--format', '{{.FromImageDigest}}', ref];
    const { stdout } = await run(tool, [...base, ...fmt], { env });
    await run(tool, [...base, 'rmi', '--all', '--force'], { env }).catch(() => undefined);
    return stdout.trim();
  } finally {
    await removeDir(dir);
  }
}

const podmanPullThroughMirror = (mirrorUrl: string, upstreams: string[], ref: string): Promise<string> =>
  containersPullThroughMirror('podman', mirrorUrl, upstreams, ref);

describe('podman pulls through the mirror with the generated registries.conf', { skip: skipUnless(have('podman'), 'podman', 'podman not installed') }, () => {
  let mirror: FixtureMirror;
  before(async () => {
    mirror = await startFixtureMirror();
  });
  after(async () => {
    await mirror?.stop();
  });

  test('docker.io image: served by the mirror under its own name', async () => {
    const digest = await podmanPullThroughMirror(mirror.url, ['docker.io', 'ghcr.io'], HUB_REF);
    assert.equal(digest, mirror.hubDigest);
    const reqs = await mirror.requests();
    assert.ok(
      reqs.some((r) => r.method === 'GET' && r.uri === '/v2/library/ccfixture/manifests/1' && r.status === 200 && r.userAgent.startsWith('containers/')),
      `no manifest GET from podman in ${JSON.stringify(reqs)}`,
    );
  });

  test('ghcr.io image: served by the mirror under the ghcr.io/ path prefix', async () => {
    const digest = await podmanPullThroughMirror(mirror.url, ['docker.io', 'ghcr.io'], GHCR_REF);
    assert.equal(digest, mirror.ghcrDigest);
    const reqs = await mirror.requests();
    assert.ok(
      reqs.some((r) => r.method === 'GET' && r.uri === '/v2/ghcr.io/acme/app/manifests/1' && r.status === 200),
      `no path-prefixed manifest GET in ${JSON.stringify(reqs)}`,
    );
  });
});

// ---- containerd ----------------------------------------------------------------------------------

describe('containerd pulls through the mirror with the generated hosts.toml', { skip: skipUnless(canRunContainerd(), 'containerd', 'needs root, containerd and ctr') }, () => {
  let mirror: FixtureMirror;
  let ctrd: Containerd;
  before(async () => {
    mirror = await startFixtureMirror();
    ctrd = await startContainerd();
  });
  after(async () => {
    await ctrd?.stop();
    await mirror?.stop();
  });

  test('docker.io image: the mirror is asked with ?ns=docker.io', async () => {
    const digest = await containerdPullThroughMirror(ctrd, mirror.url, ['docker.io', 'ghcr.io'], HUB_REF);
    assert.equal(digest, mirror.hubDigest);
    const reqs = await mirror.requests();
    const fromContainerd = reqs.filter((r) => r.userAgent.startsWith('containerd/'));
    assert.ok(
      fromContainerd.some((r) => r.uri.startsWith('/v2/library/ccfixture/manifests/') && r.uri.endsWith('?ns=docker.io') && r.status === 200),
      `no manifest request with ns=docker.io in ${JSON.stringify(fromContainerd)}`,
    );
    assert.ok(fromContainerd.every((r) => r.uri.includes('?ns=docker.io')), 'every containerd request carries ns=docker.io');
  });

  test('ghcr.io image: the same mirror host, asked with ?ns=ghcr.io', async () => {
    const digest = await containerdPullThroughMirror(ctrd, mirror.url, ['docker.io', 'ghcr.io'], GHCR_REF);
    assert.equal(digest, mirror.ghcrDigest);
    const reqs = await mirror.requests();
    assert.ok(
      reqs.some((r) => r.uri.startsWith('/v2/acme/app/manifests/') && r.uri.endsWith('?ns=ghcr.io') && r.status === 200),
      `no manifest request with ns=ghcr.io in ${JSON.stringify(reqs)}`,
    );
  });
});

// ---- buildah, and every tool against a TLS mirror signed by a private CA (--ca) ----------------------

describe('buildah pulls through the mirror with the generated registries.conf', { skip: skipUnless(have('buildah'), 'buildah', 'buildah not installed') }, () => {
  let mirror: FixtureMirror;
  before(async () => {
    mirror = await startFixtureMirror();
  });
  after(async () => {
    await mirror?.stop();
  });

  test('docker.io and ghcr.io images', async () => {
    assert.equal(await containersPullThroughMirror('buildah', mirror.url, ['docker.io', 'ghcr.io'], HUB_REF), mirror.hubDigest);
    assert.equal(await containersPullThroughMirror('buildah', mirror.url, ['docker.io', 'ghcr.io'], GHCR_REF), mirror.ghcrDigest);
    const reqs = await mirror.requests();
    assert.ok(reqs.some((r) => r.uri === '/v2/ghcr.io/acme/app/manifests/1' && r.status === 200 && r.userAgent.includes('Buildah')),
      `no buildah manifest GET in ${JSON.stringify(reqs.map((r) => [r.uri, r.userAgent]))}`);
  });
});

describe('--ca: a TLS mirror signed by a test CA, trusted through the generated files only', () => {
  let mirror: FixtureMirror;
  let certs: CertChain;
  let ca: { pem: string; source: string };
  before(async () => {
    certs = await generateCertChain(await makeTempDir('regcache-cc-tls-'));
    ca = { pem: await readFile(certs.caCert, 'utf8'), source: certs.caCert };
    mirror = await startFixtureMirror(certs);
    assert.match(mirror.url, /^https:\/\/127\.0\.0\.1:/);
  });
  after(async () => {
    await mirror?.stop();
    if (certs) await removeDir(certs.dir);
  });

  for (const tool of ['podman', 'buildah'] as const) {
    test(`${tool}: certs.d/<mirror>/ca.crt`, { skip: skipUnless(have(tool), tool, `${tool} not installed`) }, async () => {
      assert.equal(await containersPullThroughMirror(tool, mirror.url, ['docker.io', 'ghcr.io'], GHCR_REF, ca), mirror.ghcrDigest);
      // Without the CA the same pull fails verification (and the real ghcr.io is unreachable): the CA file did the work.
      await assert.rejects(containersPullThroughMirror(tool, mirror.url, ['docker.io', 'ghcr.io'], GHCR_REF), /certificate|x509|unknown authority/i);
    });
  }

  test('containerd: ca = "regcache-ca.crt" next to hosts.toml', { skip: skipUnless(canRunContainerd(), 'containerd', 'needs root, containerd and ctr') }, async () => {
    const ctrd = await startContainerd();
    try {
      assert.equal(await containerdPullThroughMirror(ctrd, mirror.url, ['docker.io'], HUB_REF, { ca }), mirror.hubDigest);
      const reqs = await mirror.requests();
      assert.ok(reqs.some((r) => r.userAgent.startsWith('containerd/') && r.uri.endsWith('?ns=docker.io') && r.status === 200));
    } finally {
      await ctrd.stop();
    }
  });
});
