import type { Logger } from 'pino';
import type { RateLimitInfo } from './types.js';

/** Docker Hub `ratelimit-limit: 100;w=21600` → 100. */
export function parseRateLimitHeader(v: string | undefined): number | undefined {
  if (!v) return undefined;
  const m = /^\s*(\d+)/.exec(v);
  return m ? Number(m[1]) : undefined;
}

/** `Retry-After` as delta seconds or HTTP date → whole seconds from now (≥ 0); undefined if unparsable. */
export function parseRetryAfter(v: string | undefined, now = Date.now()): number | undefined {
  if (!v) return undefined;
  const t = v.trim();
  if (/^\d+$/.test(t)) return Number(t);
  const when = Date.parse(t);
  if (Number.isNaN(when)) return undefined;
  return Math.max(0, Math.ceil((when - now) / 1000));
}

const WARN_EVERY_MS = 60_000;

/** Remembers the last Docker Hub pull-limit headers and warns when few pulls remain. */
export class RateLimitTracker {
  private info: RateLimitInfo | undefined;
  private lastWarn = 0;

  constructor(private readonly logger: Logger) {}

  record(get: (name: string) => string | undefined): void {
    const limit = parseRateLimitHeader(get('ratelimit-limit'));
    const remaining = parseRateLimitHeader(get('ratelimit-remaining'));
    if (limit === undefined && remaining === undefined) return;
    const now = Date.now();
    this.info = { limit, remaining, updatedAt: now };
    if (limit !== undefined && remaining !== undefined && remaining < limit * 0.1 && now - this.lastWarn >= WARN_EVERY_MS) {
      this.lastWarn = now;
      this.logger.warn({ limit, remaining }, 'upstream pull rate limit nearly exhausted');
    }
  }

  current(): RateLimitInfo | undefined {
    return this.info ? { ...this.info } : undefined;
  }
}
