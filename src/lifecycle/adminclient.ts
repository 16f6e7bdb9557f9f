import { Agent, fetch } from 'undici';
import type { CacheListing, RemovalResult } from './admin.js';
import { ADMIN_PREFIX } from './adminapi.js';
import type { VerifyReport } from './verify.js';

/** The `regcache cache` operations, local (CacheAdmin over the storage) or remote (a running server's admin API). */
export interface CacheOps {
  list(repo?: string): Promise<CacheListing> | CacheListing;
  remove(ref: string, opts: { dryRun?: boolean }): Promise<RemovalResult>;
  prune(opts: { olderThanMs?: number; maxSizeBytes?: number; dryRun?: boolean }): Promise<RemovalResult>;
  verify(opts: { dryRun?: boolean }): Promise<VerifyReport>;
}

/** Client of the admin API on a server's debug listener (see adminapi.ts). */
export class AdminClient implements CacheOps {
  /** verify and prune answer when done, which on a large cache takes long: no response deadline. */
  private readonly dispatcher = new Agent({ headersTimeout: 0, bodyTimeout: 0 });

  /**
   * `token` yields the admin token (or undefined for none); it is asked only for state-changing calls, so listing
   * works without access to the token file.
   */
  constructor(
    readonly baseUrl: string,
    private readonly token: () => Promise<string | undefined> = async () => undefined,
  ) {}

  private async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (method === 'POST') {
      headers['Content-Type'] = 'application/json';
      const token = await this.token();
      if (token !== undefined) headers.Authorization = `Bearer ${token}`;
    }
    let res;
    try {
      res = await fetch(`${this.baseUrl}${ADMIN_PREFIX}${path}`, {
        dispatcher: this.dispatcher,
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new Error(`cannot reach the admin API at ${this.baseUrl}: ${(e as Error).message}`);
    }
    const text = await res.text();
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new Error(`admin API at ${this.baseUrl}: HTTP ${res.status}: ${text.slice(0, 200)}`);
    }
    if (!res.ok) throw new Error(`admin API: ${(value as { error?: string }).error ?? `HTTP ${res.status}`}`);
    return value as T;
  }

  list(repo?: string): Promise<CacheListing> {
    return this.call('GET', repo ? `?repo=${encodeURIComponent(repo)}` : '');
  }
  remove(ref: string, opts: { dryRun?: boolean }): Promise<RemovalResult> {
    return this.call('POST', '/rm', { ref, dryRun: opts.dryRun ?? false });
  }
  prune(opts: { olderThanMs?: number; maxSizeBytes?: number; dryRun?: boolean }): Promise<RemovalResult> {
    return this.call('POST', '/prune', opts);
  }
  verify(opts: { dryRun?: boolean }): Promise<VerifyReport> {
    return this.call('POST', '/verify', opts);
  }
}
