import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { parse as parseToml } from 'smol-toml';
import YAML from 'yaml';
import {
  CLIENT_KINDS,
  ClientConfigError,
  generateClientConfig,
  clientConfigAdvice,
  renderContents,
  renderForTerminal,
  type ClientKind,
  type GeneratedFile,
} from '../../src/clientconfig/index.js';
import { targetPath, writeClientFiles } from '../../src/clientconfig/write.js';
import { generateCertChain } from '../support/tokenserver.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { runCli } from '../support/regcache.js';

const HTTP = 'http://10.0.0.5:5000';
const HTTPS = 'https://mirror.example.com';
const THREE = ['docker.io', 'ghcr.io', 'quay.io'];

/** smol-toml builds null-prototype objects; plain ones compare with deepStrictEqual. */
function toml(text: string): any {
  return JSON.parse(JSON.stringify(parseToml(text)));
}

/** Every generated file parses in its declared format; returns the parsed value. */
function parsed(f: GeneratedFile): any {
  switch (f.format) {
    case 'json':
      return JSON.parse(f.content);
    case 'toml':
      return toml(f.content);
    case 'yaml':
      return YAML.parse(f.content, { strict: true, uniqueKeys: true });
    case 'pem':
      return new X509Certificate(f.content);
    default:
      return f.content;
  }
}

function byPath(files: GeneratedFile[], path: string): any {
  const f = files.find((x) => x.path === path);
  assert.ok(f, `no file ${path} in ${files.map((x) => x.path).join(', ')}`);
  return parsed(f);
}

test('every kind, http/https, insecure or not, one or three upstreams: all files parse', () => {
  for (const kind of CLIENT_KINDS) {
    for (const mirror of [HTTP, HTTPS]) {
      for (const insecure of [false, true]) {
        for (const upstreams of [['docker.io'], THREE]) {
          const files = generateClientConfig(kind, { mirror, upstreams, insecure });
          assert.ok(files.length > 0, kind);
          for (const f of files) {
            assert.ok(f.path.length > 0);
            assert.doesNotThrow(() => parsed(f), `${kind} ${mirror} ${f.path}`);
          }
        }
      }
    }
  }
});

test('docker: registry-mirrors for Docker Hub, insecure-registries for http', () => {
  const http = byPath(generateClientConfig('docker', { mirror: HTTP, upstreams: THREE, insecure: false }), '/etc/docker/daemon.json');
  assert.deepEqual(http, { 'registry-mirrors': ['http://10.0.0.5:5000'], 'insecure-registries': ['10.0.0.5:5000'] });

  const https = generateClientConfig('docker', { mirror: HTTPS + '/', upstreams: ['docker.io'], insecure: false });
  assert.deepEqual(parsed(https[0]!), { 'registry-mirrors': ['https://mirror.example.com'] });

  const selfSigned = byPath(generateClientConfig('docker', { mirror: HTTPS, upstreams: ['docker.io'], insecure: true }), '/etc/docker/daemon.json');
  assert.deepEqual(selfSigned['insecure-registries'], ['mirror.example.com']);
});

test('docker: other upstreams are explained as path-prefix names, not mirrored', () => {
  const [f] = generateClientConfig('docker', { mirror: HTTPS, upstreams: THREE, insecure: false });
  assert.match(f!.note!, /cannot mirror ghcr\.io, quay\.io/);
  assert.match(f!.note!, /docker pull mirror\.example\.com\/ghcr\.io\/OWNER\/IMAGE:TAG/);
  assert.match(f!.note!, /restart docker/);
});

test('containerd: one hosts.toml per upstream, real endpoint as server, mirror with pull+resolve', () => {
  const files = generateClientConfig('containerd', { mirror: HTTP, upstreams: THREE, insecure: false });
  assert.deepEqual(files.map((f) => f.path), [
    '/etc/containerd/certs.d/docker.io/hosts.toml',
    '/etc/containerd/certs.d/ghcr.io/hosts.toml',
    '/etc/containerd/certs.d/quay.io/hosts.toml',
  ]);
  const hub = parsed(files[0]!);
  assert.equal(hub.server, 'https://registry-1.docker.io');
  assert.deepEqual(hub.host, { 'http://10.0.0.5:5000': { capabilities: ['pull', 'resolve'], dial_timeout: '3s' } });
  assert.equal(parsed(files[1]!).server, 'https://ghcr.io');
  assert.match(files.at(-1)!.note!, /config_path = "\/etc\/containerd\/certs\.d"/);
  assert.match(files.at(-1)!.note!, /ns=/);
});

test('containerd: skip_verify only for an insecure https mirror', () => {
  const ins = parsed(generateClientConfig('containerd', { mirror: HTTPS, upstreams: [], insecure: true })[0]!);
  assert.equal(ins.host['https://mirror.example.com'].skip_verify, true);
  const sec = parsed(generateClientConfig('containerd', { mirror: HTTPS, upstreams: [], insecure: false })[0]!);
  assert.equal(sec.host['https://mirror.example.com'].skip_verify, undefined);
  const http = parsed(generateClientConfig('containerd', { mirror: HTTP, upstreams: [], insecure: true })[0]!);
  assert.equal(http.host['http://10.0.0.5:5000'].skip_verify, undefined);
});

test('containerd: an upstream with a port gets a host:port directory and https server', () => {
  const [f] = generateClientConfig('containerd', { mirror: HTTPS, upstreams: ['registry.local:5443'], insecure: false });
  assert.equal(f!.path, '/etc/containerd/certs.d/registry.local:5443/hosts.toml');
  assert.equal(parsed(f!).server, 'https://registry.local:5443');
});

test('buildkit: mirrors without scheme for every upstream, http/insecure on the mirror host table', () => {
  const http = byPath(generateClientConfig('buildkit', { mirror: HTTP, upstreams: THREE, insecure: false }), '/etc/buildkit/buildkitd.toml');
  for (const u of THREE) assert.deepEqual(http.registry[u], { mirrors: ['10.0.0.5:5000'] });
  assert.deepEqual(http.registry['10.0.0.5:5000'], { http: true });

  const ins = byPath(generateClientConfig('buildkit', { mirror: HTTPS, upstreams: ['docker.io'], insecure: true }), '/etc/buildkit/buildkitd.toml');
  assert.deepEqual(ins.registry, { 'docker.io': { mirrors: ['mirror.example.com'] }, 'mirror.example.com': { insecure: true } });

  const sec = byPath(generateClientConfig('buildkit', { mirror: HTTPS, upstreams: ['docker.io'], insecure: false }), '/etc/buildkit/buildkitd.toml');
  assert.deepEqual(sec.registry, { 'docker.io': { mirrors: ['mirror.example.com'] } });
});

test('earthly: the buildkit TOML inside global.buildkit_additional_config', () => {
  const doc = byPath(generateClientConfig('earthly', { mirror: HTTP, upstreams: THREE, insecure: false }), '~/.earthly/config.yml');
  const inner = toml(doc.global.buildkit_additional_config);
  assert.deepEqual(inner.registry['ghcr.io'].mirrors, ['10.0.0.5:5000']);
  assert.equal(inner.registry['10.0.0.5:5000'].http, true);
});

for (const kind of ['podman', 'cri-o'] as const) {
  test(`${kind}: registries.conf v2 drop-in, path prefix for non-Docker-Hub upstreams`, () => {
    const conf = byPath(generateClientConfig(kind, { mirror: HTTP, upstreams: THREE, insecure: false }), '/etc/containers/registries.conf.d/regcache.conf');
    assert.deepEqual(conf.registry, [
      { prefix: 'docker.io', location: 'docker.io', mirror: [{ location: '10.0.0.5:5000', insecure: true }] },
      { prefix: 'ghcr.io', location: 'ghcr.io', mirror: [{ location: '10.0.0.5:5000/ghcr.io', insecure: true }] },
      { prefix: 'quay.io', location: 'quay.io', mirror: [{ location: '10.0.0.5:5000/quay.io', insecure: true }] },
    ]);
    const sec = byPath(generateClientConfig(kind, { mirror: HTTPS, upstreams: ['docker.io'], insecure: false }), '/etc/containers/registries.conf.d/regcache.conf');
    assert.deepEqual(sec.registry[0].mirror, [{ location: 'mirror.example.com' }]);
    const ins = byPath(generateClientConfig(kind, { mirror: HTTPS, upstreams: ['docker.io'], insecure: true }), '/etc/containers/registries.conf.d/regcache.conf');
    assert.equal(ins.registry[0].mirror[0].insecure, true);
  });
}

test('k3s: one endpoint for every upstream; tls config only for insecure https', () => {
  const http = byPath(generateClientConfig('k3s', { mirror: HTTP, upstreams: THREE, insecure: false }), '/etc/rancher/k3s/registries.yaml');
  assert.deepEqual(http.mirrors, {
    'docker.io': { endpoint: ['http://10.0.0.5:5000'] },
    'ghcr.io': { endpoint: ['http://10.0.0.5:5000'] },
    'quay.io': { endpoint: ['http://10.0.0.5:5000'] },
  });
  assert.equal(http.configs, undefined);
  const ins = byPath(generateClientConfig('k3s', { mirror: HTTPS, upstreams: ['docker.io'], insecure: true }), '/etc/rancher/k3s/registries.yaml');
  assert.deepEqual(ins.configs, { 'mirror.example.com': { tls: { insecure_skip_verify: true } } });
});

test('kind: complete cluster config mounting generated hosts.toml files on every node', () => {
  const files = generateClientConfig('kind', { mirror: 'http://192.168.1.10:5000', upstreams: THREE, insecure: false, home: '/home/ann' });
  const cluster = byPath(files, 'kind-regcache.yaml');
  assert.equal(cluster.kind, 'Cluster');
  assert.equal(cluster.apiVersion, 'kind.x-k8s.io/v1alpha4');
  assert.match(cluster.containerdConfigPatches[0], /\[plugins\."io\.containerd\.grpc\.v1\.cri"\.registry\]\s+config_path = "\/etc\/containerd\/certs\.d"/);
  // The patch must itself be valid TOML.
  assert.equal(toml(cluster.containerdConfigPatches[0]).plugins['io.containerd.grpc.v1.cri'].registry.config_path, '/etc/containerd/certs.d');
  for (const node of cluster.nodes) {
    assert.deepEqual(node.extraMounts, [{ hostPath: '/home/ann/.config/regcache/kind/certs.d', containerPath: '/etc/containerd/certs.d', readOnly: true }]);
  }
  const hub = byPath(files, '/home/ann/.config/regcache/kind/certs.d/docker.io/hosts.toml');
  assert.deepEqual(hub.host['http://192.168.1.10:5000'].capabilities, ['pull', 'resolve']);
  assert.ok(files.some((f) => f.path === '/home/ann/.config/regcache/kind/certs.d/quay.io/hosts.toml'));
});

test('kind and buildkit warn that a loopback mirror is unreachable from containers', () => {
  const kindNote = generateClientConfig('kind', { mirror: 'http://127.0.0.1:5000', upstreams: [], insecure: false }).at(-1)!.note!;
  assert.match(kindNote, /loopback/);
  assert.match(generateClientConfig('buildkit', { mirror: 'http://localhost:5000', upstreams: [], insecure: false })[0]!.note!, /loopback/);
  assert.doesNotMatch(generateClientConfig('kind', { mirror: HTTP, upstreams: [], insecure: false }).at(-1)!.note!, /loopback/);
});

test('upstreams default to docker.io, Docker Hub aliases fold into it, duplicates go', () => {
  const def = generateClientConfig('containerd', { mirror: HTTPS, upstreams: [], insecure: false });
  assert.deepEqual(def.map((f) => f.path), ['/etc/containerd/certs.d/docker.io/hosts.toml']);
  const undef = generateClientConfig('containerd', { mirror: HTTPS } as any);
  assert.equal(undef.length, 1);
  const folded = generateClientConfig('containerd', {
    mirror: HTTPS,
    upstreams: ['registry-1.docker.io', 'index.docker.io', 'GHCR.io', 'ghcr.io', 'https://quay.io/'],
    insecure: false,
  });
  assert.deepEqual(folded.map((f) => f.path.split('/')[4]), ['docker.io', 'ghcr.io', 'quay.io']);
});

test('bad input throws ClientConfigError with a message that names the problem', () => {
  const cases: Array<[ClientKind | string, any, RegExp]> = [
    ['nerdctl', { mirror: HTTPS }, /unknown client kind "nerdctl"; expected one of: docker, containerd,/],
    ['docker', { mirror: 'mirror.example.com:5000' }, /no scheme: write https:\/\/mirror\.example\.com:5000/],
    ['docker', { mirror: 'ftp://mirror.example.com' }, /scheme must be http or https/],
    ['docker', { mirror: 'http://' }, /not a valid URL/],
    ['docker', { mirror: '' }, /--mirror is required/],
    ['docker', { mirror: 'https://u:p@mirror.example.com' }, /credentials/],
    ['docker', { mirror: 'https://mirror.example.com/v2/' }, /without a path/],
    ['docker', { mirror: HTTPS, upstreams: ['ghcr.io/owner'] }, /upstream "ghcr\.io\/owner" is not a registry host/],
    ['docker', { mirror: HTTPS, upstreams: ['bad host'] }, /not a registry host/],
    ['docker', { mirror: HTTPS, upstreams: ['x.io:99999'] }, /out of range/],
    ['docker', { mirror: HTTPS, upstreams: ['mirror.example.com'] }, /is the mirror itself/],
    ['podman', { mirror: HTTPS, upstreams: ['registry.local:5443'] }, /has a port, which cannot be part of an image path/],
    ['docker', { mirror: HTTPS, upstreams: ['registry.local:5443'] }, /has a port/],
  ];
  for (const [kind, opts, re] of cases) {
    assert.throws(
      () => generateClientConfig(kind as ClientKind, opts),
      (e: unknown) => e instanceof ClientConfigError && e instanceof Error && re.test(e.message),
      `${kind} ${JSON.stringify(opts)}`,
    );
  }
});

test('renderForTerminal: "# path" header, content, then the note as comments', () => {
  const files = generateClientConfig('docker', { mirror: HTTP, upstreams: ['docker.io'], insecure: false });
  const out = renderForTerminal(files);
  assert.ok(out.startsWith('# /etc/docker/daemon.json\n{\n'));
  assert.match(out, /\n}\n# Merge these keys .*restart docker\n# Check with: docker info/);
  const two = renderForTerminal([
    { path: '/a', content: 'x', format: 'text' },
    { path: '/b', content: 'y\n', format: 'text', note: 'line1\n\nline3' },
  ]);
  assert.equal(two, '# /a\nx\n\n# /b\ny\n# line1\n#\n# line3\n');
});

test('docs/clients.md: every json/toml/yaml example parses; the containerd example is what the generator writes', () => {
  const md = readFileSync(new URL('../../docs/clients.md', import.meta.url), 'utf8');
  const blocks = [...md.matchAll(/```(json|toml|yaml)\n([\s\S]*?)```/g)].map((m) => ({ format: m[1] as GeneratedFile['format'], content: m[2]! }));
  assert.ok(blocks.length >= 12, `${blocks.length} blocks`);
  for (const b of blocks) assert.doesNotThrow(() => parsed({ path: 'docs', ...b }), b.content);
  const [hub] = generateClientConfig('containerd', { mirror: HTTPS, upstreams: ['docker.io'], insecure: false });
  const body = hub!.content.replace(/^# generated by regcache client-config\n/, '');
  assert.ok(blocks.some((b) => b.content === body), 'docs show the generated docker.io hosts.toml');
});

// ---- issue 18: CA, stdout/stderr, --write, containerd 2.x, buildx, kind, rootless podman, warnings ----------

const caDir = await makeTempDir('regcache-cc-ca-');
const CA_PEM = readFileSync((await generateCertChain(caDir)).caCert, 'utf8');
await removeDir(caDir);
const CA = { pem: CA_PEM, source: '/tmp/corp-ca.pem' };

test('matrix: every client × http/https × CA/insecure/none × upstream set — every file parses, stdout parses', () => {
  let checked = 0;
  for (const kind of CLIENT_KINDS) {
    for (const mirror of [HTTP, HTTPS]) {
      for (const trust of ['none', 'insecure', 'ca'] as const) {
        for (const upstreams of [['docker.io'], ['ghcr.io'], THREE]) {
          const opts = { mirror, upstreams, insecure: trust === 'insecure', home: '/home/ann', ...(trust === 'ca' ? { ca: CA } : {}) };
          if (trust === 'ca' && mirror === HTTP) {
            assert.throws(() => generateClientConfig(kind, opts), /a CA only applies to an https mirror/);
            continue;
          }
          const files = generateClientConfig(kind, opts);
          for (const f of files) {
            assert.doesNotThrow(() => parsed(f), `${kind} ${mirror} ${trust} ${f.path}`);
            checked++;
          }
          // The CA is present exactly when asked for, byte for byte, and never printed on stdout.
          const pems = files.filter((f) => f.format === 'pem');
          assert.equal(pems.length > 0, trust === 'ca', `${kind} ${mirror} ${trust}`);
          for (const p of pems) assert.equal(p.content, CA_PEM);
          const printed = files.filter((f) => f.copyOf === undefined);
          assert.equal(renderContents(files), printed.map((f) => f.content).join(''));
          if (printed.length === 1) assert.doesNotThrow(() => parsed({ ...printed[0]!, content: renderContents(files) }));
          assert.doesNotMatch(renderContents(files), /BEGIN CERTIFICATE|^# \//m);
        }
      }
    }
  }
  assert.ok(checked > 150, `${checked} files`);
});

test('--ca: each client gets its documented setting', () => {
  const h = 'mirror.example.com';
  const docker = generateClientConfig('docker', { mirror: HTTPS, ca: CA });
  assert.deepEqual(byPath(docker, '/etc/docker/daemon.json'), { 'registry-mirrors': ['https://mirror.example.com'] });
  assert.equal(docker.find((f) => f.path === `/etc/docker/certs.d/${h}/ca.crt`)?.copyOf, '/tmp/corp-ca.pem');

  const ctrd = generateClientConfig('containerd', { mirror: HTTPS, upstreams: ['docker.io', 'ghcr.io'], ca: CA });
  assert.equal(byPath(ctrd, '/etc/containerd/certs.d/ghcr.io/hosts.toml').host['https://mirror.example.com'].ca, 'regcache-ca.crt');
  assert.ok(ctrd.some((f) => f.path === '/etc/containerd/certs.d/ghcr.io/regcache-ca.crt'));

  const bk = generateClientConfig('buildkit', { mirror: HTTPS, ca: CA });
  assert.deepEqual(byPath(bk, '/etc/buildkit/buildkitd.toml').registry[h], { ca: ['/etc/buildkit/regcache-ca.crt'] });
  assert.ok(bk.some((f) => f.path === '/etc/buildkit/regcache-ca.crt'));

  const earthly = generateClientConfig('earthly', { mirror: HTTPS, ca: CA, home: '/home/ann' });
  const e = byPath(earthly, '~/.earthly/config.yml');
  assert.deepEqual(e.global.buildkit_additional_args, ['-v', '/home/ann/.earthly/regcache-ca.crt:/etc/regcache-ca.crt:ro']);
  assert.deepEqual(toml(e.global.buildkit_additional_config).registry[h].ca, ['/etc/regcache-ca.crt']);

  const k3s = generateClientConfig('k3s', { mirror: HTTPS, ca: CA });
  assert.deepEqual(byPath(k3s, '/etc/rancher/k3s/registries.yaml').configs, { [h]: { tls: { ca_file: '/etc/rancher/k3s/regcache-ca.crt' } } });
  assert.ok(k3s.some((f) => f.path === '/etc/rancher/k3s/regcache-ca.crt'));

  for (const kind of ['podman', 'cri-o'] as const) {
    const files = generateClientConfig(kind, { mirror: HTTPS, ca: CA });
    assert.ok(files.some((f) => f.path === `/etc/containers/certs.d/${h}/ca.crt`), kind);
    assert.equal(byPath(files, '/etc/containers/registries.conf.d/regcache.conf').registry[0].mirror[0].insecure, undefined);
  }
  const rootless = generateClientConfig('podman', { mirror: HTTPS, ca: CA, rootless: true });
  assert.deepEqual(rootless.map((f) => f.path), ['~/.config/containers/registries.conf.d/regcache.conf', `~/.config/containers/certs.d/${h}/ca.crt`]);

  const kind = generateClientConfig('kind', { mirror: HTTPS, ca: CA, home: '/home/ann' });
  const dir = '/home/ann/.config/regcache/kind/certs.d';
  assert.equal(byPath(kind, `${dir}/docker.io/hosts.toml`).host['https://mirror.example.com'].ca, 'regcache-ca.crt');
  assert.ok(kind.some((f) => f.path === `${dir}/docker.io/regcache-ca.crt`), 'the CA sits in the mounted directory');
  assert.equal(byPath(kind, 'kind-regcache.yaml').nodes[0].extraMounts[0].hostPath, dir);

  assert.throws(() => generateClientConfig('docker', { mirror: HTTPS, ca: { pem: 'nope', source: 'x.pem' } }), /x\.pem: not a PEM certificate/);
  assert.throws(() => generateClientConfig('docker', { mirror: HTTPS, ca: CA, insecure: true }), /contradict/);
});

test('containerd 2.x notes: replace config_path, duplicate table, registry.mirrors on 2.2; dial_timeout', () => {
  const [f] = generateClientConfig('containerd', { mirror: HTTPS, dialTimeout: '2s' });
  assert.equal(parsed(f!).host['https://mirror.example.com'].dial_timeout, '2s');
  assert.match(f!.note!, /config_path = "\/etc\/containerd\/certs\.d:\/etc\/docker\/certs\.d"/);
  assert.match(f!.note!, /REPLACE the line with the single directory/);
  assert.match(f!.note!, /duplicate-table error/);
  assert.match(f!.note!, /registry\.mirrors .* stop the CRI plugin from loading on containerd 2\.2/);
  assert.match(f!.note!, /io\.containerd\.cri\.v1\.images/);
  assert.throws(() => generateClientConfig('containerd', { mirror: HTTPS, dialTimeout: '3 seconds' }), /not a duration/);
});

test('buildx: --buildkitd-config since 0.13, builders recreated after edits', () => {
  const note = generateClientConfig('buildkit', { mirror: HTTPS })[0]!.note!;
  assert.match(note, /0\.13 and later spell the flag --buildkitd-config; older ones --config/);
  assert.match(note, /recreate the builder \(docker buildx rm regcache/);
  assert.doesNotMatch(note, /0\.12/);
  assert.match(clientConfigAdvice('buildkit', { mirror: HTTPS }).restart, /buildx rm regcache/);
});

test('kind: hostPath under the home directory (no sudo), Docker Desktop file sharing note', () => {
  const files = generateClientConfig('kind', { mirror: HTTP, home: '/Users/ann' });
  const cluster = byPath(files, 'kind-regcache.yaml');
  assert.ok(cluster.nodes.every((n: any) => n.extraMounts[0].hostPath.startsWith('/Users/ann/')));
  assert.match(files.at(-1)!.note!, /Docker Desktop.*File sharing/s);
  assert.match(files.at(-1)!.note!, /no sudo/);
});

test('podman: rootless users with their own registries.conf are told the /etc drop-ins are ignored', () => {
  const [f] = generateClientConfig('podman', { mirror: HTTP });
  assert.match(f!.note!, /~\/\.config\/containers\/registries\.conf exists, the \/etc\/containers drop-ins are IGNORED/);
  assert.match(f!.note!, /--rootless/);
});

test('warning: docker/podman/CRI-O for docker.io with a default upstream that is not Docker Hub', () => {
  const notHub = { name: 'ghcr.io', dockerHub: false };
  for (const kind of ['docker', 'podman', 'cri-o'] as const) {
    const [w] = clientConfigAdvice(kind, { mirror: HTTP, upstreams: ['docker.io'], serverDefault: notHub }).warnings;
    assert.match(w!, /default upstream "ghcr\.io" does not stand for Docker Hub/, kind);
    assert.deepEqual(clientConfigAdvice(kind, { mirror: HTTP, upstreams: ['docker.io'], serverDefault: { name: 'docker.io', dockerHub: true } }).warnings, []);
    assert.deepEqual(clientConfigAdvice(kind, { mirror: HTTP, upstreams: ['quay.io'], serverDefault: notHub }).warnings, []);
  }
  // containerd-based clients say ?ns=docker.io: the default upstream does not matter to them.
  for (const kind of ['containerd', 'k3s', 'kind', 'buildkit', 'earthly'] as const) {
    assert.deepEqual(clientConfigAdvice(kind, { mirror: HTTP, serverDefault: notHub }).warnings, [], kind);
  }
});

test('--write: files land under ROOT, an existing daemon.json is merged and backed up, a broken one stops everything', async () => {
  const root = await makeTempDir('regcache-cc-write-');
  try {
    await mkdir(join(root, 'etc/docker'), { recursive: true });
    const before = '{"log-driver":"journald","registry-mirrors":["https://other.example"]}';
    await writeFile(join(root, 'etc/docker/daemon.json'), before);
    const files = generateClientConfig('docker', { mirror: HTTPS, ca: CA });
    const written = await writeClientFiles(files, { root, home: '/home/ann' });
    const daemon = JSON.parse(await readFile(join(root, 'etc/docker/daemon.json'), 'utf8'));
    assert.deepEqual(daemon, { 'log-driver': 'journald', 'registry-mirrors': ['https://other.example', 'https://mirror.example.com'] });
    assert.equal(written[0]!.merged, true);
    assert.equal(await readFile(written[0]!.backup!, 'utf8'), before);
    assert.equal(await readFile(join(root, 'etc/docker/certs.d/mirror.example.com/ca.crt'), 'utf8'), CA_PEM);
    // Idempotent: a second run changes nothing and makes no backup.
    const again = await writeClientFiles(files, { root, home: '/home/ann' });
    assert.ok(again.every((w) => w.unchanged && !w.backup));

    await writeFile(join(root, 'etc/docker/daemon.json'), '{ "debug": true, }');
    await rm(join(root, 'etc/docker/certs.d'), { recursive: true });
    await assert.rejects(writeClientFiles(files, { root, home: '/home/ann' }), /daemon\.json is not valid JSON .*nothing was written/);
    assert.equal(await readFile(join(root, 'etc/docker/daemon.json'), 'utf8'), '{ "debug": true, }');
    assert.equal(existsSync(join(root, 'etc/docker/certs.d')), false, 'no file written before the failure');

    // ~ paths go to the home directory under ROOT; relative paths to cwd under ROOT.
    assert.equal(targetPath('~/.earthly/config.yml', { root, home: '/home/ann', cwd: '/w' }), join(root, 'home/ann/.earthly/config.yml'));
    assert.equal(targetPath('kind-regcache.yaml', { home: '/home/ann', cwd: '/w' }), '/w/kind-regcache.yaml');
  } finally {
    await removeDir(root);
  }
});

test('CLI: stdout is only the file (valid JSON), stderr has the path, notes, warnings and restart; --upstream does not swallow the client', async () => {
  const r = await runCli(['client-config', '--upstream', 'ghcr.io', '--upstream', 'docker.io,quay.io', 'docker', '--mirror', HTTP]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { 'registry-mirrors': ['http://10.0.0.5:5000'], 'insecure-registries': ['10.0.0.5:5000'] });
  assert.match(r.stderr, /^# \/etc\/docker\/daemon\.json$/m);
  assert.match(r.stderr, /cannot mirror ghcr\.io, quay\.io/);
  assert.match(r.stderr, /warning: docker asks the mirror for Docker Hub images without a prefix/);
  assert.match(r.stderr, /# apply: sudo systemctl restart docker/);

  for (const kind of CLIENT_KINDS) {
    const k = await runCli(['client-config', kind, '--mirror', HTTPS, '--upstream', 'ghcr.io']);
    assert.equal(k.code, 0, `${kind}: ${k.stderr}`);
    const files = generateClientConfig(kind, { mirror: HTTPS, upstreams: ['ghcr.io'] });
    assert.equal(k.stdout, renderContents(files), kind);
    assert.doesNotMatch(k.stdout, /^# \//m, kind);
  }

  const dir = await makeTempDir('regcache-cc-cli-');
  try {
    const ca = join(dir, 'ca.pem');
    await writeFile(ca, CA_PEM);
    const cfg = join(dir, 'config.yml');
    await writeFile(cfg, 'version: 0.1\nproxy: { remoteurl: https://ghcr.io }\n');
    const w = await runCli(['client-config', 'podman', '--mirror', HTTPS, '--ca', ca, '--config', cfg, '--write', join(dir, 'root')]);
    assert.equal(w.code, 0, w.stderr);
    assert.equal(w.stdout, '');
    assert.match(w.stderr, /wrote .*\/etc\/containers\/registries\.conf\.d\/regcache\.conf/);
    assert.match(w.stderr, /wrote .*\/etc\/containers\/certs\.d\/mirror\.example\.com\/ca\.crt/);
    assert.match(w.stderr, /warning: the mirror's default upstream "ghcr\.io" does not stand for Docker Hub/);
    assert.match(w.stderr, /apply: none/);
    assert.equal(readFileSync(join(dir, 'root/etc/containers/certs.d/mirror.example.com/ca.crt'), 'utf8'), CA_PEM);

    const missing = await runCli(['client-config', 'docker', '--mirror', HTTPS, '--ca', join(dir, 'nope.pem')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /--ca .*nope\.pem: no such file/);
    assert.equal(missing.stdout, '');
  } finally {
    await removeDir(dir);
  }
});
