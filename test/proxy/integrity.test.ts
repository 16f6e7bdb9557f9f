// No byte that failed verification reaches a client as a successful response: full and ranged readers of a
// blob that is still downloading, against an upstream that sends same-length wrong bytes.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { sha256 } from '../support/digest.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { startStandIn, type StandIn } from '../support/standin.js';
import { waitFor } from '../support/process.js';

const SIZE = 4 * 1024 * 1024;
const HELD_BACK = 512 * 1024;

interface Reader {
  status: number;
  /** Content-Length (-1 until the headers arrived). */
  declared: number;
  received: number;
  completed: boolean;
  done: Promise<void>;
}

/** A GET whose progress the test can watch while it runs. */
function get(url: string, headers: Record<string, string> = {}): Reader {
  const r: Reader = { status: 0, declared: -1, received: 0, completed: false, done: Promise.resolve() };
  r.done = (async () => {
    const res = await request(url, { headers });
    r.status = res.statusCode;
    r.declared = Number(res.headers['content-length'] ?? -1);
    try {
      for await (const c of res.body) r.received += (c as Buffer).length;
      r.completed = r.received === r.declared;
    } catch {
      // aborted: the honest signal of a failed body
    }
  })();
  return r;
}

describe('integrity of in-flight blobs', () => {
  const good = randomBytes(SIZE);
  const bad = Buffer.from(good);
  for (let i = 0; i < bad.length; i += 4096) bad[i] ^= 0xff; // same length, wrong bytes everywhere
  const digest = sha256(good);
  let releaseTail!: () => void;
  let tailHeld!: Promise<void>;
  let headSent = false;
  let upstream: StandIn;
  let cache: RunningRegcache;

  before(async () => {
    tailHeld = new Promise<void>((r) => (releaseTail = r));
    upstream = await startStandIn((req, res) => {
      if (req.url === '/v2/' || req.url === '/v2') {
        res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
        return;
      }
      if (!req.url?.endsWith(`/blobs/${digest}`)) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(SIZE), 'Docker-Content-Digest': digest });
      if (req.method === 'HEAD') return void res.end();
      // Everything but the tail at once; the tail only when the test has its ranged readers in place.
      res.write(bad.subarray(0, SIZE - HELD_BACK), () => (headSent = true));
      void tailHeld.then(() => res.end(bad.subarray(SIZE - HELD_BACK)));
    });
    cache = await startRegcache({ upstreamUrl: upstream.url });
  });

  after(async () => {
    releaseTail?.();
    await cache?.stop();
    await upstream?.close();
  });

  it('ranged and full readers of a corrupt in-flight blob never complete successfully', async () => {
    const url = `${cache.url}/v2/team/app/blobs/${digest}`;
    const full = get(url);
    await waitFor(() => headSent, { timeoutMs: 10_000, what: 'upstream sent all but the tail' });
    const ranges = ['bytes=0-1048575', 'bytes=1048576-2097151', `bytes=0-${SIZE - HELD_BACK - 1}`].map((r) => get(url, { Range: r }));
    // Every ranged byte is on disk already; wait until each reader has all but (at most) its last one.
    await waitFor(() => ranges.every((r) => r.declared > 0 && r.received >= r.declared - 1), {
      timeoutMs: 10_000,
      what: 'ranged readers received their bytes',
    });
    releaseTail();
    const outcomes = [full, ...ranges];
    await Promise.all(outcomes.map((o) => o.done));
    for (const [i, o] of outcomes.entries()) {
      assert.ok(!o.completed, `reader ${i} received a complete ${o.status} body of bytes that failed verification (${o.received}/${o.declared})`);
    }
    assert.deepEqual(
      outcomes.slice(1).map((o) => o.status),
      [206, 206, 206],
    );
    // Nothing was cached: a HEAD asks the upstream again.
    const head = await request(url, { method: 'HEAD' });
    await head.body.dump();
    assert.equal(head.statusCode, 200);
    assert.equal(await cache.app.storage.statBlob(digest), null, 'the corrupt blob is not in storage');
  });
});
