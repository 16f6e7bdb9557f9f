// Hostile client input, sent as raw bytes (node:net) so that nothing normalises it on the way: repository names,
// tags, digests, ns=, n/last, Range, huge headers, traversal (.., percent-encoded, backslashes), NUL bytes and
// non-UTF-8. Always a 4xx with an OCI error body (never 5xx); no file outside the storage root is read or written.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { assertStoreConsistent, listFiles, ociErrorCode, rawRequest, type RawResponse } from '../reliability/support.js';

/** Fixed so that runs are reproducible; FUZZ_SEED=<n> explores other inputs. Printed on failure by fast-check. */
const SEED = Number(process.env.FUZZ_SEED ?? 20240610);
const RUNS = Number(process.env.FUZZ_RUNS ?? 1); // multiplier
/** Statuses for requests Node's HTTP parser refuses as not valid HTTP/1.1 (answered with an OCI body by the clientError hook). */
const PARSER_STATUSES = [400, 413, 414, 431];

const HEX = '0123456789abcdef';
const hexOf = (n: number) => fc.string({ unit: fc.constantFrom(...HEX.split('')), minLength: n, maxLength: n });

/** Builds one raw request. */
function rawHttp(method: string, target: Buffer, headers: Array<[string, Buffer | string]> = [], host = 'localhost'): Buffer {
  const head: Buffer[] = [Buffer.from(`${method} `), target, Buffer.from(` HTTP/1.1\r\nHost: ${host}\r\n`)];
  for (const [k, v] of headers) head.push(Buffer.from(`${k}: `, 'latin1'), Buffer.isBuffer(v) ? v : Buffer.from(v, 'latin1'), Buffer.from('\r\n'));
  head.push(Buffer.from('Connection: close\r\n\r\n'));
  return Buffer.concat(head);
}

const percentEncodeBytes = (b: Buffer) => Buffer.from([...b].map((x) => `%${x.toString(16).padStart(2, '0')}`).join(''));

/** A path piece as bytes: a dangerous constant, random text (raw UTF-8 or percent-encoded), or raw random bytes. */
const pieceArb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(
    '..', '.', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '..%2f', '..%2F..%2F', '%2f', '%5c', '\\', '..\\..\\', '%00', '%ff', '%c0%ae%c0%ae',
    '%252e%252e', '~', '', 'etc', 'passwd', 'canary.txt', 'team', 'app', 'team/app', 'blobs', 'manifests', 'tags', 'list',
    '_catalog', '_uploads', '_manifests', '_tags', 'repositories', 'sha256', 'UPPER', 'a..b', 'a--b', 'a__b', 'a___b', '-a', 'a.',
    '%20', '%0d%0a', '?', '#', ';', '//', '%', '%zz', 'ns=x',
  ).map((s) => Buffer.from(s, 'latin1')) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }).map((s) => Buffer.from(s, 'utf8')) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }).map((s) => percentEncodeBytes(Buffer.from(s, 'utf8'))) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 6 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 6 }).map((a) => percentEncodeBytes(Buffer.from(a))) },
);

const refArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('1', 'latest', '', '..', '../../canary.txt', 'a'.repeat(129), '_x', '-x', '.x', 'x:y', 'sha256:', 'sha256:..'),
  hexOf(64).map((h) => `sha256:${h}`),
  hexOf(128).map((h) => `sha512:${h}`),
  fc.tuple(fc.constantFrom('sha256', 'sha512', 'md5', 'SHA256', 'sha256+b64', ''), fc.string({ maxLength: 70 })).map(([a, h]) => `${a}:${h}`),
  hexOf(64).map((h) => `sha256:${h.toUpperCase()}`),
  fc.string({ unit: 'binary', maxLength: 40 }),
);

const encodeRef = (s: string, how: number) => (how === 0 ? Buffer.from(s, 'utf8') : percentEncodeBytes(Buffer.from(s, 'utf8')));

describe('hostile client input (fast-check)', () => {
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let cache: RunningRegcache;
  let work: string;
  let img: BuiltImage;
  let canary: string;
  let outsideBefore: string[];
  let blob: Buffer;
  let port: number;
  const parserLevel = { count: 0 };

  before(async () => {
    work = await makeTempDir('fuzz-requests-');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [5000], seed: 'fuzz' });
    await pushImage(img, upstream.host, 'team/app:1');
    proxy = await startFaultProxy(upstream.url);
    // canaries next to and above the storage root, where a traversal would land
    canary = `CANARY-${randomBytes(12).toString('hex')}`;
    await writeFile(join(work, 'canary.txt'), canary);
    await mkdir(join(work, 'etc'));
    await writeFile(join(work, 'etc', 'passwd'), canary);
    cache = await startRegcache({ upstreamUrl: proxy.url, root: join(work, 'data'), config: { regcache: { freshness: '1h' } } });
    port = Number(new URL(cache.url).port);
    blob = await readFile(join(img.layoutDir, 'blobs', 'sha256', layer().digest.slice(7)));
    // warm: the tag, the manifest and a blob are cached
    for (const p of ['/v2/team/app/manifests/1', `/v2/team/app/blobs/${layer().digest}`, '/v2/team/app/tags/list']) {
      assert.equal((await rawRequest(port, rawHttp('GET', Buffer.from(p)))).status, 200, p);
    }
    outsideBefore = (await listFiles(work)).filter((f) => !f.startsWith('data/'));
  });

  after(async () => {
    await cache?.stop();
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  const layer = () => img.manifests[0]!.layers[0]!;

  async function send(method: string, target: Buffer, headers: Array<[string, Buffer | string]> = [], host?: string): Promise<RawResponse> {
    const res = await rawRequest(port, rawHttp(method, target, headers, host));
    const ctx = `${method} ${JSON.stringify(target.toString('latin1'))} → ${res.status}`;
    assert.ok(!res.raw.includes(canary), `${ctx}: a file outside the storage root was served`);
    assert.ok(res.status < 500, `${ctx}: server error ${res.raw.toString('latin1').slice(0, 500)}`);
    if (res.status >= 400) {
      if (/malformed HTTP request|request headers too large/.test(res.body.toString('latin1'))) {
        // not valid HTTP: refused by the parser before any handler ran (answered by the clientError hook)
        assert.ok(PARSER_STATUSES.includes(res.status), `${ctx}: parser-level ${res.status}`);
        ociErrorCode({ body: res.body, headers: res.headers }, ctx);
        parserLevel.count++;
      } else if (method === 'HEAD') {
        assert.match(res.headers['content-type'] ?? '', /application\/json/, ctx);
      } else {
        ociErrorCode({ body: res.body, headers: res.headers }, ctx);
      }
    }
    return res;
  }

  const opts = (numRuns: number) => ({ seed: SEED, numRuns: numRuns * RUNS, endOnFailure: true });

  it('repository names and traversal in the path', async (t) => {
    t.diagnostic(`seed ${SEED}`);
    const suffixes = ['/manifests/1', `/blobs/${img.manifests[0]!.layers[0]!.digest}`, '/tags/list', '/blobs/uploads/', '', '/'];
    await fc.assert(
      fc.asyncProperty(
        fc.array(pieceArb, { minLength: 1, maxLength: 6 }),
        fc.constantFrom(...suffixes),
        fc.constantFrom('GET', 'GET', 'GET', 'HEAD', 'DELETE', 'PUT', 'OPTIONS', 'PROPFIND', 'get', 'G\u00c9T'),
        fc.constantFrom('/v2/', '/v2/team/', '/', '/v2/../', '//v2/', '/v2/%2e%2e/', ''),
        async (pieces, suffix, method, prefix) => {
          const target = Buffer.concat([Buffer.from(prefix), ...pieces.flatMap((p, i) => (i ? [Buffer.from('/'), p] : [p])), Buffer.from(suffix)]);
          await send(Buffer.from(method, 'latin1').toString('latin1'), target);
        },
      ),
      opts(400),
    );
  });

  it('tags and digests', async () => {
    await fc.assert(
      fc.asyncProperty(refArb, fc.constantFrom('manifests', 'blobs'), fc.nat(1), fc.constantFrom('GET', 'HEAD'), async (ref, kind, how, method) => {
        const res = await send(method, Buffer.concat([Buffer.from(`/v2/team/app/${kind}/`), encodeRef(ref, how)]));
        if (res.status < 300) {
          // only real references of this repository may succeed
          assert.ok(ref === '1' || /^sha256:[0-9a-f]{64}$/.test(ref), `accepted ${JSON.stringify(ref)}`);
        }
      }),
      opts(250),
    );
  });

  it('ns=, n and last query parameters', async () => {
    const value = fc.oneof(
      fc.constantFrom('', '0', '-1', '1', '1000000', '99999999999999999999', '1e3', '0x10', ' 1', 'NaN', 'docker.io', '127.0.0.1', '..', '../../etc'),
      fc.string({ unit: 'binary', maxLength: 30 }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/v2/team/app/tags/list', '/v2/_catalog', '/v2/team/app/manifests/1', '/v2/library/app/manifests/1'),
        fc.array(fc.tuple(fc.constantFrom('n', 'last', 'ns', 'N', 'ns[]', ''), value, fc.nat(1)), { maxLength: 4 }),
        async (path, params) => {
          const query = params.map(([k, v, how]) => `${k}=${how ? new URLSearchParams({ v }).toString().slice(2) : Buffer.from(v, 'utf8').toString('latin1')}`).join('&');
          const res = await send('GET', Buffer.from(`${path}?${query}`, 'latin1'));
          if (res.status === 200 && path.endsWith('/list')) {
            const tags = JSON.parse(res.body.toString()).tags as string[];
            assert.ok(tags.length <= 1 && tags.every((x) => x === '1'), JSON.stringify(tags));
          }
        },
      ),
      opts(200),
    );
  });

  it('Range headers on a cached blob: 200 whole, 206 exact slice, or 416', async () => {
    const num = fc.oneof(fc.nat(6000).map(String), fc.constantFrom('', '-1', '99999999999999999999999', '0x10', '1.5', ' 2', '4999', '5000', '5001'));
    const rangeArb = fc.oneof(
      fc.tuple(fc.constantFrom('bytes=', 'BYTES=', 'bytes =', 'items=', 'bytes=-', ''), num, fc.constantFrom('-', '', '--', ','), num).map((p) => p.join('')),
      fc.array(fc.tuple(num, num).map(([a, b]) => `${a}-${b}`), { minLength: 2, maxLength: 4 }).map((rs) => `bytes=${rs.join(',')}`),
      fc.string({ unit: 'binary', maxLength: 30 }).map((s) => Buffer.from(s, 'utf8').toString('latin1')),
    );
    const path = Buffer.from(`/v2/team/app/blobs/${layer().digest}`);
    await fc.assert(
      fc.asyncProperty(rangeArb, async (range) => {
        const res = await send('GET', path, [['Range', range]]);
        const ctx = `Range ${JSON.stringify(range)} → ${res.status}`;
        if (res.status === 200) assert.ok(res.body.equals(blob), `${ctx}: wrong whole body`);
        else if (res.status === 206) {
          const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers['content-range'] ?? '');
          assert.ok(m, `${ctx}: Content-Range ${res.headers['content-range']}`);
          const [start, end, total] = m.slice(1).map(Number) as [number, number, number];
          assert.equal(total, blob.length, ctx);
          assert.ok(start <= end && end < total, ctx);
          assert.ok(res.body.equals(blob.subarray(start, end + 1)), `${ctx}: wrong slice`);
        } else if (res.status === 416) {
          assert.equal(res.headers['content-range'], `bytes */${blob.length}`, ctx);
        } else {
          // not valid HTTP at all: refused before any handler ran, still with an OCI error body
          assert.equal(res.status, 400, `${ctx}: unexpected`);
          ociErrorCode({ body: res.body, headers: res.headers }, ctx);
        }
      }),
      opts(200),
    );
  });

  it('huge, many, NUL and non-UTF-8 headers; odd Host values', async () => {
    const headerArb = fc.oneof(
      fc.integer({ min: 1, max: 64 * 1024 }).map((n): Array<[string, Buffer | string]> => [['X-Big', 'a'.repeat(n)]]),
      fc.integer({ min: 1, max: 3000 }).map((n) => Array.from({ length: n }, (_, i): [string, string] => [`X-H${i}`, 'v'])),
      fc.uint8Array({ minLength: 1, maxLength: 40 }).map((a): Array<[string, Buffer | string]> => [['X-Bytes', Buffer.from(a)]]),
      fc.string({ unit: 'binary', maxLength: 40 }).map((s): Array<[string, Buffer | string]> => [['Authorization', Buffer.from(s, 'utf8')]]),
      fc.string({ unit: 'binary', maxLength: 40 }).map((s): Array<[string, Buffer | string]> => [['If-None-Match', Buffer.from(s, 'utf8')]]),
    );
    const hostArb = fc.oneof(
      fc.constantFrom('localhost', '', '127.0.0.1', '[::1]', 'docker.io', '..', 'a'.repeat(300)),
      fc.string({ unit: 'binary', maxLength: 30 }).map((s) => Buffer.from(s, 'utf8').toString('latin1')),
    );
    await fc.assert(
      fc.asyncProperty(headerArb, hostArb, fc.constantFrom('/v2/team/app/manifests/1', `/v2/team/app/blobs/${layer().digest}`, '/v2/'), async (headers, host, path) => {
        await send('GET', Buffer.from(path), headers, host);
      }),
      opts(60),
    );
  });

  it('afterwards: nothing written outside the storage root; storage holds only its own layout; upstream saw only valid names', async (t) => {
    t.diagnostic(`requests refused by the HTTP parser itself (400/431 with an OCI body): ${parserLevel.count}`);
    assert.deepEqual((await listFiles(work)).filter((f) => !f.startsWith('data/')), outsideBefore);
    assert.equal(await readFile(join(work, 'canary.txt'), 'utf8'), canary);
    await assertStoreConsistent(join(work, 'data'));
    const component = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
    const valid = new RegExp(`^/v2/(?:${component}(?:/${component})*/(?:manifests/[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|(?:manifests|blobs)/sha(?:256|512):[0-9a-f]+|tags/list(?:\\?.*)?))?$`);
    for (const r of proxy.requests) assert.match(r.path, valid, `upstream was asked for ${JSON.stringify(r.path)}`);
    assert.ok(proxy.requests.length > 0, 'the fuzz reached the upstream at all');
  });
});
