import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { BlobStore } from '../storage/blobstore.js';

export const PROBE_KEY = '_health/probe';

export interface HealthSettings {
  enabled: boolean;
  intervalMs: number;
  threshold: number;
}

/**
 * distribution's `health.storagedriver`: every interval, write a small object to storage and read it back.
 * After `threshold` consecutive failures the storage is unhealthy (`/`, `/v2/`, `/readyz` answer 503); the
 * first success makes it healthy again.
 */
export class StorageHealth {
  private failures = 0;
  private lastError: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checking = false;

  constructor(
    private readonly storage: BlobStore,
    private readonly settings: HealthSettings,
    private readonly logger: Logger,
    /** Replaces the write/read probe (tests, other drivers). */
    private readonly probe: () => Promise<void> = () => writeReadProbe(storage),
  ) {}

  get name(): string {
    return `storagedriver_${this.storage.kind}`;
  }

  get healthy(): boolean {
    return !this.settings.enabled || this.failures < this.settings.threshold;
  }

  /** distribution's /debug/health body: failing check name → error. */
  status(): Record<string, string> {
    return this.healthy ? {} : { [this.name]: this.lastError ?? 'failed' };
  }

  start(): void {
    if (!this.settings.enabled) return;
    this.timer = setInterval(() => void this.check(), this.settings.intervalMs);
    this.timer.unref();
    void this.check();
  }

  async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    const was = this.healthy;
    try {
      await this.probe();
      this.failures = 0;
      this.lastError = undefined;
    } catch (e) {
      this.failures++;
      this.lastError = (e as Error).message;
    } finally {
      this.checking = false;
    }
    if (was && !this.healthy) {
      this.logger.error({ check: this.name, failures: this.failures, err: this.lastError }, 'storage health check failing: reporting unhealthy');
    } else if (!was && this.healthy) {
      this.logger.info({ check: this.name }, 'storage health check passing again');
    } else if (this.failures > 0) {
      this.logger.warn({ check: this.name, failures: this.failures, err: this.lastError }, 'storage health check failed');
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

async function writeReadProbe(storage: BlobStore): Promise<void> {
  const data = randomBytes(16);
  await storage.putObject(PROBE_KEY, data);
  const back = await storage.getObject(PROBE_KEY);
  if (!back || !back.equals(data)) throw new Error('storage returned different bytes than written');
}
