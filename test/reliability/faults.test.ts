// Upstream faults between regcache and a real distribution registry (the loopback fault proxy in between).
// Every scenario: the client gets verified bytes or a clear failure, nothing partial is committed, and the
// next request succeeds once the fault clears.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFaultProxy, type FaultProxy, type FaultRule } from '../support/faultproxy.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { freePort } from '../support/ports.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import {
  assertHonest,
  assertStoreConsistent,
  cachedFiles,
  listFiles,
  ociErrorCode,
  request,
  SHORT_TIMEOUTS,
  startSwitch,
  waitUploadsEmpty,
  type Outcome,
} from './support.js';

type Expect =
  | { ok: true }
  /** a clear failure: an aborted body, or this error status + OCI code */
  | { fail: true; status?: number; code?: string; headers?: Record<string, string> };

interface Scenario {
  name: string;
  /** a function when the rules need fixtures built in before() */
  rules: FaultRule[] | (() => FaultRule[]);
  expect: Expect;
  /** upstream requests (any method) the fault proxy must have seen for the target path during the faulty request */
  upstreamAttempts?: number;
  /** the faulty request must end within this many ms */
  withinMs?: number;
}

describe('upstream faults (fault proxy → distribution)', () => {
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let work: string;
  let app: BuiltImage;
  let other: BuiltImage;
  let otherManifest: string;

  before(async () => {
    work = await makeTempDir('reliability-faults-');
    upstream = await startRegistry();
    app = await buildImage({ dir: join(work, 'app'), layers: [1 << 20, 200_000], seed: 'faults-app' });
    other = await buildImage({ dir: join(work, 'other'), layers: [1000], seed: 'faults-other' });
    await pushImage(app, upstream.host, 'team/app:1');
    await pushImage(other, upstream.host, 'team/other:1');
    otherManifest = await readFile(join(other.layoutDir, 'blobs', 'sha256', other.manifestDigest.slice(7)), 'utf8');
    proxy = await startFaultProxy(upstream.url);
  });

  after(async () => {
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  const layer = () => app.manifests[0]!.layers[0]!;
  const manifestBytes = () => readFile(join(app.layoutDir, 'blobs', 'sha256', app.manifestDigest.slice(7)));

  async function withCache<T>(fn: (c: RunningRegcache) => Promise<T>, remote = proxy.url): Promise<T> {
    const c = await startRegcache({ upstreamUrl: remote, config: SHORT_TIMEOUTS });
    try {
      return await fn(c);
    } finally {
      proxy.clearRules();
      await c.stop();
    }
  }

  function check(o: Outcome, expect: Expect, target: { digest: string; size: number }, name: string): void {
    const ok = assertHonest(o, target, name);
    if ('ok' in expect) {
      assert.ok(ok, `${name}: expected success, got ${o.status} ${o.error ?? o.body.toString().slice(0, 300)}`);
      return;
    }
    assert.ok(!ok, `${name}: expected a failure, got a complete body`);
    if (expect.status !== undefined) {
      assert.equal(o.status, expect.status, `${name}: ${o.body.toString().slice(0, 300)}`);
      assert.equal(o.error, undefined, name);
    }
    if (expect.code !== undefined) assert.equal(ociErrorCode(o, name), expect.code, name);
    for (const [k, v] of Object.entries(expect.headers ?? {})) assert.equal(o.headers[k.toLowerCase()], v, `${name}: header ${k}`);
  }

  async function runScenario(
    s: Scenario,
    target: { path: string; digest: string; size: number },
    pathRe: RegExp,
  ) {
    await withCache(async (c) => {
      proxy.reset();
      proxy.setRules(typeof s.rules === 'function' ? s.rules() : s.rules);
      const t0 = Date.now();
      const o = await request(c.url + target.path, { headers: { accept: app.mediaType } });
      const ms = Date.now() - t0;
      check(o, s.expect, target, s.name);
      if (s.withinMs !== undefined) assert.ok(ms < s.withinMs, `${s.name}: took ${ms} ms`);
      if (s.upstreamAttempts !== undefined) assert.equal(proxy.count({ path: pathRe }), s.upstreamAttempts, `${s.name}: upstream attempts`);

      await waitUploadsEmpty(c.root);
      const stored = await assertStoreConsistent(c.root);
      if (!('ok' in s.expect)) {
        assert.ok(!stored.includes(target.digest), `${s.name}: failed download was committed`);
        const links = (await listFiles(c.root)).filter((f) => f.startsWith('repositories/'));
        if (target.path.includes('/manifests/')) assert.deepEqual(links, [], `${s.name}: manifest/tag recorded after a failure`);
      }

      proxy.clearRules();
      const again = await request(c.url + target.path, { headers: { accept: app.mediaType } });
      check(again, { ok: true }, target, `${s.name} (after the fault cleared)`);
      await waitUploadsEmpty(c.root);
      assert.ok((await assertStoreConsistent(c.root)).includes(target.digest), `${s.name}: not cached after recovery`);
    });
  }

  describe('blob GET', () => {
    const path = /\/blobs\/sha256:/;
    const on = (fault: FaultRule['fault'], times?: number): FaultRule[] => [{ method: 'GET', path, fault, times }];
    const scenarios: Scenario[] = [
      { name: 'connection reset mid-body', rules: on({ kind: 'reset-after', bytes: 300_000 }), expect: { fail: true }, upstreamAttempts: 1 },
      { name: 'reset before the first body byte', rules: on({ kind: 'reset-after', bytes: 0 }), expect: { fail: true } },
      { name: 'truncated, correct Content-Length kept', rules: on({ kind: 'truncate', bytes: 500_000, keepLength: true }), expect: { fail: true } },
      { name: 'truncated, clean end without Content-Length', rules: on({ kind: 'truncate', bytes: 500_000, keepLength: false }), expect: { fail: true } },
      { name: 'bytes corrupted, same length', rules: on({ kind: 'corrupt' }), expect: { fail: true } },
      {
        name: 'upstream closes before headers (every attempt)',
        rules: on({ kind: 'close-before-headers' }),
        expect: { fail: true, status: 503, code: 'UNAVAILABLE' },
        upstreamAttempts: 3,
      },
      { name: 'upstream closes before headers once (retried)', rules: on({ kind: 'close-before-headers' }, 1), expect: { ok: true }, upstreamAttempts: 2 },
      {
        name: 'stall before headers (headers timeout 2s)',
        rules: on({ kind: 'stall' }),
        expect: { fail: true, status: 503, code: 'UNAVAILABLE' },
        upstreamAttempts: 1,
        withinMs: 6000,
      },
      {
        name: 'stall mid-body (idle timeout 2s)',
        rules: on({ kind: 'drip', bytesPerTick: 64 * 1024, tickMs: 4000 }),
        expect: { fail: true },
        withinMs: 6000,
      },
      // 1 MiB at 32 KiB per 100 ms: ~3.3 s in total, longer than the idle timeout, never idle that long
      { name: 'very slow drip completes', rules: on({ kind: 'drip', bytesPerTick: 32 * 1024, tickMs: 100 }), expect: { ok: true }, upstreamAttempts: 1 },
      { name: '500', rules: on({ kind: 'status', status: 500 }), expect: { fail: true, status: 502, code: 'UPSTREAM_ERROR' }, upstreamAttempts: 1 },
      { name: '502 burst', rules: on({ kind: 'status', status: 502 }), expect: { fail: true, status: 502, code: 'UPSTREAM_ERROR' }, upstreamAttempts: 3 },
      { name: '503 burst', rules: on({ kind: 'status', status: 503 }), expect: { fail: true, status: 503, code: 'UNAVAILABLE' }, upstreamAttempts: 3 },
      { name: 'two 503s then success (retried)', rules: on({ kind: 'status', status: 503 }, 2), expect: { ok: true }, upstreamAttempts: 3 },
      {
        name: '429 with Retry-After',
        rules: on({ kind: 'status', status: 429, headers: { 'retry-after': '42' } }),
        expect: { fail: true, status: 429, code: 'TOOMANYREQUESTS', headers: { 'Retry-After': '42' } },
        upstreamAttempts: 1,
      },
    ];
    for (const s of scenarios) {
      it(s.name, async () => {
        const l = layer();
        await runScenario(s, { path: `/v2/team/app/blobs/${l.digest}`, digest: l.digest, size: l.size }, path);
      });
    }
  });

  describe('manifest by tag (uncached)', () => {
    const path = /\/manifests\//;
    const scenarios: Scenario[] = [
      {
        name: 'connection reset mid-body',
        rules: [{ method: 'GET', path, fault: { kind: 'reset-after', bytes: 50 } }],
        expect: { fail: true, status: 503, code: 'UNAVAILABLE' },
      },
      {
        name: 'truncated, correct Content-Length kept',
        rules: [{ method: 'GET', path, fault: { kind: 'truncate', bytes: 50, keepLength: true } }],
        expect: { fail: true, status: 503, code: 'UNAVAILABLE' },
      },
      {
        name: 'truncated, clean end without Content-Length',
        rules: [{ method: 'GET', path, fault: { kind: 'truncate', bytes: 50, keepLength: false } }],
        expect: { fail: true, status: 502, code: 'UPSTREAM_ERROR' },
      },
      {
        name: 'upstream closes before headers',
        rules: [{ path, fault: { kind: 'close-before-headers' } }],
        expect: { fail: true, status: 503, code: 'UNAVAILABLE' },
        upstreamAttempts: 3,
      },
      {
        name: 'stall (headers timeout)',
        rules: [{ path, fault: { kind: 'stall' } }],
        expect: { fail: true, status: 503, code: 'UNAVAILABLE' },
        withinMs: 6000,
      },
      {
        name: 'a different manifest than the digest asked for',
        rules: () => [
          {
            method: 'GET',
            path: new RegExp(`/manifests/${app.manifestDigest}`),
            fault: {
              kind: 'status',
              status: 200,
              headers: { 'content-type': other.mediaType, 'docker-content-digest': app.manifestDigest },
              body: otherManifest,
            },
          },
        ],
        expect: { fail: true, status: 502, code: 'UPSTREAM_ERROR' },
      },
      {
        name: 'HTML page with 200',
        rules: [
          {
            path,
            fault: { kind: 'status', status: 200, headers: { 'content-type': 'text/html' }, body: '<html><body>Welcome to the captive portal</body></html>' },
          },
        ],
        expect: { fail: true, status: 502, code: 'UPSTREAM_ERROR' },
      },
      { name: '500', rules: [{ path, fault: { kind: 'status', status: 500 } }], expect: { fail: true, status: 502, code: 'UPSTREAM_ERROR' } },
      { name: '503 burst', rules: [{ path, fault: { kind: 'status', status: 503 } }], expect: { fail: true, status: 503, code: 'UNAVAILABLE' }, upstreamAttempts: 3 },
      {
        name: '429 with Retry-After',
        rules: [{ path, fault: { kind: 'status', status: 429, headers: { 'retry-after': '7' } } }],
        expect: { fail: true, status: 429, code: 'TOOMANYREQUESTS', headers: { 'Retry-After': '7' } },
        upstreamAttempts: 1,
      },
    ];
    for (const s of scenarios) {
      it(s.name, async () => {
        const bytes = await manifestBytes();
        await runScenario(
          s,
          { path: '/v2/team/app/manifests/1', digest: app.manifestDigest, size: bytes.length },
          path,
        );
      });
    }

    it('a different manifest for a digest reference is refused too', async () => {
      const bytes = await manifestBytes();
      await runScenario(
        {
          name: 'by digest, other bytes',
          rules: [
            {
              path: new RegExp(`/manifests/${app.manifestDigest}`),
              fault: { kind: 'status', status: 200, headers: { 'content-type': other.mediaType }, body: otherManifest },
            },
          ],
          expect: { fail: true, status: 502, code: 'UPSTREAM_ERROR' },
        },
        { path: `/v2/team/app/manifests/${app.manifestDigest}`, digest: app.manifestDigest, size: bytes.length },
        /\/manifests\//,
      );
    });
  });

  describe('connect failures', () => {
    it('connection refused (closed port) → 503 fast; succeeds once something listens there', async () => {
      const sw = await startSwitch(upstream.port, { port: await freePort(), startDown: true });
      try {
        await withCache(async (c) => {
          const l = layer();
          const url = `${c.url}/v2/team/app/blobs/${l.digest}`;
          const t0 = Date.now();
          const o = await request(url);
          assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
          check(o, { fail: true, status: 503, code: 'UNAVAILABLE' }, l, 'refused');
          const m = await request(`${c.url}/v2/team/app/manifests/1`);
          check(m, { fail: true, status: 503, code: 'UNAVAILABLE' }, { digest: app.manifestDigest, size: 0 }, 'refused manifest');
          assert.deepEqual(await cachedFiles(c.root), []);
          await sw.up();
          check(await request(url), { ok: true }, l, 'after the upstream came up');
          check(await request(`${c.url}/v2/team/app/manifests/1`, { headers: { accept: app.mediaType } }), { ok: true }, {
            digest: app.manifestDigest,
            size: (await manifestBytes()).length,
          }, 'manifest after the upstream came up');
        }, sw.url);
      } finally {
        await sw.stop();
      }
    });

    it('unresolvable host name (nonexistent.invalid) → 503 within the timeouts, server stays up', async () => {
      await withCache(async (c) => {
        const t0 = Date.now();
        const o = await request(`${c.url}/v2/team/app/manifests/1`);
        const ms = Date.now() - t0;
        check(o, { fail: true, status: 503, code: 'UNAVAILABLE' }, { digest: app.manifestDigest, size: 0 }, 'dns');
        assert.ok(ms < 10_000, `took ${ms} ms`);
        const b = await request(`${c.url}/v2/team/app/blobs/${layer().digest}`);
        check(b, { fail: true, status: 503, code: 'UNAVAILABLE' }, layer(), 'dns blob');
        assert.equal((await request(`${c.url}/v2/`)).status, 200);
        assert.deepEqual(await cachedFiles(c.root), []);
      }, 'http://nonexistent.invalid:5000');
    });
  });
});
