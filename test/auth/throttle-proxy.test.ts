// The failed-login throttle behind a real load balancer (haproxy with `option forwardfor`): with
// regcache.trustproxy naming the balancer, it is keyed by the real client address, so one client's bad passwords
// do not lock out the others; without trustproxy it keys on the peer (the balancer) and does. docs/security.md.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { startHaproxy, type RunningHaproxy } from '../scaleout/support/haproxy.js';

/** Client A and client B: two source addresses on the loopback network. */
const CLIENT_A = '127.0.0.2';
const CLIENT_B = '127.0.0.3';
/** FailureThrottle's default burst: the 11th failure in a row is refused. */
const BURST = 10;

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** GET /v2/ through the balancer from `localAddress`; a fresh connection each time. */
function get(url: string, localAddress: string, authorization: string): Promise<{ status: number; retryAfter?: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/v2/`, { localAddress, agent: false, headers: { authorization } }, (res) => {
      res.resume();
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined, ms: performance.now() - t0 }),
      );
    });
    req.setTimeout(30_000, () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end();
  });
}

describe('failed-login throttle behind haproxy (X-Forwarded-For)', () => {
  let work: string;
  let htpasswd: string;
  const started: Array<{ stop(): Promise<void> }> = [];

  before(async () => {
    work = await makeTempDir('auth-throttle-proxy-');
    htpasswd = join(work, 'htpasswd');
    await writeFile(htpasswd, `alice:${bcrypt.hashSync('right-password', 4)}\n`);
  });

  after(async () => {
    for (const s of started.reverse()) await s.stop();
    if (work) await removeDir(work);
  });

  /** regcache with htpasswd auth behind haproxy; `trustproxy` as in regcache's config. */
  async function behindHaproxy(trustproxy?: string[]): Promise<{ lb: RunningHaproxy; cache: RunningRegcache }> {
    const cache = await startRegcache({
      upstreamUrl: 'http://127.0.0.1:9', // never asked: only /v2/ is requested
      config: {
        auth: { htpasswd: { realm: 'regcache', path: htpasswd } },
        ...(trustproxy && { regcache: { trustproxy } }),
      },
    });
    started.push(cache);
    const lb = await startHaproxy([Number(new URL(cache.url).port)], { forwardFor: true, checkPath: '/healthz' });
    started.push(lb);
    return { lb, cache };
  }

  /** Client A sends wrong passwords until it is throttled; returns the statuses it got. */
  async function failUntilThrottled(url: string): Promise<number[]> {
    const statuses: number[] = [];
    for (let i = 0; i < BURST + 5; i++) {
      const r = await get(url, CLIENT_A, basic('alice', `wrong-${i}`));
      statuses.push(r.status);
      if (r.status === 429) {
        assert.ok(Number(r.retryAfter) >= 1, 'Retry-After on 429');
        break;
      }
    }
    return statuses;
  }

  it('trustproxy = the balancer: A is throttled, B with the right password gets 200 at once', async () => {
    const { lb, cache } = await behindHaproxy(['127.0.0.1']);
    // the right password works through the balancer
    assert.equal((await get(lb.url, CLIENT_B, basic('alice', 'right-password'))).status, 200);

    const statuses = await failUntilThrottled(lb.url);
    assert.deepEqual(statuses, [...Array<number>(BURST).fill(401), 429], 'A: 10 failures, then throttled');
    // A stays throttled, even with the right password now
    assert.equal((await get(lb.url, CLIENT_A, basic('alice', 'right-password'))).status, 429);

    // B is another client: right password → 200 immediately; a wrong one is an ordinary 401, not 429
    const b = await get(lb.url, CLIENT_B, basic('alice', 'right-password'));
    assert.equal(b.status, 200);
    assert.ok(b.ms < 5000, `B took ${Math.round(b.ms)} ms`);
    assert.equal((await get(lb.url, CLIENT_B, basic('alice', 'wrong'))).status, 401);

    // the log names the real client, as the access log does
    const throttled = cache.logs.filter((l) => l.msg === 'client throttled after repeated failed logins');
    assert.deepEqual(throttled.map((l) => l.clientAddress), [CLIENT_A]);
    const access = cache.logs.filter((l) => l.msg === 'request' && l.status === 429);
    assert.ok(access.length > 0 && access.every((l) => l.remote === CLIENT_A), 'access log: the 429s went to A');
  });

  it('trustproxy unset: the throttle keys on the peer, so everyone behind the balancer is throttled together', async () => {
    const { lb, cache } = await behindHaproxy(undefined);
    const statuses = await failUntilThrottled(lb.url);
    assert.deepEqual(statuses, [...Array<number>(BURST).fill(401), 429]);
    // B shares the balancer's address: refused without a password check
    assert.equal((await get(lb.url, CLIENT_B, basic('alice', 'right-password'))).status, 429);
    const throttled = cache.logs.filter((l) => l.msg === 'client throttled after repeated failed logins');
    assert.deepEqual(throttled.map((l) => l.clientAddress), ['127.0.0.1'], 'keyed on the balancer');
  });
});
