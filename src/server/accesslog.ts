import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { ResponseInfo } from '../observability/metrics.js';


/** Per-request facts the dispatcher fills in while it handles the request. */
export interface RequestFacts {
  pathname: string;
  search: string;
  cache?: string;
  upstream?: string;
  /** Body bytes of this response, when counted (otherwise its Content-Length). */
  sent?: number;
}

export interface AccessLogOptions {
  logger: Logger;
  enabled: boolean;
  /** Called once per response (metrics). */
  onResponse?: (info: ResponseInfo) => void;
  /** The client address for the log (honours X-Forwarded-For per regcache.trustproxy); default: the peer. */
  clientAddress?: (req: IncomingMessage) => string | undefined;
}

function routeLabel(pathname: string): string {
  if (pathname === '/v2/' || pathname === '/v2') return 'base';
  const m = /\/(manifests|blobs|tags|referrers|_catalog)(?:\/|$)/.exec(pathname);
  return m ? m[1]! : 'other';
}

/** Reports the response to metrics and the access log when it closes, finished or aborted. */
export function recordOnClose(req: IncomingMessage, res: ServerResponse, facts: RequestFacts, opts: AccessLogOptions): void {
  const started = process.hrtime.bigint();
  const method = req.method ?? 'GET';
  res.on('close', () => {
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const bytes =
      facts.sent ?? (method === 'HEAD' || res.statusCode === 304 || !res.headersSent ? 0 : Number(res.getHeader('content-length') ?? 0));
    opts.onResponse?.({ method, route: routeLabel(facts.pathname), status: res.statusCode, ms, cache: facts.cache, bytes, upstream: facts.upstream });
    if (!opts.enabled) return;
    opts.logger.info(
      {
        method,
        path: facts.pathname,
        query: facts.search || undefined,
        status: res.statusCode,
        bytes,
        ms: Math.round(ms * 10) / 10,
        cache: facts.cache,
        upstream: facts.upstream,
        remote: opts.clientAddress ? opts.clientAddress(req) : req.socket.remoteAddress,
        ua: req.headers['user-agent'],
        aborted: !res.writableFinished || undefined,
      },
      'request',
    );
  });
}
