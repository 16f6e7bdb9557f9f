import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

const FILE = `
version: 0.1
log: { level: info }
storage:
  filesystem: { rootdirectory: /var/lib/registry }
  delete: { enabled: true }
http: { addr: ":5000", relativeurls: false }
proxy:
  remoteurl: https://registry-1.docker.io
  username: fileuser
  password: filepw
  ttl: 168h
`;

function problemsOf(fn: () => unknown): Array<{ path: string; message: string }> {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('REGISTRY_* environment overrides (distribution naming), env wins over the file', () => {
  test('REGISTRY_PROXY_REMOTEURL, REGISTRY_HTTP_ADDR, REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY', () => {
    const { config, warnings } = parseConfig(FILE, {
      REGISTRY_PROXY_REMOTEURL: 'https://ghcr.io',
      REGISTRY_HTTP_ADDR: '127.0.0.1:5999',
      REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: 'cache-dir',
      PATH: '/usr/bin', // not ours: untouched, no warning
    });
    assert.deepEqual(warnings, []);
    assert.equal(config.http.addr, '127.0.0.1:5999');
    assert.deepEqual(config.storage, { driver: 'filesystem', rootdirectory: resolve('cache-dir') });
    const u = config.upstreams[0]!;
    // the upstream is re-derived from the overridden URL
    assert.equal(u.remoteurl, 'https://ghcr.io');
    assert.equal(u.name, 'ghcr.io');
    assert.equal(u.dockerHub, false);
    assert.deepEqual(u.hosts, ['ghcr.io']);
    assert.deepEqual(u.authhosts, []);
    assert.equal(u.username, 'fileuser', 'keys not overridden keep their file value');
  });

  test('credentials, ttl, log level; string keys take the text verbatim', () => {
    const { config } = parseConfig(FILE, {
      REGISTRY_PROXY_USERNAME: 'envuser',
      REGISTRY_PROXY_PASSWORD: '0123 # not a comment: [x]',
      REGISTRY_PROXY_TTL: '0',
      REGISTRY_LOG_LEVEL: 'debug',
    });
    const u = config.upstreams[0]!;
    assert.equal(u.username, 'envuser');
    assert.equal(u.password, '0123 # not a comment: [x]');
    assert.equal(u.ttlMs, null);
    assert.equal(config.log.level, 'debug');
  });

  test('values coerce to the key type: bool, int, duration, size, list, mapping', () => {
    const { config } = parseConfig(FILE, {
      REGISTRY_HTTP_RELATIVEURLS: 'true',
      REGISTRY_HTTP_DRAINTIMEOUT: '90',
      REGISTRY_STORAGE_DELETE_ENABLED: 'false',
      REGISTRY_REGCACHE_CONNECTIONS: '8',
      REGISTRY_REGCACHE_CACHE_MAXSIZE: '10GiB',
      REGISTRY_REGCACHE_CACHE_LOWWATERMARK: '80%',
      REGISTRY_REGCACHE_CACHE_MANIFESTMEMORY: '8MiB',
      REGISTRY_REGCACHE_AUTHHOSTS: '[auth.docker.io, login.example.com]',
      REGISTRY_REGCACHE_TIMEOUTS: '{connect: 1s, idle: 2m}',
      REGISTRY_LOG_FIELDS_SERVICE: 'mirror',
      REGISTRY_REDIS_ADDR: 'redis:6379',
      REGISTRY_REDIS_TLS_ENABLED: 'true',
    });
    assert.equal(config.http.relativeurls, true);
    assert.equal(config.http.draintimeoutMs, 90_000, 'a bare number is seconds');
    assert.equal(config.storageDeleteEnabled, false);
    const u = config.upstreams[0]!;
    assert.equal(u.connections, 8);
    assert.deepEqual(u.authhosts, ['auth.docker.io', 'login.example.com']);
    assert.deepEqual(u.timeouts, { connectMs: 1_000, headersMs: 30_000, idleMs: 120_000 });
    assert.deepEqual(config.regcache.cache, { maxsizeBytes: 10 * 1024 ** 3, lowwatermark: 0.8, manifestMemoryBytes: 8 * 1024 ** 2 });
    assert.deepEqual(config.log.fields, { service: 'mirror' });
    assert.deepEqual(config.redis, { addr: 'redis:6379', db: 0, tls: true });
  });

  test('an empty variable unsets the key', () => {
    const { config } = parseConfig(FILE, { REGISTRY_PROXY_PASSWORD: '', REGISTRY_PROXY_TTL: '' });
    assert.equal(config.upstreams[0]!.password, undefined);
    assert.equal(config.upstreams[0]!.ttlMs, 604_800_000);
  });

  test('REGISTRY_STORAGE_S3_* replaces the file\'s filesystem driver; other storage keys stay', () => {
    const { config } = parseConfig(FILE, {
      REGISTRY_STORAGE_S3_REGION: 'eu-west-1',
      REGISTRY_STORAGE_S3_BUCKET: 'mirror',
      REGISTRY_STORAGE_S3_FORCEPATHSTYLE: 'true',
      REGISTRY_STORAGE_S3_REGIONENDPOINT: 'https://minio.local:9000',
    });
    assert.deepEqual(config.storage, {
      driver: 's3',
      region: 'eu-west-1',
      bucket: 'mirror',
      regionendpoint: 'https://minio.local:9000',
      rootdirectory: '',
      forcepathstyle: true,
      encrypt: false,
      chunksize: 10 * 1024 * 1024,
    });
    assert.equal(config.storageDeleteEnabled, true);
  });

  test('REGISTRY_STORAGE=<driver> selects a driver (applied before REGISTRY_STORAGE_<DRIVER>_*)', () => {
    assert.deepEqual(parseConfig(FILE, { REGISTRY_STORAGE: 'inmemory' }).config.storage, { driver: 'inmemory' });
    const s3 = parseConfig(FILE, { REGISTRY_STORAGE_S3_BUCKET: 'b', REGISTRY_STORAGE_S3_REGION: 'r', REGISTRY_STORAGE: 's3' });
    assert.equal(s3.config.storage.driver, 's3');
    assert.deepEqual(problemsOf(() => parseConfig(FILE, { REGISTRY_STORAGE: 'floppy' })), [
      { path: 'storage', message: 'unknown storage driver "floppy" (from REGISTRY_STORAGE)' },
    ]);
  });

  test('two different drivers from the environment is an error', () => {
    const problems = problemsOf(() => parseConfig(FILE, { REGISTRY_STORAGE_S3_BUCKET: 'b', REGISTRY_STORAGE_INMEMORY: '{}' }));
    assert.deepEqual(problems, [{ path: 'storage', message: 'environment names two storage drivers: inmemory and s3' }]);
  });

  test('list entries by index: REGISTRY_REGCACHE_UPSTREAMS_<i>_<KEY>', () => {
    const { config } = parseConfig(FILE, {
      REGISTRY_REGCACHE_UPSTREAMS_0_REMOTEURL: 'https://ghcr.io',
      REGISTRY_REGCACHE_UPSTREAMS_0_PREFIX: '[ghcr.io, ghcr]',
      REGISTRY_REGCACHE_UPSTREAMS_1_REMOTEURL: 'https://quay.io',
      REGISTRY_REGCACHE_UPSTREAMS_1_INSECURESKIPVERIFY: 'true',
    });
    assert.deepEqual(
      config.upstreams.map((u) => [u.name, u.prefixes, u.insecureSkipVerify]),
      [
        ['docker.io', [], false],
        ['ghcr.io', ['ghcr.io', 'ghcr'], false],
        ['quay.io', ['quay.io'], true],
      ],
    );
    assert.deepEqual(problemsOf(() => parseConfig(FILE, { REGISTRY_REGCACHE_UPSTREAMS_3_REMOTEURL: 'https://x.example' })), [
      { path: 'REGISTRY_REGCACHE_UPSTREAMS_3_REMOTEURL', message: 'index 3 skips entries (regcache.upstreams has 0)' },
    ]);
  });

  test('unknown variables are warnings naming them; the rest still applies', () => {
    const { config, warnings } = parseConfig(FILE, {
      REGISTRY_HTTP_FOO: 'x',
      REGISTRY_NOPE: '1',
      REGISTRY_PROXY_REMOTEURL_EXTRA: 'y',
      REGISTRY_HTTP_RELATIVEURLS_X: 'true',
      REGISTRY_HTTP_ADDR: ':6000',
    });
    assert.deepEqual(warnings.sort(), [
      'unknown environment variable REGISTRY_HTTP_FOO ignored',
      'unknown environment variable REGISTRY_HTTP_RELATIVEURLS_X ignored',
      'unknown environment variable REGISTRY_NOPE ignored',
      'unknown environment variable REGISTRY_PROXY_REMOTEURL_EXTRA ignored',
    ]);
    assert.equal(config.http.addr, ':6000');
    // a name that runs past a scalar key leaves that key alone
    assert.equal(config.upstreams[0]!.remoteurl, 'https://registry-1.docker.io');
    assert.equal(config.http.relativeurls, false);
  });

  test('env for an ignored key warns like the file key would', () => {
    const { warnings } = parseConfig(FILE, { REGISTRY_NOTIFICATIONS_ENDPOINTS: '[{name: a, url: "http://x"}]' });
    assert.deepEqual(warnings, ['key "notifications" ignored: not implemented by regcache']);
  });

  test('an invalid value from the environment names the key and the variable', () => {
    assert.deepEqual(problemsOf(() => parseConfig(FILE, { REGISTRY_HTTP_ADDR: 'abc' })), [
      { path: 'http.addr', message: 'expected host:port or :port, got "abc" (from REGISTRY_HTTP_ADDR)' },
    ]);
    assert.deepEqual(problemsOf(() => parseConfig(FILE, { REGISTRY_HTTP_RELATIVEURLS: 'sometimes' })), [
      { path: 'http.relativeurls', message: 'expected true or false, got "sometimes" (from REGISTRY_HTTP_RELATIVEURLS)' },
    ]);
    assert.deepEqual(problemsOf(() => parseConfig(FILE, { REGISTRY_PROXY_REMOTEURL: 'registry.example.com' })), [
      { path: 'proxy.remoteurl', message: 'must be an http(s) URL, got "registry.example.com" (from REGISTRY_PROXY_REMOTEURL)' },
    ]);
  });
});
