// Hostile or broken upstreams: giant manifests, absurd sizes, Bearer realms on other hosts; and credential
// hygiene: upstream passwords and client Authorization headers never show up in logs, bodies or /debug/vars.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAX_MANIFEST_BYTES, OCI_MANIFEST } from '../../src/oci/mediatypes.js';
import { sha256 } from '../support/digest.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { freePort } from '../support/ports.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { startStandIn, type StandIn } from '../support/standin.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { startTokenServer, type TokenServer } from '../support/tokenserver.js';
import { assertHonest, assertStoreConsistent, ociErrorCode, request, waitUploadsEmpty, type Outcome } from '../reliability/support.js';

const USER = 'mirror-bot';
const PASSWORD = `upstream-pw-${randomBytes(8).toString('hex')}`;
const CLIENT_PASSWORD = `client-pw-${randomBytes(8).toString('hex')}`;
const CLIENT_TOKEN = `client-token-${randomBytes(8).toString('hex')}`;
const SECRETS = [
  PASSWORD,
  Buffer.from(`${USER}:${PASSWORD}`).toString('base64'),
  CLIENT_PASSWORD,
  Buffer.from(`alice:${CLIENT_PASSWORD}`).toString('base64'),
  CLIENT_TOKEN,
];
const CLIENT_AUTH = [`Basic ${Buffer.from(`alice:${CLIENT_PASSWORD}`).toString('base64')}`, `Bearer ${CLIENT_TOKEN}`];

/** A syntactically valid OCI manifest of exactly `size` bytes (padded with an annotation). */
function manifestOfSize(size: number, layers: unknown[] = []): Buffer {
  const doc = (pad: string) =>
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 2 },
      layers,
      annotations: { pad },
    });
  const base = Buffer.byteLength(doc(''));
  assert.ok(size >= base, 'requested manifest size below the minimum');
  return Buffer.from(doc('x'.repeat(size - base)));
}

describe('hostile upstreams and credential hygiene', () => {
  let work: string;
  const caches: RunningRegcache[] = [];
  /** every response a client got in this file, checked for secrets at the end */
  const outcomes: Outcome[] = [];

  async function cache(upstreamUrl: string, config: Record<string, unknown> = {}): Promise<RunningRegcache> {
    const c = await startRegcache({
      upstreamUrl,
      config: { ...config, regcache: { timeouts: { connect: '1s', headers: '2s', idle: '2s' }, ...(config.regcache as object) } },
    });
    caches.push(c);
    return c;
  }
  async function get(url: string, opts: Parameters<typeof request>[1] = {}): Promise<Outcome> {
    const o = await request(url, opts);
    outcomes.push(o);
    return o;
  }

  before(async () => {
    work = await makeTempDir('fuzz-upstream-');
  });

  after(async () => {
    await Promise.all(caches.map((c) => c.stop()));
    if (work) await removeDir(work);
  });

  describe('upstream-controlled input', () => {
    const giant = manifestOfSize(MAX_MANIFEST_BYTES + 1024 * 1024);
    const edge = manifestOfSize(MAX_MANIFEST_BYTES);
    const absurd = manifestOfSize(2000, [
      { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${'1'.repeat(64)}`, size: 9007199254740993 },
      { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${'2'.repeat(64)}`, size: 1e30 },
      { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${'3'.repeat(64)}`, size: -1 },
    ]);
    const data = randomBytes(64 * 1024);
    const dataDigest = sha256(data);
    let evil: StandIn;
    let c: RunningRegcache;

    before(async () => {
      evil = await startStandIn((req, res) => {
        const url = req.url!;
        const manifest = (bytes: Buffer, chunked = false) => {
          res.writeHead(200, { 'content-type': OCI_MANIFEST, ...(chunked ? {} : { 'content-length': String(bytes.length) }) });
          if (req.method === 'HEAD') return res.end();
          if (!chunked) return res.end(bytes);
          // chunked: 64 KiB at a time, so the reader can stop early
          let off = 0;
          const pump = () => {
            while (off < bytes.length) {
              const ok = res.write(bytes.subarray(off, off + 65536));
              off += 65536;
              if (!ok) return void res.once('drain', pump);
            }
            res.end();
          };
          res.on('close', () => (off = bytes.length));
          pump();
        };
        if (url === '/v2/evil/giant/manifests/len') return manifest(giant);
        if (url === '/v2/evil/giant/manifests/chunked') return manifest(giant, true);
        if (url === '/v2/evil/edge/manifests/1' || url === `/v2/evil/edge/manifests/${sha256(edge)}`) return manifest(edge);
        if (url === '/v2/evil/absurd/manifests/1' || url === `/v2/evil/absurd/manifests/${sha256(absurd)}`) return manifest(absurd);
        const blob = /^\/v2\/evil\/absurd\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url);
        if (blob) {
          // claims a size it never sends, then hangs up
          const claim = blob[1] === dataDigest ? '1000000000000000' : '99999999999999999999999';
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': claim });
          if (req.method === 'HEAD') return res.end();
          res.write(data, () => res.socket?.end());
          return;
        }
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'unknown' }] }));
      });
      c = await cache(evil.url);
    });
    after(async () => {
      await evil?.close();
    });

    it('manifest larger than 4 MiB (with Content-Length, and chunked) → 502, nothing stored', async () => {
      for (const ref of ['len', 'chunked']) {
        const o = await get(`${c.url}/v2/evil/giant/manifests/${ref}`);
        assert.equal(o.status, 502, ref);
        assert.equal(ociErrorCode(o, ref), 'UPSTREAM_ERROR');
        assert.match(JSON.parse(o.body.toString()).errors[0].message, /more than 4194304 bytes/);
      }
      assert.deepEqual(await assertStoreConsistent(c.root), []);
    });

    it('manifest of exactly 4 MiB is served byte for byte and cached', async () => {
      const o = await get(`${c.url}/v2/evil/edge/manifests/1`);
      assert.ok(assertHonest(o, { digest: sha256(edge), size: edge.length }, 'edge'), '4 MiB manifest served');
      const before = evil.requests.length;
      const again = await get(`${c.url}/v2/evil/edge/manifests/${sha256(edge)}`);
      assert.ok(assertHonest(again, { digest: sha256(edge), size: edge.length }, 'edge by digest'), '4 MiB manifest served from cache by digest');
      assert.equal(evil.requests.length, before, 'served from cache');
    });

    it('manifest listing absurd layer sizes is passed through verbatim (sizes are not trusted for anything)', async () => {
      const o = await get(`${c.url}/v2/evil/absurd/manifests/1`);
      assert.ok(assertHonest(o, { digest: sha256(absurd), size: absurd.length }, 'absurd'), 'manifest with absurd sizes served');
      assert.ok(o.body.equals(absurd), 'manifest bytes verbatim');
    });

    it('blob whose Content-Length is absurd (1e15, and beyond 2^53) → failure, no allocation by size, nothing committed', async () => {
      const rss0 = process.memoryUsage().rss;
      for (const digest of [dataDigest, sha256(randomBytes(32))]) {
        const o = await get(`${c.url}/v2/evil/absurd/blobs/${digest}`, { timeoutMs: 20_000 });
        const ok = assertHonest(o, { digest, size: data.length }, `absurd blob ${digest}`);
        assert.equal(ok, false);
        if (o.headers['content-length'] !== undefined) assert.match(o.headers['content-length'], /^\d+$/, 'Content-Length is a number');
        const head = await get(`${c.url}/v2/evil/absurd/blobs/${digest}`, { method: 'HEAD' });
        assert.ok(head.status === 200 || head.status >= 500, `HEAD ${head.status}`);
        if (head.status === 200) assert.match(head.headers['content-length'] ?? '', /^\d+$/, `HEAD Content-Length ${head.headers['content-length']}`);
      }
      assert.ok(process.memoryUsage().rss - rss0 < 200 * 1024 * 1024, 'memory grew with the claimed size');
      await waitUploadsEmpty(c.root);
      assert.ok(!(await assertStoreConsistent(c.root)).includes(dataDigest), 'blob with a lying Content-Length was committed');
      assert.equal((await get(`${c.url}/v2/`)).status, 200);
    });
  });

  describe('Bearer realm on another host (127.0.0.2) with upstream credentials configured', () => {
    let capture: TokenServer;
    let hostile: StandIn;
    let anon: RunningRegistry;
    let tokenReg: RunningRegistry;
    let img: BuiltImage;

    before(async () => {
      // the realm: a token server on 127.0.0.2 that records whether credentials came with the token request
      capture = await startTokenServer({ host: '127.0.0.2', credentials: { username: USER, password: PASSWORD } });
      hostile = await startStandIn((req, res) => {
        res.writeHead(401, {
          'content-type': 'application/json',
          'www-authenticate': `Bearer realm="${capture.realm}",service="${capture.service}",scope="repository:team/app:pull"`,
        });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
      });
      anon = await startRegistry();
      img = await buildImage({ dir: join(work, 'img'), layers: [3000], seed: 'realm' });
      await pushImage(img, anon.host, 'team/app:1');
      tokenReg = await startRegistry({ config: capture.registryConfig(), rootDir: anon.rootDir });
    });
    after(async () => {
      await tokenReg?.stop();
      await anon?.stop();
      await hostile?.close();
      await capture?.stop();
    });

    it('a stand-in upstream pointing its realm at another host does not get the credentials sent there', async () => {
      const c = await cache(hostile.url, { proxy: { remoteurl: hostile.url, username: USER, password: PASSWORD } });
      const mark = capture.requests.length;
      const o = await get(`${c.url}/v2/team/app/manifests/1`);
      assert.equal(o.status, 401);
      assert.equal(ociErrorCode(o, 'foreign realm'), 'UNAUTHORIZED');
      const asked = capture.requests.slice(mark);
      assert.ok(asked.length >= 1, 'the realm was asked for a token');
      assert.ok(asked.every((r) => !r.hadAuthorization), 'credentials were sent to a realm on another host');
      // the upstream's own host did get them (Basic is never volunteered; only the Bearer flow was offered)
      assert.ok(hostile.requests.every((r) => !r.authorization?.startsWith('Basic ')), 'Basic credentials volunteered to a Bearer-only upstream');
      assert.ok(c.logs.some((l) => /anonymously/.test(String(l.msg))), 'the refusal to send credentials is logged');
    });

    it('a real registry whose realm is on another host: anonymous token request unless the host is in regcache.authhosts', async () => {
      const without = await cache(tokenReg.url, { proxy: { remoteurl: tokenReg.url, username: USER, password: PASSWORD } });
      let mark = capture.requests.length;
      const refused = await get(`${without.url}/v2/team/app/manifests/1`);
      assert.equal(refused.status, 401, refused.body.toString());
      assert.ok(capture.requests.slice(mark).every((r) => !r.hadAuthorization), 'credentials sent to a realm on another host');

      for (const authhosts of [['127.0.0.2'], [new URL(capture.realm).host]]) {
        const trusted = await cache(tokenReg.url, { proxy: { remoteurl: tokenReg.url, username: USER, password: PASSWORD }, regcache: { authhosts } });
        mark = capture.requests.length;
        const ok = await get(`${trusted.url}/v2/team/app/manifests/1`, { headers: { accept: img.mediaType } });
        assert.equal(ok.status, 200, `authhosts ${authhosts}: ${ok.body.toString()}`);
        assert.equal(ok.headers['docker-content-digest'], img.manifestDigest);
        const asked = capture.requests.slice(mark);
        assert.ok(asked.length >= 1 && asked.every((r) => r.hadAuthorization && r.account === USER), `authhosts ${authhosts}`);
      }
    });
  });

  describe('credential hygiene', () => {
    let reg: RunningRegistry;
    let proxy: FaultProxy;
    let img: BuiltImage;
    let c: RunningRegcache;
    let debugPort: number;

    before(async () => {
      reg = await startRegistry({ htpasswd: { username: USER, password: PASSWORD } });
      img = await buildImage({ dir: join(work, 'hyg'), layers: [2000], seed: 'hygiene' });
      await pushImage(img, reg.host, 'team/app:1', { creds: `${USER}:${PASSWORD}` });
      proxy = await startFaultProxy(reg.url);
      debugPort = await freePort();
      c = await cache(proxy.url, {
        proxy: { remoteurl: proxy.url, username: USER, password: PASSWORD },
        http: { debug: { addr: `127.0.0.1:${debugPort}` } },
      });
    });
    after(async () => {
      await proxy?.stop();
      await reg?.stop();
    });

    it('successful and failing requests, with client Authorization headers: no secret in logs, bodies or upstream requests', async () => {
      const layer = img.manifests[0]!.layers[0]!;
      const paths = ['/v2/team/app/manifests/1', `/v2/team/app/blobs/${layer.digest}`, '/v2/team/app/tags/list', '/v2/team/nope/manifests/1', '/v2/Bad Name/manifests/1'];
      for (const authorization of CLIENT_AUTH) {
        for (const p of paths) await get(c.url + p, { headers: { authorization } });
      }
      const faults = [
        { kind: 'status', status: 401, headers: { 'www-authenticate': 'Basic realm="x"' } },
        { kind: 'status', status: 500, body: `boom ${PASSWORD}?` },
        { kind: 'status', status: 429, headers: { 'retry-after': '5' } },
        { kind: 'reset-after', bytes: 10 },
        { kind: 'stall' },
      ] as const;
      for (const fault of faults) {
        proxy.setRules([{ fault }]);
        for (const authorization of CLIENT_AUTH) {
          await get(`${c.url}/v2/team/other/manifests/1`, { headers: { authorization } });
          await get(`${c.url}/v2/team/other/blobs/sha256:${'4'.repeat(64)}`, { headers: { authorization } });
        }
      }
      proxy.clearRules();
      assert.ok(outcomes.some((o) => o.status === 200), 'some requests succeeded');
      assert.ok(outcomes.some((o) => o.status >= 500), 'some requests failed upstream');

      // the client's Authorization never goes upstream: only ours (Basic for the configured user) does
      const ours = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
      for (const r of proxy.requests) {
        const a = r.headers.authorization;
        assert.ok(a === undefined || a === ours, `upstream received ${String(a).slice(0, 12)}...`);
      }
      assert.ok(proxy.requests.some((r) => r.headers.authorization === ours), 'upstream credentials were used');
    });

    it('/debug/vars carries no secret', async () => {
      const o = await get(`http://127.0.0.1:${debugPort}/debug/vars`);
      assert.equal(o.status, 200);
    });

    it('afterwards: no secret anywhere in logs, response bodies or response headers of this file', () => {
      const logs = caches.flatMap((x) => x.logs.map((l) => JSON.stringify(l))).join('\n');
      assert.ok(logs.length > 0, 'logs were collected');
      const responses = outcomes.map((o) => JSON.stringify(o.headers) + o.body.toString('latin1')).join('\n');
      for (const s of SECRETS) {
        assert.ok(!logs.includes(s), `a secret (${s.slice(0, 10)}...) appeared in the logs`);
        assert.ok(!responses.includes(s), `a secret (${s.slice(0, 10)}...) appeared in a response`);
      }
    });
  });
});
