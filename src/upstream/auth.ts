import type { Logger } from 'pino';
import { RegistryError } from '../errors.js';
import { readLimited } from './body.js';
import { parseChallenges } from './challenge.js';
import { describe } from './failures.js';
import type { Transport } from './transport.js';
import { MemoryLru } from '../util/lru.js';

/** Upstream tokens kept at most (one per repository scope); a forgotten one is fetched again. */
const TOKENS_MAX = 1000;

export interface AuthOptions {
  /** Upstream name for messages. */
  name: string;
  /** The upstream's own host name: credentials may go there. */
  upstreamHost: string;
  /** The upstream's protocol: credentials for an https upstream never go to a plain-http realm. */
  upstreamProtocol: 'http:' | 'https:';
  /** Other host names trusted with credentials for token requests. */
  authHosts: string[];
  username?: string;
  password?: string;
  /** Credentials from a docker credential helper (ECR): fetched on use, refreshed after a rejection. */
  credentialHelper?: { get(): Promise<{ username: string; password: string }>; invalidate(): void };
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

const DEFAULT_EXPIRES_IN_S = 60;
const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;

/** `repository:<repo>:pull`, the scope of every request we make. */
export function pullScope(repo: string): string {
  return `repository:${repo}:pull`;
}

/**
 * Authorization for one upstream. Learns the scheme from 401 challenges: Basic (then sent
 * preemptively) or Bearer (token from the realm, cached per scope until shortly before expiry,
 * fetched preemptively for new scopes once the realm is known).
 */
export class Authenticator {
  private basic = false;
  private bearer: { realm: URL; service?: string } | undefined;
  /** Per scope (repository): bounded, so that clients inventing names cannot grow it. */
  private readonly tokens = new MemoryLru<CachedToken>(TOKENS_MAX, () => 1);
  private readonly inflight = new Map<string, Promise<string>>();
  private readonly warnedRealms = new Set<string>();
  private username: string | undefined;
  private password: string | undefined;

  constructor(
    private readonly opts: AuthOptions,
    private readonly transport: Transport,
    private readonly logger: Logger,
  ) {
    this.username = opts.username;
    this.password = opts.password;
  }

  private get hasCredentials(): boolean {
    return this.username !== undefined && this.username !== '' && this.password !== undefined;
  }

  private basicHeader(): string {
    return 'Basic ' + Buffer.from(`${this.username}:${this.password}`).toString('base64');
  }

  private async loadCredentials(): Promise<void> {
    if (!this.opts.credentialHelper) return;
    const c = await this.opts.credentialHelper.get();
    if (c.username !== this.username || c.password !== this.password) {
      this.username = c.username;
      this.password = c.password;
      this.tokens.clear();
    }
  }

  /**
   * The Authorization header for a request in `scope`, if we know how to authenticate yet. A token fetch is
   * shared by concurrent callers: an abort stops this caller's wait, not the fetch (bounded by the timeouts).
   */
  async authorization(scope: string, signal?: AbortSignal): Promise<string | undefined> {
    await this.loadCredentials();
    if (this.bearer) return `Bearer ${await untilAborted(this.token(scope), signal)}`;
    if (this.basic && this.hasCredentials) return this.basicHeader();
    return undefined;
  }

  /**
   * Called with the WWW-Authenticate of a 401. Returns true when a retry with fresh authorization
   * may succeed (a Bearer challenge, or a Basic challenge for which we have credentials not yet sent).
   */
  onUnauthorized(wwwAuthenticate: string | string[] | undefined, scope: string, sentBasic: boolean): boolean {
    // Helper credentials (ECR tokens) expire: a rejection makes the next attempt ask the helper again.
    if (sentBasic) this.opts.credentialHelper?.invalidate();
    const challenges = parseChallenges(wwwAuthenticate);
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    if (bearer) {
      const realm = parseRealm(bearer.params.realm);
      if (!realm) {
        throw new RegistryError('UNAUTHORIZED', `upstream ${this.opts.name}: bearer challenge without a usable realm`, {
          detail: { upstream: this.opts.name },
        });
      }
      this.bearer = { realm, service: bearer.params.service };
      this.tokens.delete(scope);
      return true;
    }
    if (challenges.some((c) => c.scheme === 'basic') && (this.hasCredentials || this.opts.credentialHelper) && !sentBasic) {
      this.basic = true;
      return true;
    }
    return false;
  }

  private async token(scope: string): Promise<string> {
    const cached = this.tokens.get(scope);
    if (cached && cached.expiresAt > Date.now()) return cached.token;
    let pending = this.inflight.get(scope);
    if (!pending) {
      pending = this.fetchToken(scope).finally(() => this.inflight.delete(scope));
      this.inflight.set(scope, pending);
    }
    return pending;
  }

  /** The upstream's own host name, or an authhosts entry (`host` or `host:port`). */
  private mayReceiveCredentials(url: URL): boolean {
    const hostname = url.hostname.toLowerCase();
    const host = url.host.toLowerCase();
    if (this.opts.upstreamProtocol === 'https:' && url.protocol !== 'https:') return false;
    if (hostname === this.opts.upstreamHost.toLowerCase()) return true;
    return this.opts.authHosts.some((a) => a.toLowerCase() === hostname || a.toLowerCase() === host);
  }

  private async fetchToken(scope: string): Promise<string> {
    const { realm, service } = this.bearer!;
    const url = new URL(realm);
    if (service !== undefined) url.searchParams.set('service', service);
    url.searchParams.set('scope', scope);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.hasCredentials) {
      if (this.mayReceiveCredentials(url)) {
        headers.authorization = this.basicHeader();
      } else if (!this.warnedRealms.has(url.host)) {
        this.warnedRealms.add(url.host);
        this.logger.warn(
          { realm: url.origin + url.pathname },
          'token realm host is neither the upstream host nor in authhosts: requesting token anonymously',
        );
      }
    }
    const where = `upstream ${this.opts.name}: token request to ${url.host}`;
    const fail = (code: 'UNAUTHORIZED' | 'DENIED' | 'UNAVAILABLE', why: string, cause?: unknown) =>
      new RegistryError(code, `${where} ${why}`, { detail: { upstream: this.opts.name }, cause });

    let res;
    try {
      res = await this.transport.send({ method: 'GET', url, headers });
    } catch (err) {
      if (err instanceof RegistryError) throw err;
      throw fail('UNAVAILABLE', `failed: ${describe(err)}`, err);
    }
    if (res.status !== 200) {
      await res.body.dump();
      if (headers.authorization) this.opts.credentialHelper?.invalidate();
      throw fail(res.status === 403 ? 'DENIED' : 'UNAUTHORIZED', `returned ${res.status}`);
    }
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      const bytes = await readLimited(res.body, MAX_TOKEN_RESPONSE_BYTES, null);
      parsed = JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw fail('UNAUTHORIZED', 'returned an unreadable response', err);
    }
    const token = typeof parsed.token === 'string' && parsed.token ? parsed.token : parsed.access_token;
    if (typeof token !== 'string' || token === '') throw fail('UNAUTHORIZED', 'returned no token');
    const expiresIn =
      typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_EXPIRES_IN_S;
    // Renew shortly before expiry: 10 s early, or a quarter early for short-lived tokens.
    const lifetimeS = expiresIn - Math.min(10, expiresIn / 4);
    this.tokens.set(scope, { token, expiresAt: Date.now() + lifetimeS * 1000 });
    this.logger.debug({ scope, expiresIn }, 'upstream token obtained');
    return token;
  }
}

function parseRealm(realm: string | undefined): URL | undefined {
  if (!realm) return undefined;
  try {
    const u = new URL(realm);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u : undefined;
  } catch {
    return undefined;
  }
}

function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
