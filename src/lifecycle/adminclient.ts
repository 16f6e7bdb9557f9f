import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Agent, fetch } from 'undici';
import type { CacheListing, RemovalResult } from './admin.js';
import { ADMIN_PREFIX, TAR_TYPE } from './adminapi.js';
import type { ImportReport } from './bundle.js';
import type { VerifyReport } from './verify.js';

/** The `regcache cache` operations, local (CacheAdmin over the storage) or remote (a running server's admin API). */
export interface CacheOps {
  list(repo?: string): Promise<CacheListing> | CacheListing;
  remove(ref: string, opts: { dryRun?: boolean }): Promise<RemovalResult>;
  prune(opts: { olderThanMs?: number; maxSizeBytes?: number; dryRun?: boolean }): Promise<RemovalResult>;
  verify(opts: { dryRun?: boolean }): Promise<VerifyReport>;
  /** An OCI image layout tar of cached images, written to `out` (see bundle.ts). */
  exportBundle(images: string[], opts: { platform?: string }, out: Writable): Promise<void>;
  importBundle(input: Readable, opts: { upstream?: string }): Promise<ImportReport>;
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

  private async send(method: 'GET' | 'POST', path: string, body?: string | Readable, type = 'application/json') {
    const headers: Record<string, string> = {};
    if (method === 'POST') {
      headers['Content-Type'] = type;
      const token = await this.token();
      if (token !== undefined) headers.Authorization = `Bearer ${token}`;
    }
    try {
      return await fetch(`${this.baseUrl}${ADMIN_PREFIX}${path}`, {
        dispatcher: this.dispatcher,
        method,
        headers,
        body,
        ...(body instanceof Readable && { duplex: 'half' as const }),
      });
    } catch (e) {
      throw new Error(`cannot reach the admin API at ${this.baseUrl}: ${(e as Error).message}`);
    }
  }

  private async call<T>(method: 'GET' | 'POST', path: string, body?: unknown, stream?: Readable): Promise<T> {
    const res = await this.send(method, path, stream ?? (body === undefined ? undefined : JSON.stringify(body)), stream ? TAR_TYPE : undefined);
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
  async exportBundle(images: string[], opts: { platform?: string }, out: Writable): Promise<void> {
    const res = await this.send('POST', '/export', JSON.stringify({ images, platform: opts.platform }));
    if (!res.ok || !res.body) {
      const text = await res.text();
      let msg = `HTTP ${res.status}`;
      try {
        msg = (JSON.parse(text) as { error?: string }).error ?? msg;
      } catch {
        msg = `${msg}: ${text.slice(0, 200)}`;
      }
      throw new Error(`admin API: ${msg}`);
    }
    try {
      await pipeline(Readable.fromWeb(res.body as WebReadableStream), out);
    } catch (e) {
      throw new Error(`admin API: the export stream broke off: ${(e as Error).message}`);
    }
  }
  importBundle(input: Readable, opts: { upstream?: string }): Promise<ImportReport> {
    const q = opts.upstream ? `?upstream=${encodeURIComponent(opts.upstream)}` : '';
    return this.call('POST', `/import${q}`, undefined, input);
  }
}
