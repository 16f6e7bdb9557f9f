/**
 * A circuit breaker for one upstream (in the spirit of verdaccio's uplink `max_fails`/`fail_timeout`, with a
 * single half-open probe and an exponential back-off).
 *
 * - closed: requests go through; `FAILURE_THRESHOLD` consecutive transport failures open it.
 * - open: requests are refused at once (the caller answers from cache or with 503) until the back-off
 *   window ends. The first window is `OPEN_MS`; each failed probe doubles it, up to `MAX_OPEN_MS`.
 * - half-open: the first request after the window is let through as the probe; all others are still
 *   refused. The probe's success closes the breaker (and resets the back-off), its failure re-opens it
 *   with the next, longer window. A probe that ends without a verdict (the client hung up) frees the
 *   slot for the next request.
 *
 * What counts as a failure is the caller's call (src/upstream/transport.ts: connect errors, timeouts, resets,
 * 502/503/504 after retries); any other answer — 2xx, 404, 401, 429 — is a success: the upstream is there.
 * Time comes from an injected clock, so the state machine is tested without sleeping.
 */

/** Consecutive failed upstream requests (each after its retries) that open the breaker. */
export const FAILURE_THRESHOLD = 5;
/** The first back-off window. */
export const OPEN_MS = 5_000;
/** The longest back-off window: failed probes double the window up to this. */
export const MAX_OPEN_MS = 60_000;

export type BreakerState = 'closed' | 'open' | 'half-open';

/** Prometheus value of each state (regcache_upstream_breaker_state). */
export const BREAKER_STATE_VALUE: Record<BreakerState, number> = { closed: 0, open: 1, 'half-open': 2 };

export interface BreakerStatus {
  state: BreakerState;
  /** Consecutive failures counted while closed. */
  consecutiveFailures: number;
  /** Times the breaker opened (from closed or from a failed probe) since start. */
  openings: number;
  /** While open: milliseconds until the next request is let through as a probe (0: the next one is). */
  retryInMs: number;
  /** The current (or, when closed, the next) back-off window. */
  openMs: number;
}

export interface BreakerOptions {
  failureThreshold?: number;
  openMs?: number;
  maxOpenMs?: number;
  now?: () => number;
  /** Called on every state change (logs). */
  onChange?: (to: BreakerState, from: BreakerState, status: BreakerStatus) => void;
}

/** Permission for one upstream request; exactly one of its methods should end it (extra calls are ignored). */
export interface BreakerPermit {
  /** This request is the half-open probe. */
  readonly probe: boolean;
  /** The upstream answered. */
  success(): void;
  /** A transport-level failure. */
  failure(): void;
  /** Ended without a verdict (aborted by the client). */
  release(): void;
}

export class CircuitBreaker {
  private st: BreakerState = 'closed';
  private failures = 0;
  private opened = 0;
  private openUntil = 0;
  /** Back-off window of the next opening (grows with failed probes, reset by a close). */
  private window: number;
  private readonly threshold: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly now: () => number;
  private readonly onChange: BreakerOptions['onChange'];

  constructor(opts: BreakerOptions = {}) {
    this.threshold = Math.max(1, opts.failureThreshold ?? FAILURE_THRESHOLD);
    this.baseMs = opts.openMs ?? OPEN_MS;
    this.maxMs = Math.max(this.baseMs, opts.maxOpenMs ?? MAX_OPEN_MS);
    this.window = this.baseMs;
    this.now = opts.now ?? Date.now;
    this.onChange = opts.onChange;
  }

  get state(): BreakerState {
    return this.st;
  }

  status(): BreakerStatus {
    return {
      state: this.st,
      consecutiveFailures: this.failures,
      openings: this.opened,
      retryInMs: this.st === 'open' ? Math.max(0, this.openUntil - this.now()) : 0,
      openMs: this.window,
    };
  }

  /**
   * A permit for one request, or undefined when the request must not reach the upstream (open, or half-open
   * with the probe in flight).
   */
  acquire(): BreakerPermit | undefined {
    if (this.st === 'half-open') return undefined;
    if (this.st === 'open') {
      if (this.now() < this.openUntil) return undefined;
      this.transition('half-open');
      return this.permit(true);
    }
    return this.permit(false);
  }

  /** A failure not tied to a permit (a blob body that broke off after its headers arrived). */
  failure(): void {
    if (this.st !== 'closed') return; // open already; a probe decides the rest
    this.failures++;
    if (this.failures >= this.threshold) this.open();
  }

  /** A success not tied to a permit. */
  success(): void {
    this.close();
  }

  private permit(probe: boolean): BreakerPermit {
    let settled = false;
    const once = (fn: () => void) => () => {
      if (settled) return;
      settled = true;
      fn();
    };
    return {
      probe,
      // Any answer means the upstream is reachable: closes the breaker whoever gets it (a request that started
      // before the breaker opened included).
      success: once(() => this.close()),
      failure: once(() => {
        if (probe && this.st === 'half-open') {
          this.window = Math.min(this.window * 2, this.maxMs);
          this.open();
        } else {
          this.failure();
        }
      }),
      release: once(() => {
        // The probe ended without a verdict: the next request probes instead.
        if (probe && this.st === 'half-open') {
          this.openUntil = this.now();
          this.transition('open');
        }
      }),
    };
  }

  private open(): void {
    this.openUntil = this.now() + this.window;
    this.opened++;
    this.failures = 0;
    this.transition('open');
  }

  private close(): void {
    this.failures = 0;
    this.window = this.baseMs;
    if (this.st !== 'closed') this.transition('closed');
  }

  private transition(to: BreakerState): void {
    const from = this.st;
    this.st = to;
    if (from !== to) this.onChange?.(to, from, this.status());
  }
}
