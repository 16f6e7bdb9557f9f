import type { Logger } from 'pino';
import type { Coordinator, FetchLease } from '../seams.js';

const LOCAL_LEASE: FetchLease = { release: async () => {} };

/**
 * Never lets a coordination failure fail a pull: when the inner coordinator (Redis) errors, the caller is
 * told it holds the lease ("acquired locally") — in-process coalescing still makes one fetch per replica —
 * and waiting stops. Failures are counted and logged (first one, then at most every 30 s; recovery once).
 */
export class FallbackCoordinator implements Coordinator {
  /** Coordination calls that failed and were answered locally. */
  failures = 0;
  private degraded = false;
  private lastLog = 0;

  constructor(
    private readonly inner: Coordinator,
    private readonly logger: Logger,
  ) {}

  get isDegraded(): boolean {
    return this.degraded;
  }

  private failed(op: string, e: unknown): void {
    this.failures++;
    const now = Date.now();
    if (!this.degraded || now - this.lastLog >= 30_000) {
      this.lastLog = now;
      this.logger.warn(
        { op, err: (e as Error).message, failures: this.failures },
        'coordination (redis) unavailable; falling back to local coalescing',
      );
    }
    this.degraded = true;
  }

  private ok(): void {
    if (!this.degraded) return;
    this.degraded = false;
    this.logger.info({ failures: this.failures }, 'coordination (redis) available again');
  }

  async tryAcquire(key: string, ttlMs: number): Promise<FetchLease | null> {
    try {
      const lease = await this.inner.tryAcquire(key, ttlMs);
      this.ok();
      return lease;
    } catch (e) {
      this.failed('acquire', e);
      return LOCAL_LEASE;
    }
  }

  async waitReleased(key: string, timeoutMs: number): Promise<void> {
    try {
      await this.inner.waitReleased(key, timeoutMs);
      this.ok();
    } catch (e) {
      this.failed('wait', e);
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
