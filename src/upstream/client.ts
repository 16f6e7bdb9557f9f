import type { Logger } from 'pino';
import type { UpstreamConfig } from '../config/types.js';
import { RegistryError } from '../errors.js';
import { digestOf, parseDigest } from '../oci/digest.js';
import {
  detectManifestMediaType,
  isManifestMediaType,
  MAX_MANIFEST_BYTES,
  stripParams,
  UPSTREAM_MANIFEST_ACCEPT,
} from '../oci/mediatypes.js';
import { CircuitBreaker, type BreakerStatus } from './breaker.js';
import { CredentialHelper } from './credhelper.js';
import { Authenticator, pullScope } from './auth.js';
import { BodyTooLargeError, parseContentLength, readLimited } from './body.js';
import { normalizeRepo } from './dockerhub.js';
import { isAbort, networkError, statusError, type Resource } from './failures.js';
import { RateLimitTracker } from './ratelimit.js';
import { header, isTransportFailure, Transport, type UpstreamResponse } from './transport.js';
import type { BlobResponse, ManifestHead, ManifestResponse, RateLimitInfo, ReferrerDescriptor, Upstream } from './types.js';

const MAX_TAG_PAGES = 100;
const MAX_REFERRER_PAGES = 20;
const MAX_REFERRERS_PAGE_BYTES = 4 * 1024 * 1024;
const MAX_TAGS_PAGE_BYTES = 16 * 1024 * 1024;

export interface UpstreamDeps {
  logger: Logger;
  /** The circuit breaker closed again (the upstream answered after being marked down): e.g. to tell other workers. */
  onReachable?(): void;
}

export function createUpstream(cfg: UpstreamConfig, deps: UpstreamDeps): Upstream {
  const logger = deps.logger.bindings().upstream === undefined ? deps.logger.child({ upstream: cfg.name }) : deps.logger;
  return new UpstreamClient(cfg, logger, deps.onReachable);
}

class UpstreamClient implements Upstream {
  readonly name: string;
  private readonly base: string;
  private readonly transport: Transport;
  private readonly auth: Authenticator;
  private readonly rate: RateLimitTracker;
  private readonly circuit: CircuitBreaker;

  constructor(
    private readonly cfg: UpstreamConfig,
    private readonly logger: Logger,
    onReachable?: () => void,
  ) {
    this.name = cfg.name;
    const remote = new URL(cfg.remoteurl);
    this.base = remote.origin + remote.pathname.replace(/\/+$/, '');
    this.circuit = new CircuitBreaker({
      onChange: (to, from, s) => {
        if (to === 'open' && from === 'closed') {
          logger.warn({ breaker: to, retryInMs: s.retryInMs }, 'upstream marked down after repeated failures: answering from cache only');
        } else if (to === 'open' && from === 'half-open') {
          logger.warn({ breaker: to, retryInMs: s.retryInMs }, 'upstream still down (probe failed)');
        } else if (to === 'half-open') {
          logger.info({ breaker: to }, 'upstream probe: letting one request through');
        } else if (to === 'closed') {
          logger.info({ breaker: to }, 'upstream reachable again: circuit closed');
          onReachable?.();
        }
      },
    });
    this.transport = new Transport(
      {
        name: cfg.name,
        timeouts: cfg.timeouts,
        connections: cfg.connections,
        ca: cfg.ca,
        insecureSkipVerify: cfg.insecureSkipVerify,
        breaker: this.circuit,
      },
      logger,
    );
    this.auth = new Authenticator(
      {
        name: cfg.name,
        upstreamHost: remote.hostname,
        upstreamProtocol: remote.protocol === 'https:' ? 'https:' : 'http:',
        authHosts: cfg.authhosts, // config adds auth.docker.io for Docker Hub
        username: cfg.username,
        password: cfg.password,
        credentialHelper: cfg.credentialhelper
          ? new CredentialHelper(cfg.credentialhelper, remote.host, logger)
          : undefined,
      },
      this.transport,
      logger,
    );
    this.rate = new RateLimitTracker(logger);
  }

  normalizeRepo(repo: string): string {
    return normalizeRepo(repo, this.cfg.dockerHub);
  }

  rateLimit(): RateLimitInfo | undefined {
    return this.rate.current();
  }

  breaker(): BreakerStatus {
    return this.circuit.status();
  }

  markReachable(): void {
    this.circuit.success();
  }

  async close(): Promise<void> {
    await this.transport.close();
  }

  async headManifest(repo: string, ref: string, signal?: AbortSignal): Promise<ManifestHead> {
    repo = this.normalizeRepo(repo);
    const what = `HEAD manifest ${repo}${refSuffix(ref)}`;
    const res = await this.call('HEAD', this.url(repo, 'manifests', ref), repo, { accept: UPSTREAM_MANIFEST_ACCEPT }, what, signal);
    await res.body.dump();
    this.rate.record((n) => header(res, n));
    this.checkStatus(res, 'manifest', what);
    const contentType = header(res, 'content-type');
    const size = parseContentLength(header(res, 'content-length'));
    let digest = header(res, 'docker-content-digest');
    if (digest && !parseDigest(digest)) {
      this.logger.warn({ repo, ref, claimed: digest.slice(0, 100) }, 'upstream sent a malformed Docker-Content-Digest on HEAD; asking for the manifest');
      digest = undefined;
    }
    if (!digest && parseDigest(ref)) digest = ref;
    if (!digest || size === null || !isManifestMediaType(contentType)) {
      // Some registries omit these on HEAD: ask for the manifest itself.
      const m = await this.getManifest(repo, ref, signal);
      return { digest: m.digest, mediaType: m.mediaType, size: m.bytes.length };
    }
    if (parseDigest(ref) && digest !== ref) {
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.name}: ${what} answered digest ${digest}`, {
        detail: { upstream: this.name },
      });
    }
    return { digest, mediaType: stripParams(contentType!), size };
  }

  async getManifest(repo: string, ref: string, signal?: AbortSignal): Promise<ManifestResponse> {
    repo = this.normalizeRepo(repo);
    const what = `GET manifest ${repo}${refSuffix(ref)}`;
    const res = await this.call('GET', this.url(repo, 'manifests', ref), repo, { accept: UPSTREAM_MANIFEST_ACCEPT }, what, signal);
    this.rate.record((n) => header(res, n));
    if (res.status !== 200) {
      await res.body.dump();
      this.checkStatus(res, 'manifest', what);
      throw this.bad(what, `returned ${res.status}`);
    }
    const bytes = await this.readBody(res, MAX_MANIFEST_BYTES, what, signal);
    const contentType = header(res, 'content-type');
    const mediaType = detectManifestMediaType(bytes, contentType);
    if (!mediaType) throw this.bad(what, `returned a body that is not a manifest (content-type ${contentType ?? 'none'})`);
    const wanted = parseDigest(ref);
    const digest = digestOf(bytes, wanted?.algorithm ?? 'sha256');
    if (wanted && digest !== wanted.digest) throw this.bad(what, `returned content with digest ${digest}`);
    const claimed = header(res, 'docker-content-digest');
    if (!wanted && claimed && claimed.startsWith('sha256:') && claimed !== digest) {
      this.logger.warn({ repo, ref, claimed, digest }, 'upstream Docker-Content-Digest differs from the manifest bytes');
    }
    return { bytes, mediaType, digest };
  }

  async headBlob(repo: string, digest: string, signal?: AbortSignal): Promise<{ size: number }> {
    repo = this.normalizeRepo(repo);
    const what = `HEAD blob ${repo}@${digest}`;
    const res = await this.call('HEAD', this.url(repo, 'blobs', digest), repo, {}, what, signal);
    await res.body.dump();
    this.checkStatus(res, 'blob', what);
    const size = parseContentLength(header(res, 'content-length'));
    if (size === null) throw this.bad(what, 'answered without Content-Length');
    return { size };
  }

  async getBlob(repo: string, digest: string, signal?: AbortSignal): Promise<BlobResponse> {
    repo = this.normalizeRepo(repo);
    const what = `GET blob ${repo}@${digest}`;
    const res = await this.call('GET', this.url(repo, 'blobs', digest), repo, {}, what, signal);
    if (res.status !== 200) {
      await res.body.dump();
      this.checkStatus(res, 'blob', what);
      throw this.bad(what, `returned ${res.status}`);
    }
    // undici errors this stream on reset, on fewer bytes than Content-Length and after idleMs of silence;
    // those count against the circuit breaker (errors its reader causes do not).
    res.body.once('error', (err) => {
      if (!signal?.aborted && isTransportFailure(err)) this.circuit.failure();
    });
    return { size: parseContentLength(header(res, 'content-length')), body: res.body };
  }

  async listTags(repo: string, signal?: AbortSignal): Promise<string[]> {
    repo = this.normalizeRepo(repo);
    const what = `GET tags ${repo}`;
    const tags: string[] = [];
    let url: URL | undefined = this.url(repo, 'tags');
    for (let page = 0; url; page++) {
      if (page >= MAX_TAG_PAGES) throw this.bad(what, `paginates beyond ${MAX_TAG_PAGES} pages`);
      const res = await this.call('GET', url, repo, { accept: 'application/json' }, what, signal);
      if (res.status !== 200) {
        await res.body.dump();
        this.checkStatus(res, 'tags', what);
        throw this.bad(what, `returned ${res.status}`);
      }
      const bytes = await this.readBody(res, MAX_TAGS_PAGE_BYTES, what, signal);
      let doc: { tags?: unknown };
      try {
        doc = JSON.parse(bytes.toString('utf8'));
      } catch (err) {
        throw this.bad(what, 'returned invalid JSON', err);
      }
      if (doc.tags != null && !Array.isArray(doc.tags)) throw this.bad(what, 'returned no tag list');
      for (const t of (doc.tags as unknown[] | null | undefined) ?? []) if (typeof t === 'string') tags.push(t);
      url = nextLink(header(res, 'link'), res.url);
      if (url && url.origin !== res.url.origin) throw this.bad(what, 'paginates to another origin');
    }
    return tags;
  }

  async listReferrers(repo: string, digest: string, signal?: AbortSignal): Promise<ReferrerDescriptor[] | undefined> {
    repo = this.normalizeRepo(repo);
    const what = `GET referrers ${repo}@${digest}`;
    const out: ReferrerDescriptor[] = [];
    let url: URL | undefined = new URL(`${this.base}/v2/${repo}/referrers/${digest}`);
    for (let page = 0; url; page++) {
      if (page >= MAX_REFERRER_PAGES) throw this.bad(what, `paginates beyond ${MAX_REFERRER_PAGES} pages`);
      const res = await this.call('GET', url, repo, { accept: 'application/vnd.oci.image.index.v1+json' }, what, signal);
      if (res.status === 404 && page === 0) {
        // No referrers API here (a registry with it never answers 404): clients use the tag schema.
        await res.body.dump();
        return undefined;
      }
      if (res.status !== 200) {
        await res.body.dump();
        this.checkStatus(res, 'manifest', what);
        throw this.bad(what, `returned ${res.status}`);
      }
      const bytes = await this.readBody(res, MAX_REFERRERS_PAGE_BYTES, what, signal);
      let doc: { manifests?: unknown };
      try {
        doc = JSON.parse(bytes.toString('utf8')) as { manifests?: unknown };
      } catch (err) {
        throw this.bad(what, 'returned invalid JSON', err);
      }
      if (doc.manifests != null && !Array.isArray(doc.manifests)) throw this.bad(what, 'returned no image index');
      for (const d of (doc.manifests as unknown[] | null | undefined) ?? []) {
        const r = d as Partial<ReferrerDescriptor> | null;
        if (r && typeof r.mediaType === 'string' && typeof r.digest === 'string' && parseDigest(r.digest) && typeof r.size === 'number') {
          out.push(r as ReferrerDescriptor);
        }
      }
      url = nextLink(header(res, 'link'), res.url);
      if (url && url.origin !== res.url.origin) throw this.bad(what, 'paginates to another origin');
    }
    return out;
  }

  private url(repo: string, kind: 'manifests' | 'blobs' | 'tags', ref?: string): URL {
    return new URL(kind === 'tags' ? `${this.base}/v2/${repo}/tags/list` : `${this.base}/v2/${repo}/${kind}/${ref}`);
  }

  /** One request with authorization; after a 401 learns the challenge and retries once. Returns any status. */
  private async call(
    method: 'GET' | 'HEAD',
    url: URL,
    repo: string,
    extraHeaders: Record<string, string>,
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<UpstreamResponse> {
    const scope = pullScope(repo);
    const attempt = async () => {
      const authorization = await this.auth.authorization(scope, signal);
      const headers: Record<string, string> = { ...extraHeaders };
      if (authorization) headers.authorization = authorization;
      try {
        const res = await this.transport.send({ method, url, headers, signal });
        return { res, sentBasic: authorization?.startsWith('Basic ') ?? false };
      } catch (err) {
        throw this.failure(what, err, signal);
      }
    };
    const first = await attempt();
    if (first.res.status !== 401) return first.res;
    if (!this.auth.onUnauthorized(first.res.headers['www-authenticate'], scope, first.sentBasic)) return first.res;
    await first.res.body.dump();
    return (await attempt()).res;
  }

  /** Throws the RegistryError for a non-2xx status. */
  private checkStatus(res: UpstreamResponse, resource: Resource, what: string): void {
    if (res.status >= 200 && res.status < 300) return;
    throw statusError(this.name, what, resource, res.status, header(res, 'retry-after'));
  }

  private async readBody(res: UpstreamResponse, limit: number, what: string, signal?: AbortSignal): Promise<Buffer> {
    try {
      return await readLimited(res.body, limit, parseContentLength(header(res, 'content-length')));
    } catch (err) {
      if (err instanceof BodyTooLargeError) throw this.bad(what, `returned more than ${limit} bytes`);
      if (!signal?.aborted && isTransportFailure(err)) this.circuit.failure();
      throw this.failure(what, err, signal);
    }
  }

  private failure(what: string, err: unknown, signal?: AbortSignal): unknown {
    if (isAbort(err, signal)) return signal?.aborted ? (signal.reason ?? err) : err;
    return networkError(this.name, what, err);
  }

  private bad(what: string, why: string, cause?: unknown): RegistryError {
    return new RegistryError('UPSTREAM_ERROR', `upstream ${this.name}: ${what} ${why}`, {
      detail: { upstream: this.name },
      cause,
    });
  }
}

function refSuffix(ref: string): string {
  return parseDigest(ref) ? `@${ref}` : `:${ref}`;
}

/** The `rel="next"` target of a Link header, resolved against the current URL. */
export function nextLink(link: string | undefined, current: URL): URL | undefined {
  if (!link) return undefined;
  for (const part of link.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>(.*)$/.exec(part);
    if (m && /;\s*rel\s*=\s*"?next"?/i.test(m[2]!)) return new URL(m[1]!, current);
  }
  return undefined;
}
