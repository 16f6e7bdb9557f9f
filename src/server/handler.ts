import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FileRangeStream } from '../storage/filerange.js';
import { sendFileRange } from './sendfile.js';
import type { Logger } from 'pino';
import { RegistryError } from '../errors.js';
import type { ApiResponse, RegistryApi } from '../registry/api.js';
import { sendError, toRegistryError } from './errors.js';

export interface HandlerOptions {
  api: RegistryApi;
  logger: Logger;
  /** http.headers from config, added to every response. */
  headers: Record<string, string[]>;
  accessLog: boolean;
  /** Upstream bound to this listener, if any. */
  listenerUpstream?: string;
  /** Optional authentication hook: throws RegistryError (401/429) to refuse. */
  authenticate?: (req: IncomingMessage) => Promise<void>;
  /** Extra non-API routes (health, ACME challenges); return true when handled. */
  extra?: (req: IncomingMessage, res: ServerResponse, pathname: string) => boolean | Promise<boolean>;
  /** Called once per response; bytes = body bytes of this response. */
  onResponse?: (info: { method: string; route: string; status: number; ms: number; cache?: string; bytes: number; upstream?: string }) => void;
  /** The client address for the access log (honours X-Forwarded-For per regcache.trustproxy); default: the peer. */
  clientAddress?: (req: IncomingMessage) => string | undefined;
}

function routeLabel(pathname: string): string {
  if (pathname === '/v2/' || pathname === '/v2') return 'base';
  const m = /\/(manifests|blobs|tags|referrers|_catalog)(?:\/|$)/.exec(pathname);
  return m ? m[1]! : 'other';
}

export function createHandler(opts: HandlerOptions) {
  const { api, logger } = opts;
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = process.hrtime.bigint();
    const method = req.method ?? 'GET';
    const isHead = method === 'HEAD';
    let pathname = '/';
    let search = '';
    let result: ApiResponse | undefined;
    /** Body bytes of this response (error and extra-route responses: their Content-Length). */
    let sent: number | undefined;
    for (const [k, v] of Object.entries(opts.headers)) res.setHeader(k, v);
    res.on('close', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const bytes =
        sent ?? (isHead || res.statusCode === 304 || !res.headersSent ? 0 : Number(res.getHeader('content-length') ?? 0));
      const upstream = result?.upstream;
      opts.onResponse?.({ method, route: routeLabel(pathname), status: res.statusCode, ms, cache: result?.cache, bytes, upstream });
      if (opts.accessLog) {
        logger.info(
          {
            method,
            path: pathname,
            query: search || undefined,
            status: res.statusCode,
            bytes,
            ms: Math.round(ms * 10) / 10,
            cache: result?.cache,
            upstream: result?.upstream,
            remote: opts.clientAddress ? opts.clientAddress(req) : req.socket.remoteAddress,
            ua: req.headers['user-agent'],
            aborted: !res.writableFinished || undefined,
          },
          'request',
        );
      }
    });
    try {
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://localhost');
      } catch {
        throw new RegistryError('NAME_INVALID', 'invalid request URL');
      }
      pathname = url.pathname;
      search = url.search;
      if (opts.extra && (await opts.extra(req, res, pathname))) return;
      if (opts.authenticate && pathname.startsWith('/v2')) await opts.authenticate(req);
      const hostHeader = req.headers.host?.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
      result = await api.handle({
        method,
        pathname,
        query: url.searchParams,
        range: req.headers.range,
        ifNoneMatch: req.headers['if-none-match'],
        ctx: { listenerUpstream: opts.listenerUpstream, host: hostHeader, ns: url.searchParams.get('ns') ?? undefined },
      });
      if (!result) throw new RegistryError('UNSUPPORTED', 'no such API endpoint', { status: 404 });
      const sendBody = !isHead && result.status !== 304 && result.body !== undefined;
      if (!sendBody || Buffer.isBuffer(result.body)) {
        res.writeHead(result.status, result.headers);
        sent = sendBody ? (result.body as Buffer).length : 0;
        res.end(sendBody ? result.body : undefined);
        return;
      }
      // Open the body before the status goes out, so that a failure to open is still a clean error response.
      const stream = await (result.body as () => Promise<Readable> | Readable)();
      sent = 0;
      res.writeHead(result.status, result.headers);
      if (stream instanceof FileRangeStream) {
        try {
          sent = await sendFileRange(res, stream.fd, stream.start, stream.end);
        } finally {
          stream.destroy();
        }
        return;
      }
      stream.on('data', (chunk: Buffer) => (sent! += chunk.length));
      await pipeline(stream, res);
    } catch (e) {
      if (res.headersSent && res.destroyed) return; // the client went away mid-body: nothing to answer
      sendError(res, toRegistryError(e), isHead, logger);
    }
  };
}
