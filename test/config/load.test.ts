import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { defaultConfig, loadConfig, parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { DESIGN_YAML } from '../support/designconfig.js';

/** The reference config from DESIGN.md (a distribution config.yml), verbatim. */

const HUB_HOSTS = ['docker.io', 'registry-1.docker.io', 'index.docker.io'];

/** Runs `fn`, which must throw a ConfigError; returns its problems. */
function problemsOf(fn: () => unknown): Array<{ path: string; message: string }> {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    return e.problems;
  }
  assert.fail('expected a ConfigError');
}

const parse = (yaml: string, env: NodeJS.ProcessEnv = {}) => parseConfig(yaml, env);

describe('DESIGN.md reference config', () => {
  test('loads unchanged, every key meaning what it means to distribution, no warnings', () => {
    const { config, warnings } = parse(DESIGN_YAML);
    assert.deepEqual(warnings, []);
    assert.deepEqual(config, {
      log: { level: 'info', formatter: 'text', fields: { service: 'registry' }, accesslog: { disabled: true } },
      storage: { driver: 'filesystem', rootdirectory: '/var/lib/registry' },
      storageDeleteEnabled: true,
      storageRedirect: true,
      http: {
        addr: ':5000',
        relativeurls: false,
        draintimeoutMs: 60_000,
        headers: { 'X-Content-Type-Options': ['nosniff'] },
        debug: { addr: ':5001', prometheus: { enabled: true, path: '/metrics' } },
        tls: {
          certificate: '/path/cert.pem',
          key: '/path/key.pem',
          clientcas: [],
          letsencrypt: { cachefile: '/path/le.json', email: 'a@b.c', hosts: ['mirror.example.com'] },
        },
      },
      auth: { htpasswd: { realm: 'basic-realm', path: '/auth/htpasswd' } },
      health: { storagedriver: { enabled: true, intervalMs: 10_000, threshold: 3 } },
      upstreams: [
        {
          name: 'docker.io',
          remoteurl: 'https://registry-1.docker.io',
          username: 'user',
          password: 'token',
          ttlMs: 604_800_000,
          freshnessMs: 30_000,
          timeouts: { connectMs: 10_000, headersMs: 30_000, idleMs: 60_000 },
          insecureSkipVerify: false,
          connections: 32,
          dockerHub: true,
          prefixes: [],
          hosts: HUB_HOSTS,
          allow: [],
          deny: [],
          authhosts: ['auth.docker.io'],
        },
      ],
      regcache: {
        requireauth: false,
        negativeTtlMs: 15_000,
        workers: 1,
        acme: { challenge: 'tls-alpn-01', httpaddr: ':80' },
        cache: { lowwatermark: 0.9, manifestMemoryBytes: 64 * 1024 * 1024 },
        dashboard: { enabled: true, path: '/dashboard', mainlistener: false, egressprice: 0.09, currency: 'USD' },
      },
    });
  });

  test('the regcache: extension block from the design loads with no warnings', () => {
    const { config, warnings } = parse(`${DESIGN_YAML}
regcache:
  freshness: 45s
  timeouts: { connect: 5s, headers: 20s, idle: 90s }
  ca: /path/ca.pem
  insecureskipverify: false
  connections: 16
  authhosts: [auth.docker.io]
  requireauth: true
  cache: { maxsize: 50GiB, lowwatermark: 90%, manifestmemory: 16MiB }
  upstreams:
    - { name: ghcr.io, remoteurl: https://ghcr.io, prefix: [ghcr.io, ghcr], hosts: [ghcr.io] }
    - name: corp
      remoteurl: https://registry.corp.example:8443/mirror/
      username: bot
      password: pw
      ttl: 0
      freshness: 1m
      ca: /etc/corp-ca.pem
      insecureskipverify: true
      timeouts: { connect: 1s }
      connections: 4
      prefix: corp
      hosts: [registry.corp.example:8443]
      addr: 127.0.0.1:5002
      allow: ['team/*']
      deny: ['team/secret-*']
      credentialhelper: /usr/bin/docker-credential-corp
      authhosts: [sso.corp.example]
      dockerhub: false
`);
    assert.deepEqual(warnings, []);
    assert.equal(config.regcache.requireauth, true);
    assert.deepEqual(config.regcache.cache, { maxsizeBytes: 50 * 1024 ** 3, lowwatermark: 0.9, manifestMemoryBytes: 16 * 1024 ** 2 });
    const [hub, ghcr, corp] = config.upstreams;
    assert.equal(hub!.freshnessMs, 45_000);
    assert.equal(hub!.ca, '/path/ca.pem');
    assert.equal(hub!.connections, 16);
    assert.deepEqual(hub!.timeouts, { connectMs: 5_000, headersMs: 20_000, idleMs: 90_000 });
    assert.deepEqual(ghcr!.prefixes, ['ghcr.io', 'ghcr']);
    assert.equal(ghcr!.freshnessMs, 30_000, 'regcache.freshness is for the default upstream only');
    assert.equal(ghcr!.ca, undefined);
    assert.deepEqual(corp, {
      name: 'corp',
      remoteurl: 'https://registry.corp.example:8443/mirror',
      username: 'bot',
      password: 'pw',
      ttlMs: null,
      freshnessMs: 60_000,
      timeouts: { connectMs: 1_000, headersMs: 20_000, idleMs: 90_000 },
      ca: '/etc/corp-ca.pem',
      insecureSkipVerify: true,
      connections: 4,
      dockerHub: false,
      prefixes: ['corp'],
      hosts: ['registry.corp.example:8443'],
      addr: '127.0.0.1:5002',
      allow: ['team/*'],
      deny: ['team/secret-*'],
      credentialhelper: '/usr/bin/docker-credential-corp',
      authhosts: ['sso.corp.example'],
    });
  });
});

describe('embedded default (no file)', () => {
  const expectDefault = (c: ReturnType<typeof defaultConfig>): void => {
    assert.deepEqual(c.storage, { driver: 'filesystem', rootdirectory: resolve('data') });
    assert.equal(c.http.addr, ':5000');
    assert.deepEqual(c.log, { level: 'info', formatter: 'text', fields: {}, accesslog: { disabled: false } });
    assert.equal(c.upstreams.length, 1);
    const u = c.upstreams[0]!;
    assert.equal(u.name, 'docker.io');
    assert.equal(u.remoteurl, 'https://registry-1.docker.io');
    assert.equal(u.dockerHub, true);
    assert.deepEqual(u.authhosts, ['auth.docker.io']);
    assert.deepEqual(u.hosts, HUB_HOSTS);
    assert.equal(u.ttlMs, 604_800_000);
    assert.equal(u.username, undefined);
    assert.equal(c.http.tls, undefined);
    assert.equal(c.auth, undefined);
    assert.equal(c.redis, undefined);
  };

  test('defaultConfig()', () => expectDefault(defaultConfig()));

  test('loadConfig() without a file: source "(embedded default)", no warnings', async () => {
    const loaded = await loadConfig({ env: {} });
    assert.equal(loaded.source, '(embedded default)');
    assert.deepEqual(loaded.warnings, []);
    expectDefault(loaded.config);
  });

  test('an empty or comment-only file means the same defaults', () => {
    expectDefault(parse('').config);
    expectDefault(parse('# nothing here\n').config);
  });

  test('env overrides apply to the embedded default too', async () => {
    const { config } = await loadConfig({ env: { REGISTRY_HTTP_ADDR: '127.0.0.1:6000', REGISTRY_PROXY_USERNAME: 'me' } });
    assert.equal(config.http.addr, '127.0.0.1:6000');
    assert.equal(config.upstreams[0]!.name, 'docker.io');
    assert.equal(config.upstreams[0]!.username, 'me');
  });
});

describe('loadConfig from a file', () => {
  let dir: string;
  before(async () => {
    dir = await makeTempDir('regcache-config-');
  });
  after(async () => {
    await removeDir(dir);
  });

  test('reads the file; source is its path', async () => {
    const file = join(dir, 'config.yml');
    await writeFile(file, DESIGN_YAML);
    const loaded = await loadConfig({ file, env: {} });
    assert.equal(loaded.source, file);
    assert.equal(loaded.config.http.debug?.addr, ':5001');
  });

  test('REGISTRY_CONFIGURATION_PATH names the file when none is given (as distribution)', async () => {
    const file = join(dir, 'via-env.yml');
    await writeFile(file, 'http: { addr: "127.0.0.1:7000" }\n');
    const loaded = await loadConfig({ env: { REGISTRY_CONFIGURATION_PATH: file } });
    assert.equal(loaded.source, file);
    assert.equal(loaded.config.http.addr, '127.0.0.1:7000');
    assert.deepEqual(loaded.warnings, []);
  });

  test('a missing file is a ConfigError naming it', async () => {
    const file = join(dir, 'nope.yml');
    await assert.rejects(loadConfig({ file, env: {} }), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.deepEqual(e.problems, [{ path: file, message: 'cannot read config file: ENOENT' }]);
      return true;
    });
  });

  test('YAML syntax errors carry file:line:col', async () => {
    const file = join(dir, 'broken.yml');
    await writeFile(file, 'http:\n  addr: :5000\n  headers: [a\n');
    await assert.rejects(loadConfig({ file, env: {} }), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.problems[0]!.path, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+$`));
      assert.match(e.problems[0]!.message, /^YAML syntax error: /);
      return true;
    });
  });
});

describe('unknown and ignored keys are warnings, named by full path', () => {
  test('unknown keys anywhere', () => {
    const { config, warnings } = parse(`
http: { addr: ":5000", foo: 1 }
bogus: { deep: true }
storage: { filesystem: { rootdirectory: /x, colour: blue } }
regcache:
  cache: { maxsize: 1G, policy: lru }
  upstreams:
    - { remoteurl: https://quay.io, mirrorz: true }
`);
    assert.deepEqual(warnings.sort(), [
      'unknown key "bogus" ignored',
      'unknown key "http.foo" ignored',
      'unknown key "regcache.cache.policy" ignored',
      'unknown key "regcache.upstreams[0].mirrorz" ignored',
      'unknown key "storage.filesystem.colour" ignored',
    ]);
    assert.equal(config.http.addr, ':5000');
    assert.equal(config.regcache.cache.maxsizeBytes, 1e9);
  });

  test('distribution keys we accept but do not implement: exactly these warn', () => {
    const { config, warnings } = parse(`
version: 0.1
loglevel: debug
log:
  hooks: [{ type: mail, levels: [panic] }]
  reportcaller: true
storage:
  filesystem: { rootdirectory: /srv/registry, maxthreads: 100 }
  maintenance: { uploadpurging: { enabled: true, age: 168h, interval: 24h, dryrun: false }, readonly: { enabled: false } }
  redirect: { disable: true }
  cache: { blobdescriptor: redis, blobdescriptorsize: 10000 }
  tag: { concurrencylimit: 8 }
http:
  addr: :5000
  prefix: /registry/
  host: https://mirror.example.com
  secret: asecretforlocaldevelopment
  http2: { disabled: false }
  h2c: { enabled: true }
  tls:
    certificate: /c.pem
    key: /k.pem
    clientcas: [/ca1.pem, /ca2.pem]
    minimumtls: tls1.2
    ciphersuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
redis:
  addr: localhost:6379
  password: redispw
  db: 2
  tls: { enabled: true }
  dialtimeout: 10ms
  pool: { maxidle: 16 }
health:
  storagedriver: { enabled: false }
  file: [{ file: /tmp/down, interval: 10s }]
notifications: { endpoints: [{ name: alistener, url: https://x.example/event }] }
middleware: { registry: [{ name: redirect }] }
reporting: { bugsnag: { apikey: k } }
catalog: { maxentries: 100 }
validation: { manifests: { urls: { allow: ['^https?://([^/]+\\.)*example\\.com/'] } } }
compatibility: { schema1: { enabled: true } }
proxy:
  remoteurl: https://registry-1.docker.io
  exec: { command: /bin/helper, lifetime: 1h }
`);
    assert.deepEqual(warnings.sort(), [
      'key "catalog" ignored: not implemented by regcache',
      'key "health.file" ignored: not implemented by regcache',
      'key "http.h2c" ignored: not implemented by regcache',
      'key "http.prefix" ignored: not supported (the API is served at /v2/)',
      'key "http.tls.ciphersuites" ignored: not implemented by regcache',
      'key "log.hooks" ignored: not implemented by regcache',
      'key "log.reportcaller" ignored: not implemented by regcache',
      'key "loglevel" deprecated: use log.level',
      'key "middleware" ignored: not implemented by regcache',
      'key "notifications" ignored: not implemented by regcache',
      'key "proxy.exec" ignored: not implemented (use regcache.upstreams[].credentialhelper)',
      'key "redis.dialtimeout" ignored: not implemented by regcache',
      'key "redis.pool" ignored: not implemented by regcache',
      'key "reporting" ignored: not implemented by regcache',
      'key "storage.filesystem.maxthreads" ignored: not implemented by regcache',
      'key "storage.maintenance" ignored: not implemented (a mirror takes no uploads and is always read-only)',
      'key "storage.tag" ignored: not implemented by regcache',
    ]);
    // ...and the accepted ones mean what they say
    assert.equal(config.log.level, 'debug', 'deprecated loglevel is honoured when log.level is absent');
    assert.equal(config.storageRedirect, false);
    assert.equal(config.http.host, 'https://mirror.example.com');
    assert.deepEqual(config.http.tls, {
      certificate: '/c.pem',
      key: '/k.pem',
      clientcas: ['/ca1.pem', '/ca2.pem'],
      minimumtls: 'tls1.2',
    });
    assert.deepEqual(config.redis, { addr: 'localhost:6379', password: 'redispw', db: 2, tls: true });
  });

  test('storage.inmemory and storage.s3 with distribution parameters', () => {
    assert.deepEqual(parse('storage: { inmemory: }').config.storage, { driver: 'inmemory' });
    const { config, warnings } = parse(`
storage:
  s3:
    region: us-east-1
    bucket: cache
    regionendpoint: minio.local:9000
    accesskey: AKIA
    secretkey: s3cr3t
    rootdirectory: /mirror
    forcepathstyle: true
    encrypt: false
    chunksize: 16MiB
    secure: false
    v4auth: true
    storageclass: STANDARD
  redirect: { disable: true }
`);
    assert.deepEqual(warnings, ['key "storage.s3.storageclass" ignored: not implemented by regcache']);
    assert.deepEqual(config.storage, {
      driver: 's3',
      region: 'us-east-1',
      bucket: 'cache',
      regionendpoint: 'http://minio.local:9000',
      accesskey: 'AKIA',
      secretkey: 's3cr3t',
      rootdirectory: '/mirror',
      forcepathstyle: true,
      encrypt: false,
      chunksize: 16 * 1024 * 1024,
    });
    assert.equal(config.storageRedirect, false);
  });

  test('storage.filesystem without rootdirectory uses distribution\'s /var/lib/registry; relative paths resolve against cwd', () => {
    assert.deepEqual(parse('storage: { filesystem: {} }').config.storage, { driver: 'filesystem', rootdirectory: '/var/lib/registry' });
    assert.deepEqual(parse('storage: { filesystem: { rootdirectory: rel/dir } }').config.storage, {
      driver: 'filesystem',
      rootdirectory: resolve('rel/dir'),
    });
  });

  test('headers: a single string is wrapped in a list; redis.tls may be a bool', () => {
    const { config } = parse('http: { headers: { X-A: one, X-B: [two, three] } }\nredis: { addr: "r:6379", tls: true }');
    assert.deepEqual(config.http.headers, { 'X-A': ['one'], 'X-B': ['two', 'three'] });
    assert.equal(config.redis?.tls, true);
  });

  test('log levels: distribution names plus trace/fatal; panic means fatal; formatter json/logstash', () => {
    for (const [given, level] of [['error', 'error'], ['warn', 'warn'], ['INFO', 'info'], ['debug', 'debug'], ['trace', 'trace'], ['fatal', 'fatal'], ['panic', 'fatal']]) {
      assert.equal(parse(`log: { level: ${given} }`).config.log.level, level);
    }
    assert.equal(parse('log: { formatter: json }').config.log.formatter, 'json');
    assert.equal(parse('log: { formatter: logstash }').config.log.formatter, 'logstash');
  });

  test('http.addr forms', () => {
    for (const addr of [':5000', '127.0.0.1:5000', '[::1]:5000', '0.0.0.0:5000', 'localhost:0', 'mirror.example.com:443']) {
      assert.equal(parse(`http: { addr: "${addr}" }`).config.http.addr, addr);
    }
  });

  test('string keys keep what was written (yaml.v2 semantics): password 0123 stays "0123"', () => {
    const { config } = parse('proxy: { remoteurl: "https://r.example", username: 007, password: 0123 }');
    assert.equal(config.upstreams[0]!.username, '007');
    assert.equal(config.upstreams[0]!.password, '0123');
  });

  test('proxy.ttl 0 keeps content forever (null); absent means 168h', () => {
    assert.equal(parse('proxy: { remoteurl: "https://r.example", ttl: 0 }').config.upstreams[0]!.ttlMs, null);
    assert.equal(parse('proxy: { remoteurl: "https://r.example", ttl: 1h30m }').config.upstreams[0]!.ttlMs, 5_400_000);
    assert.equal(parse('proxy: { remoteurl: "https://r.example" }').config.upstreams[0]!.ttlMs, 604_800_000);
  });
});

describe('invalid values: ConfigError naming each key path and why', () => {
  const cases: Array<[string, string, string, string | RegExp]> = [
    ['http.addr', 'http: { addr: abc }', 'http.addr', 'expected host:port or :port, got "abc"'],
    ['http.addr port range', 'http: { addr: ":70000" }', 'http.addr', 'expected host:port or :port, got ":70000"'],
    ['proxy.ttl', 'proxy: { remoteurl: "https://r.example", ttl: 1x }', 'proxy.ttl', 'invalid duration "1x" (use e.g. 168h, 30m, 10s)'],
    ['proxy.remoteurl scheme', 'proxy: { remoteurl: "ftp://r.example" }', 'proxy.remoteurl', 'must be an http(s) URL, got "ftp://r.example"'],
    ['proxy.remoteurl garbage', 'proxy: { remoteurl: "registry" }', 'proxy.remoteurl', 'must be an http(s) URL, got "registry"'],
    ['log.level', 'log: { level: loud }', 'log.level', 'expected one of error, warn, warning, info, debug, trace, fatal, panic; got "loud"'],
    ['log.formatter', 'log: { formatter: xml }', 'log.formatter', 'expected one of text, json, logstash; got "xml"'],
    ['bool', 'http: { relativeurls: maybe }', 'http.relativeurls', 'expected true or false, got "maybe"'],
    ['int', 'health: { storagedriver: { threshold: 0 } }', 'health.storagedriver.threshold', 'must be at least 1, got 0'],
    ['int type', 'regcache: { connections: many }', 'regcache.connections', 'expected an integer, got "many"'],
    ['draintimeout', 'http: { draintimeout: soon }', 'http.draintimeout', 'invalid duration "soon" (use e.g. 168h, 30m, 10s)'],
    ['size', 'regcache: { cache: { maxsize: lots } }', 'regcache.cache.maxsize', 'invalid size "lots" (use e.g. 50GiB, 512MB, or a number of bytes)'],
    ['manifest memory', 'regcache: { cache: { manifestmemory: -5MiB } }', 'regcache.cache.manifestmemory', 'invalid size "-5MiB" (use e.g. 50GiB, 512MB, or a number of bytes)'],
    ['manifest memory unit', 'regcache: { cache: { manifestmemory: 64 mebibytes } }', 'regcache.cache.manifestmemory', 'invalid size "64 mebibytes" (use e.g. 50GiB, 512MB, or a number of bytes)'],
    ['ratio', 'regcache: { cache: { lowwatermark: 150% } }', 'regcache.cache.lowwatermark', 'invalid ratio "150%" (use e.g. 90% or 0.9)'],
    ['mapping expected', 'http: 5', 'http', 'expected a mapping, got 5'],
    ['list expected', 'regcache: { authhosts: auth.example }', 'regcache.authhosts', 'expected a list, got "auth.example"'],
    ['string expected', 'storage: { filesystem: { rootdirectory: [a, b] } }', 'storage.filesystem.rootdirectory', 'expected a string, got a list'],
    ['header values', 'http: { headers: { X-A: { b: c } } }', 'http.headers.X-A', 'expected a string or a list of strings, got a mapping'],
    ['version', 'version: 0.2', 'version', 'unsupported version "0.2" (expected 0.1)'],
    ['two drivers', 'storage: { filesystem: { rootdirectory: /a }, inmemory: {} }', 'storage', 'exactly one storage driver may be configured, got filesystem, inmemory'],
    ['unsupported driver', 'storage: { gcs: { bucket: b } }', 'storage.gcs', 'storage driver "gcs" is not supported (use filesystem, inmemory or s3)'],
    ['s3 region', 'storage: { s3: { bucket: b } }', 'storage.s3.region', 'required'],
    ['s3 chunksize', 'storage: { s3: { region: r, bucket: b, chunksize: 1MiB } }', 'storage.s3.chunksize', 'must be at least 5MiB (5242880), got 1048576'],
    ['token auth', 'auth: { token: { realm: x } }', 'auth.token', 'token authentication is not supported (use auth.htpasswd)'],
    ['htpasswd path', 'auth: { htpasswd: { realm: r } }', 'auth.htpasswd.path', 'required'],
    ['tls key', 'http: { tls: { certificate: /c.pem } }', 'http.tls.key', 'required with http.tls.certificate'],
    ['minimumtls', 'http: { tls: { certificate: /c, key: /k, minimumtls: tls1.9 } }', 'http.tls.minimumtls', /^expected one of tls1\.0, tls1\.1, tls1\.2, tls1\.3; got "tls1\.9"$/],
    ['unix socket', 'http: { net: unix, addr: ":1" }', 'http.net', 'unix sockets are not supported (use tcp)'],
    ['requireauth', 'regcache: { requireauth: true }', 'regcache.requireauth', 'requires auth.htpasswd'],
    ['dashboard path', 'regcache: { dashboard: { path: /v2/ui } }', 'regcache.dashboard.path', 'expected an absolute URL path outside /v2, /admin and /debug, got "/v2/ui"'],
    ['egress price', 'regcache: { dashboard: { egressprice: cheap } }', 'regcache.dashboard.egressprice', 'expected a price per GB (e.g. 0.09), got "cheap"'],
    ['upstream remoteurl', 'regcache: { upstreams: [ { name: x } ] }', 'regcache.upstreams[0].remoteurl', 'required'],
    ['upstream addr', 'regcache: { upstreams: [ { remoteurl: "https://q.example", addr: nope } ] }', 'regcache.upstreams[0].addr', 'expected host:port or :port, got "nope"'],
    ['upstream prefix', 'regcache: { upstreams: [ { remoteurl: "https://q.example", prefix: "Bad/" } ] }', 'regcache.upstreams[0].prefix', '"Bad/" is not a repository name prefix (e.g. ghcr.io or ghcr)'],
    ['redis db', 'redis: { addr: "r:6379", db: -1 }', 'redis.db', 'must be at least 0, got -1'],
    ['debug path', 'http: { debug: { addr: ":5001", prometheus: { path: metrics } } }', 'http.debug.prometheus.path', 'must start with "/", got "metrics"'],
  ];
  for (const [name, yaml, path, message] of cases) {
    test(name, () => {
      const problems = problemsOf(() => parse(yaml));
      const p = problems.find((x) => x.path === path);
      assert.ok(p, `no problem at ${path}: ${JSON.stringify(problems)}`);
      if (typeof message === 'string') assert.equal(p.message, message);
      else assert.match(p.message, message);
    });
  }

  test('every problem is listed at once, and the error message has one line per problem', () => {
    try {
      parse('http: { addr: abc, draintimeout: 1x }\nproxy: { remoteurl: nope, ttl: 2y }\nlog: { level: loud }');
      assert.fail('expected a ConfigError');
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      assert.deepEqual(e.problems.map((p) => p.path).sort(), ['http.addr', 'http.draintimeout', 'log.level', 'proxy.remoteurl', 'proxy.ttl']);
      assert.equal(e.message.split('\n').length, 5);
      assert.match(e.message, /^http\.addr: expected host:port or :port, got "abc"$/m);
    }
  });

  test('YAML syntax error → ConfigError with line and column', () => {
    const problems = problemsOf(() => parseConfig('log:\n  level: info\n   formatter: [json\n', {}, 'my.yml'));
    assert.ok(problems.length >= 1);
    assert.match(problems[0]!.path, /^my\.yml:\d+:\d+$/);
    assert.match(problems[0]!.message, /^YAML syntax error: \S/);
  });

  test('duplicate keys are a YAML error naming the line', () => {
    const problems = problemsOf(() => parseConfig('http: { addr: ":1" }\nhttp: { addr: ":2" }\n', {}, 'c.yml'));
    assert.deepEqual(problems, [{ path: 'c.yml:2:1', message: 'YAML syntax error: Map keys must be unique' }]);
  });

  test('a document that is not a mapping', () => {
    assert.deepEqual(problemsOf(() => parse('- a\n- b\n')), [{ path: '', message: 'expected a mapping of configuration keys, got a list' }]);
    assert.deepEqual(problemsOf(() => parse('just text')), [{ path: '', message: 'expected a mapping of configuration keys, got "just text"' }]);
  });

  test('recursive aliases (alias bombs) are refused, not expanded', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (const c of 'bcdefghij') bomb.push(`${c}: &${c} [${Array(10).fill(`*${String.fromCharCode(c.charCodeAt(0) - 1)}`).join(', ')}]`);
    const problems = problemsOf(() => parse(bomb.join('\n')));
    assert.deepEqual(problems, [{ path: '', message: 'YAML document too large or recursive (aliases)' }]);
  });

  test('YAML anchors and merge keys work', () => {
    const { config } = parse(`
defaults: &t { connect: 3s, headers: 4s }
regcache:
  timeouts: { <<: *t, idle: 5s }
`);
    assert.deepEqual(config.upstreams[0]!.timeouts, { connectMs: 3_000, headersMs: 4_000, idleMs: 5_000 });
  });
});

describe('secrets never appear in errors or warnings', () => {
  const SECRET = 'hunter2-Zq9';
  /** `refused`: the config must be rejected (not merely parsed without leaking). */
  const assertClean = (fn: () => unknown, opts: { refused?: boolean } = {}): void => {
    let text = '';
    try {
      const r = fn() as { warnings?: string[] };
      text = JSON.stringify(r.warnings ?? []);
      assert.ok(!opts.refused, 'the config was accepted');
    } catch (e) {
      assert.ok(e instanceof ConfigError, String(e));
      text = `${e.message}\n${JSON.stringify(e.problems)}`;
      assert.ok(e.problems.length > 0);
    }
    assert.ok(!text.includes(SECRET), `secret leaked: ${text}`);
    assert.ok(!text.includes('hunter2'), `secret leaked: ${text}`);
  };

  test('secret next to an invalid value', () => assertClean(() => parse(`proxy: { remoteurl: "https://r.example", password: ${SECRET}, ttl: 1x }`)));
  test('secret of the wrong type', () => {
    assertClean(() => parse(`proxy: { remoteurl: "https://r.example", password: [${SECRET}] }`));
    assertClean(() => parse(`redis: { addr: "r:1", password: { p: ${SECRET} } }`));
    assertClean(() => parse(`storage: { s3: { region: r, bucket: b, accesskey: a, secretkey: [${SECRET}] } }`));
  });
  test('YAML syntax error on the secret line', () => {
    assertClean(() => parse(`proxy:\n  remoteurl: https://r.example\n  password: "${SECRET}\n  ttl: 1h\n`));
    assertClean(() => parse(`proxy:\n  password: ${SECRET}\n    username: x\n`));
    assertClean(() => parse(`redis: { password: ${SECRET}, addr: [ }\n`));
  });
  test('credentials in a URL are refused without echoing it', () => {
    assertClean(() => parse(`proxy: { remoteurl: "https://user:${SECRET}@r.example" }`), { refused: true });
    assertClean(() => parse(`proxy: { remoteurl: "ftp://user:${SECRET}@r.example" }`), { refused: true });
  });
  test('unknown keys next to secrets: only key names are shown', () => {
    assertClean(() => parse(`proxy: { remoteurl: "https://r.example", pasword: ${SECRET} }\nredis: { addr: "r:1", password: ${SECRET}, passwd: ${SECRET} }`));
  });
  test('from the environment', () => {
    assertClean(() => parse('proxy: { remoteurl: "https://r.example" }', { REGISTRY_PROXY_PASSWORD: SECRET, REGISTRY_PROXY_TTL: 'bad' }));
    assertClean(() => parse('', { REGISTRY_STORAGE_S3_SECRETKEY: SECRET, REGISTRY_STORAGE_S3_ACCESSKEY: 'a' }));
  });
});
