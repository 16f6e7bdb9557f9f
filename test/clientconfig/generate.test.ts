import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import YAML from 'yaml';
import {
  CLIENT_KINDS,
  ClientConfigError,
  generateClientConfig,
  renderForTerminal,
  type ClientKind,
  type GeneratedFile,
} from '../../src/clientconfig/index.js';

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
  assert.deepEqual(hub.host, { 'http://10.0.0.5:5000': { capabilities: ['pull', 'resolve'] } });
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
  const files = generateClientConfig('kind', { mirror: 'http://192.168.1.10:5000', upstreams: THREE, insecure: false });
  const cluster = byPath(files, 'kind-regcache.yaml');
  assert.equal(cluster.kind, 'Cluster');
  assert.equal(cluster.apiVersion, 'kind.x-k8s.io/v1alpha4');
  assert.match(cluster.containerdConfigPatches[0], /\[plugins\."io\.containerd\.grpc\.v1\.cri"\.registry\]\s+config_path = "\/etc\/containerd\/certs\.d"/);
  // The patch must itself be valid TOML.
  assert.equal(toml(cluster.containerdConfigPatches[0]).plugins['io.containerd.grpc.v1.cri'].registry.config_path, '/etc/containerd/certs.d');
  for (const node of cluster.nodes) {
    assert.deepEqual(node.extraMounts, [{ hostPath: '/etc/regcache/kind/certs.d', containerPath: '/etc/containerd/certs.d', readOnly: true }]);
  }
  const hub = byPath(files, '/etc/regcache/kind/certs.d/docker.io/hosts.toml');
  assert.deepEqual(hub.host['http://192.168.1.10:5000'].capabilities, ['pull', 'resolve']);
  assert.ok(files.some((f) => f.path === '/etc/regcache/kind/certs.d/quay.io/hosts.toml'));
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
