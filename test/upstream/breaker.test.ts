// The upstream circuit breaker's state machine (src/upstream/breaker.ts), on an injected clock: no sleeping.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CircuitBreaker,
  FAILURE_THRESHOLD,
  MAX_OPEN_MS,
  OPEN_MS,
  type BreakerOptions,
  type BreakerState,
} from '../../src/upstream/breaker.js';

function breaker(opts: BreakerOptions = {}) {
  const clock = { now: 1_000_000 };
  const changes: string[] = [];
  const b = new CircuitBreaker({
    failureThreshold: 3,
    openMs: 1000,
    maxOpenMs: 5000,
    now: () => clock.now,
    onChange: (to: BreakerState, from: BreakerState) => changes.push(`${from}->${to}`),
    ...opts,
  });
  /** n requests that each fail at the transport level */
  const fail = (n: number) => {
    for (let i = 0; i < n; i++) {
      const p = b.acquire();
      assert.ok(p, `request ${i} was refused`);
      p.failure();
    }
  };
  return { b, clock, changes, fail };
}

describe('CircuitBreaker', () => {
  it('has documented defaults: 5 failures, 5 s first window, capped at 60 s', () => {
    assert.equal(FAILURE_THRESHOLD, 5);
    assert.equal(OPEN_MS, 5000);
    assert.equal(MAX_OPEN_MS, 60_000);
    let now = 0;
    const b = new CircuitBreaker({ now: () => now });
    for (let i = 0; i < 4; i++) b.acquire()!.failure();
    assert.equal(b.state, 'closed');
    b.acquire()!.failure();
    assert.equal(b.state, 'open');
    assert.equal(b.status().retryInMs, 5000);
    now += 5000;
    b.acquire()!.failure();
    assert.equal(b.status().retryInMs, 10_000);
  });

  it('stays closed below the threshold; a success resets the count', () => {
    const { b, fail, changes } = breaker();
    fail(2);
    assert.equal(b.status().consecutiveFailures, 2);
    b.acquire()!.success();
    assert.equal(b.status().consecutiveFailures, 0);
    fail(2);
    assert.equal(b.state, 'closed');
    assert.deepEqual(changes, []);
    assert.equal(b.status().openings, 0);
  });

  it('opens after threshold consecutive failures and refuses every request for the window', () => {
    const { b, clock, fail, changes } = breaker();
    fail(3);
    assert.equal(b.state, 'open');
    assert.deepEqual(changes, ['closed->open']);
    assert.equal(b.status().openings, 1);
    assert.equal(b.status().retryInMs, 1000);
    for (let i = 0; i < 100; i++) assert.equal(b.acquire(), undefined);
    clock.now += 999;
    assert.equal(b.acquire(), undefined);
    assert.equal(b.status().retryInMs, 1);
    assert.equal(b.state, 'open');
  });

  it('half-open: exactly one probe after the window; its success closes and resets the back-off', () => {
    const { b, clock, fail, changes } = breaker();
    fail(3);
    clock.now += 1000;
    const probe = b.acquire();
    assert.ok(probe?.probe, 'the first request after the window is the probe');
    assert.equal(b.state, 'half-open');
    for (let i = 0; i < 10; i++) assert.equal(b.acquire(), undefined, 'others are refused while the probe is in flight');
    probe.success();
    assert.equal(b.state, 'closed');
    assert.deepEqual(changes, ['closed->open', 'open->half-open', 'half-open->closed']);
    const next = b.acquire();
    assert.ok(next && !next.probe);
    next.success();
    // opening again starts from the first window
    fail(3);
    assert.equal(b.status().retryInMs, 1000);
    assert.equal(b.status().openings, 2);
  });

  it('a failed probe re-opens with a doubled window, capped at maxOpenMs', () => {
    const { b, clock, fail } = breaker();
    fail(3);
    const windows: number[] = [];
    for (let i = 0; i < 5; i++) {
      clock.now += b.status().retryInMs;
      const probe = b.acquire();
      assert.ok(probe?.probe);
      probe.failure();
      assert.equal(b.state, 'open');
      windows.push(b.status().retryInMs);
    }
    assert.deepEqual(windows, [2000, 4000, 5000, 5000, 5000]);
    assert.equal(b.status().openings, 6);
    // only the window's end lets a probe through
    clock.now += 4999;
    assert.equal(b.acquire(), undefined);
    clock.now += 1;
    assert.ok(b.acquire()?.probe);
  });

  it('a probe that ends without a verdict (client gone) lets the next request probe', () => {
    const { b, clock, fail } = breaker();
    fail(3);
    clock.now += 1000;
    const probe = b.acquire()!;
    probe.release();
    assert.equal(b.state, 'open');
    assert.equal(b.status().openings, 1, 'not counted as an opening');
    const next = b.acquire();
    assert.ok(next?.probe, 'next request is the probe, at once');
    next.success();
    assert.equal(b.state, 'closed');
  });

  it('a permit settles once; late failures of requests started before the opening do not extend the window', () => {
    const { b, clock, fail } = breaker();
    const early = [b.acquire()!, b.acquire()!];
    fail(3);
    clock.now += 500;
    early[0]!.failure();
    early[0]!.failure();
    b.failure(); // an unattributed body failure
    assert.equal(b.state, 'open');
    assert.equal(b.status().retryInMs, 500, 'window unchanged');
    assert.equal(b.status().openings, 1);
    // an answer, even from a request that started earlier, shows the upstream is there
    early[1]!.success();
    assert.equal(b.state, 'closed');
    early[1]!.failure(); // already settled: ignored
    assert.equal(b.status().consecutiveFailures, 0);
  });

  it('unattributed failures (broken blob bodies) count while closed', () => {
    const { b } = breaker();
    b.failure();
    b.failure();
    assert.equal(b.state, 'closed');
    b.failure();
    assert.equal(b.state, 'open');
    b.success();
    assert.equal(b.state, 'closed');
  });
});
