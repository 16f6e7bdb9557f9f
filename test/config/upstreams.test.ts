import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

const parse = (yaml: string) => parseConfig(yaml, {});

function problemsOf(yaml: string): Array<{ path: string; message: string }> {
  try {
    parse(yaml);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems;
  }
  assert.fail('expected a ConfigError');
}

const routes = (yaml: string) =>
  parse(yaml).config.upstreams.map((u) => ({ name: u.name, dockerHub: u.dockerHub, prefixes: u.prefixes, hosts: u.hosts, authhosts: u.authhosts }));

describe('upstream derivation', () => {
  test('proxy: is upstreams[0]; regcache.upstreams follow with prefix [name] by default', () => {
    assert.deepEqual(
      routes(`
proxy: { remoteurl: https://registry-1.docker.io }
regcache:
  upstreams:
    - { name: ghcr.io, remoteurl: https://ghcr.io, prefix: [ghcr.io, ghcr], hosts: [ghcr.io] }
    - { remoteurl: https://quay.io }
    - { remoteurl: "http://127.0.0.1:5001/" }
`),
      [
        { name: 'docker.io', dockerHub: true, prefixes: [], hosts: ['docker.io', 'registry-1.docker.io', 'index.docker.io'], authhosts: ['auth.docker.io'] },
        { name: 'ghcr.io', dockerHub: false, prefixes: ['ghcr.io', 'ghcr'], hosts: ['ghcr.io'], authhosts: [] },
        { name: 'quay.io', dockerHub: false, prefixes: ['quay.io'], hosts: ['quay.io'], authhosts: [] },
        // host:port is no repository name component, so no default prefix; routed by host only
        { name: '127.0.0.1:5001', dockerHub: false, prefixes: [], hosts: ['127.0.0.1:5001'], authhosts: [] },
      ],
    );
  });

  test('without proxy: and without regcache.upstreams, Docker Hub is the default', () => {
    const [u, ...rest] = parse('regcache: { freshness: 10s }').config.upstreams;
    assert.equal(rest.length, 0);
    assert.equal(u!.name, 'docker.io');
    assert.equal(u!.freshnessMs, 10_000);
  });

  test('only regcache.upstreams: the first is the default (no prefix, regcache defaults apply to it)', () => {
    const { config } = parse(`
regcache:
  freshness: 5s
  ca: /ca.pem
  authhosts: [auth.example.com]
  upstreams:
    - { remoteurl: https://mirror.example.com }
    - { remoteurl: https://ghcr.io }
`);
    const [first, second] = config.upstreams;
    assert.deepEqual([first!.name, first!.prefixes, first!.freshnessMs, first!.ca, first!.authhosts], [
      'mirror.example.com',
      [],
      5_000,
      '/ca.pem',
      ['auth.example.com'],
    ]);
    assert.deepEqual([second!.name, second!.prefixes, second!.freshnessMs, second!.ca, second!.authhosts], [
      'ghcr.io',
      ['ghcr.io'],
      30_000,
      undefined,
      [],
    ]);
  });

  test('Docker Hub is recognised by any of its hosts; dockerhub can be forced either way', () => {
    for (const url of ['https://registry-1.docker.io', 'https://docker.io', 'https://index.docker.io/']) {
      const [u] = parse(`proxy: { remoteurl: "${url}" }`).config.upstreams;
      assert.equal(u!.name, 'docker.io', url);
      assert.equal(u!.dockerHub, true, url);
    }
    const [, hubMirror] = parse(`
regcache:
  upstreams:
    - { remoteurl: https://quay.io }
    - { name: hub-mirror, remoteurl: "https://hub-mirror.example.com", dockerhub: true }
`).config.upstreams;
    assert.equal(hubMirror!.dockerHub, true);
    // A declared Docker Hub mirror answers containerd's ns=docker.io (and its own name).
    assert.deepEqual(hubMirror!.hosts, ['docker.io', 'registry-1.docker.io', 'index.docker.io', 'hub-mirror']);
    assert.deepEqual(hubMirror!.authhosts, [], 'the token hosts stay those of the real remote');
  });

  test('regcache.dockerhub declares the proxy: upstream a Docker Hub mirror; regcache.hosts names what it stands for', () => {
    const [hub] = parse(`
proxy: { remoteurl: "http://127.0.0.1:5001" }
regcache: { dockerhub: true }
`).config.upstreams;
    assert.deepEqual(
      { name: hub!.name, dockerHub: hub!.dockerHub, hosts: hub!.hosts, prefixes: hub!.prefixes },
      { name: '127.0.0.1:5001', dockerHub: true, hosts: ['docker.io', 'registry-1.docker.io', 'index.docker.io', '127.0.0.1:5001'], prefixes: [] },
    );
    const [corp, other] = parse(`
proxy: { remoteurl: "https://registry.corp.example" }
regcache:
  hosts: [docker.io, registry.corp.example]
  upstreams: [{ remoteurl: https://quay.io }]
`).config.upstreams;
    assert.deepEqual(corp!.hosts, ['docker.io', 'registry.corp.example']);
    assert.equal(corp!.dockerHub, false, 'hosts alone add no library/');
    assert.deepEqual(other!.hosts, ['quay.io'], 'regcache.hosts is for the default upstream only');
  });

  test('proxy: without remoteurl means Docker Hub with those credentials', () => {
    const [u] = parse('proxy: { username: me, password: tok }').config.upstreams;
    assert.deepEqual([u!.name, u!.remoteurl, u!.username, u!.password], ['docker.io', 'https://registry-1.docker.io', 'me', 'tok']);
  });

  test('prefix may be a single string; hosts are lower-cased; duplicates collapse', () => {
    const [, u] = parse(`
regcache:
  upstreams:
    - { remoteurl: https://quay.io }
    - { remoteurl: https://ghcr.io, prefix: ghcr, hosts: [GHCR.io, ghcr.io] }
`).config.upstreams;
    assert.deepEqual(u!.prefixes, ['ghcr']);
    assert.deepEqual(u!.hosts, ['ghcr.io']);
  });
});

describe('upstream collisions', () => {
  test('duplicate names', () => {
    assert.deepEqual(
      problemsOf(`
proxy: { remoteurl: https://ghcr.io }
regcache: { upstreams: [ { remoteurl: "https://ghcr.io/v2mirror", hosts: [mirror.example], prefix: m } ] }
`),
      [{ path: 'regcache.upstreams[0].name', message: '"ghcr.io" is also the name of upstream "ghcr.io" (proxy)' }],
    );
  });

  test('a prefix used by two upstreams names both', () => {
    assert.deepEqual(
      problemsOf(`
regcache:
  upstreams:
    - { remoteurl: https://mirror.example.com }
    - { remoteurl: https://ghcr.io, prefix: [ghcr] }
    - { name: quay, remoteurl: https://quay.io, prefix: [quay, ghcr] }
`),
      [{ path: 'regcache.upstreams[2].prefix', message: '"ghcr" is also a prefix of upstream "ghcr.io" (regcache.upstreams[1])' }],
    );
  });

  test('a host used by two upstreams names both', () => {
    assert.deepEqual(
      problemsOf(`
proxy: { remoteurl: https://registry-1.docker.io }
regcache: { upstreams: [ { name: hub2, remoteurl: "https://mirror.gcr.io", hosts: [docker.io] } ] }
`),
      [{ path: 'regcache.upstreams[0].hosts', message: '"docker.io" is also a host of upstream "docker.io" (proxy)' }],
    );
  });

  test('an upstream listen addr must be its own', () => {
    const problems = problemsOf(`
http: { addr: ":5000" }
regcache:
  upstreams:
    - { remoteurl: https://a.example, addr: ":5001" }
    - { remoteurl: https://b.example, addr: ":5001" }
    - { remoteurl: https://c.example, addr: ":5000" }
`);
    assert.deepEqual(problems, [
      { path: 'regcache.upstreams[1].addr', message: '":5001" is also the addr of upstream "a.example" (regcache.upstreams[0])' },
      { path: 'regcache.upstreams[2].addr', message: '":5000" is already http.addr or http.debug.addr' },
    ]);
  });

  test('invalid upstream names and hosts', () => {
    const problems = problemsOf(`
regcache:
  upstreams:
    - { remoteurl: https://a.example }
    - { name: "bad name", remoteurl: https://b.example, prefix: b, hosts: ["not a host"] }
`);
    assert.deepEqual(problems, [
      { path: 'regcache.upstreams[1].name', message: '"bad name": use letters, digits, ".", "_", "-" and ":" (starting with a letter or digit)' },
      { path: 'regcache.upstreams[1].hosts', message: '"not a host" is not a host name (host or host:port)' },
    ]);
  });
});
