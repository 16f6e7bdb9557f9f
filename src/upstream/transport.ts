import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { rootCertificates } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { RegistryError } from '../errors.js';
import type { UpstreamTimeouts } from '../config/types.js';
import type { BreakerPermit, CircuitBreaker } from './breaker.js';
import { Agent } from './undici.js';

/**
 * HTTP for one upstream: a keep-alive undici Agent (HTTP/1.1, `connections` sockets per origin,
 * connect/headers/idle timeouts, private CA), retries with backoff for idempotent requests that
 * have not produced a body yet, and manual redirects that never carry Authorization to another origin.
 */
export interface TransportOptions {
  /** Upstream name for messages. */
  name: string;
  timeouts: UpstreamTimeouts;
  connections: number;
  /** PEM bundle file trusted in addition to the system CAs. */
  ca?: string;
  insecureSkipVerify: boolean;
  /** Delays before attempts 2, 3, ... (default 100 ms, 400 ms). */
  retryDelaysMs?: number[];
  /** The upstream's circuit breaker: consulted before every request, told every outcome. */
  breaker?: CircuitBreaker;
}

export interface SendRequest {
  method: 'GET' | 'HEAD';
  url: URL;
  /** Lower-case names. */
  headers: Record<string, string>;
  signal?: AbortSignal;
}

export interface UpstreamResponse {
  status: number;
  /** Final URL (after redirects). */
  url: URL;
  headers: IncomingHttpHeaders;
  body: Dispatcher.ResponseData['body'];
}

const RETRY_STATUS = new Set([502, 503, 504]);
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);
const RETRY_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);
/** Answers that mean the upstream (or its gateway) is down: they count against the circuit breaker. */
const OUTAGE_STATUS = RETRY_STATUS;
/** Body stream errors that count against the circuit breaker: the connection broke or went silent. */
const OUTAGE_CODES = new Set([
  ...RETRY_CODES,
  'ETIMEDOUT',
  'ENOTFOUND',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);
const MAX_REDIRECTS = 5;
const USER_AGENT = 'regcache/0.1';

export function header(res: { headers: IncomingHttpHeaders }, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export class Transport {
  private readonly agent: Agent;
  private readonly delays: number[];

  constructor(
    private readonly opts: TransportOptions,
    private readonly logger: Logger,
  ) {
    this.delays = opts.retryDelaysMs ?? [100, 400];
    const ca = opts.ca ? [...rootCertificates, readCa(opts.name, opts.ca)] : undefined;
    this.agent = new Agent({
      connections: opts.connections,
      pipelining: 1,
      allowH2: false,
      keepAliveTimeout: 30_000,
      headersTimeout: opts.timeouts.headersMs,
      bodyTimeout: opts.timeouts.idleMs,
      connect: {
        timeout: opts.timeouts.connectMs,
        ...(ca ? { ca } : {}),
        rejectUnauthorized: !opts.insecureSkipVerify,
      },
    });
  }

  /**
   * Sends with retries and follows redirects (max 5). Rejects with the low-level error on network failure, and
   * with UNAVAILABLE at once, without any network traffic, while the circuit breaker is open.
   */
  async send(req: SendRequest): Promise<UpstreamResponse> {
    const breaker = this.opts.breaker;
    if (!breaker) return this.sendFollowing(req);
    const permit = breaker.acquire();
    if (!permit) throw this.circuitOpen();
    let res: UpstreamResponse;
    try {
      res = await this.sendFollowing(req, permit);
    } catch (err) {
      if (req.signal?.aborted) permit.release();
      else if (err instanceof RegistryError) permit.success(); // about the answer (a redirect loop): it answered
      else permit.failure(); // below HTTP: connect, DNS, TLS, timeouts, resets
      throw err;
    }
    if (OUTAGE_STATUS.has(res.status)) permit.failure();
    else permit.success();
    return res;
  }

  /** The 503 while the breaker refuses requests; Retry-After: when the next probe may go out. */
  private circuitOpen(): RegistryError {
    const s = this.opts.breaker!.status();
    const wait = Math.max(1, Math.ceil(s.retryInMs / 1000));
    return new RegistryError(
      'UNAVAILABLE',
      `upstream ${this.opts.name}: marked down after repeated failures (circuit breaker ${s.state}); next attempt in ${wait}s`,
      { detail: { upstream: this.opts.name, breaker: s.state }, headers: { 'Retry-After': String(wait) } },
    );
  }

  private async sendFollowing(req: SendRequest, permit?: BreakerPermit): Promise<UpstreamResponse> {
    let { url, method } = req;
    const headers = { ...req.headers };
    for (let hop = 0; ; hop++) {
      const res = await this.sendWithRetry({ ...req, url, method, headers }, permit);
      const location = header(res, 'location');
      if (!REDIRECT_STATUS.has(res.status) || !location) return res;
      await res.body.dump();
      const next = new URL(location, url);
      if (hop >= MAX_REDIRECTS || (next.protocol !== 'http:' && next.protocol !== 'https:')) {
        throw new RegistryError(
          'UPSTREAM_ERROR',
          `upstream ${this.opts.name}: ${hop >= MAX_REDIRECTS ? 'too many redirects' : 'redirect to unsupported scheme'}`,
          { detail: { upstream: this.opts.name } },
        );
      }
      // Credentials belong to the upstream's origin only (CDN / S3 redirects use signed URLs).
      if (next.origin !== url.origin) delete headers.authorization;
      if (res.status === 303 && method !== 'HEAD') method = 'GET';
      url = next;
    }
  }

  private async sendWithRetry(req: SendRequest, permit?: BreakerPermit): Promise<UpstreamResponse> {
    for (let attempt = 0; ; attempt++) {
      // Once the breaker has opened (other requests failed meanwhile), retrying only adds load: the probe
      // alone keeps its retries.
      const canRetry = attempt < this.delays.length && (permit === undefined || permit.probe || this.opts.breaker?.state === 'closed');
      try {
        const res = await this.once(req);
        if (!RETRY_STATUS.has(res.status) || !canRetry) return res;
        await res.body.dump();
        this.logger.debug({ host: req.url.host, path: req.url.pathname, status: res.status, attempt }, 'upstream retry');
      } catch (err) {
        if (!canRetry || req.signal?.aborted || !isRetryable(err)) throw err;
        this.logger.debug({ host: req.url.host, path: req.url.pathname, code: errCode(err), attempt }, 'upstream retry');
      }
      await sleep(this.delays[attempt], undefined, { signal: req.signal });
    }
  }

  private async once(req: SendRequest): Promise<UpstreamResponse> {
    const started = Date.now();
    const res = await this.agent.request({
      origin: req.url.origin,
      path: req.url.pathname + req.url.search,
      method: req.method,
      headers: { 'user-agent': USER_AGENT, ...req.headers },
      signal: req.signal,
      // undici closes the connection after a HEAD by default; registries answer HEAD properly, and tag
      // revalidation is mostly HEADs, so keep the connection.
      reset: false,
      headersTimeout: this.opts.timeouts.headersMs,
      bodyTimeout: this.opts.timeouts.idleMs,
    });
    this.logger.debug(
      { method: req.method, host: req.url.host, path: req.url.pathname, status: res.statusCode, ms: Date.now() - started },
      'upstream response',
    );
    return { status: res.statusCode, url: req.url, headers: res.headers, body: res.body };
  }

  async close(): Promise<void> {
    await this.agent.destroy();
  }
}

function readCa(name: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`upstream ${name}: cannot read ca file ${file}: ${(err as Error).message}`, { cause: err });
  }
}

function errCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A body stream error that means the connection to the upstream broke (not one its reader caused). */
export function isTransportFailure(err: unknown): boolean {
  if (err instanceof RegistryError) return false;
  const code = errCode(err) ?? errCode((err as { cause?: unknown } | null)?.cause);
  return code !== undefined && OUTAGE_CODES.has(code);
}

function isRetryable(err: unknown): boolean {
  const code = errCode(err) ?? errCode((err as { cause?: unknown } | null)?.cause);
  return code !== undefined && RETRY_CODES.has(code);
}
