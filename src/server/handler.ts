import type { IncomingMessage, ServerResponse } from 'node:http';
import { RegistryError } from '../errors.js';
import type { RegistryApi } from '../registry/api.js';
import { recordOnClose, type AccessLogOptions, type RequestFacts } from './accesslog.js';
import { sendError, toRegistryError } from './errors.js';
import { writeApiResponse } from './respond.js';

export interface HandlerOptions extends Omit<AccessLogOptions, 'enabled'> {
  api: RegistryApi;
  /** http.headers from config, added to every response. */
  headers: Record<string, string[]>;
  accessLog: boolean;
  /** Upstream bound to this listener, if any. */
  listenerUpstream?: string;
  /** Optional authentication hook: throws RegistryError (401/429) to refuse. */
  authenticate?: (req: IncomingMessage) => Promise<void>;
  /** Extra non-API routes (health, ACME challenges); return true when handled. */
  extra?: (req: IncomingMessage, res: ServerResponse, pathname: string) => boolean | Promise<boolean>;
}

/** The registry API listener's request handler: access log, dispatch to the API, response writing, errors. */
export function createHandler(opts: HandlerOptions) {
  const { api, logger } = opts;
  const logOptions: AccessLogOptions = { ...opts, enabled: opts.accessLog };
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const isHead = method === 'HEAD';
    const facts: RequestFacts = { pathname: '/', search: '' };
    for (const [k, v] of Object.entries(opts.headers)) res.setHeader(k, v);
    recordOnClose(req, res, facts, logOptions);
    try {
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://localhost');
      } catch {
        throw new RegistryError('NAME_INVALID', 'invalid request URL');
      }
      facts.pathname = url.pathname;
      facts.search = url.search;
      if (opts.extra && (await opts.extra(req, res, url.pathname))) return;
      if (opts.authenticate && url.pathname.startsWith('/v2')) await opts.authenticate(req);
      const host = req.headers.host?.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
      const result = await api.handle({
        method,
        pathname: url.pathname,
        query: url.searchParams,
        range: req.headers.range,
        ifNoneMatch: req.headers['if-none-match'],
        ctx: { listenerUpstream: opts.listenerUpstream, host, ns: url.searchParams.get('ns') ?? undefined },
      });
      if (!result) throw new RegistryError('UNSUPPORTED', 'no such API endpoint', { status: 404 });
      facts.cache = result.cache;
      facts.upstream = result.upstream;
      await writeApiResponse(res, result, isHead, facts);
    } catch (e) {
      if (res.headersSent && res.destroyed) return; // the client went away mid-body: nothing to answer
      sendError(res, toRegistryError(e), isHead, logger);
    }
  };
}
