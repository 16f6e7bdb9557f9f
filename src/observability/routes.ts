import type { IncomingMessage, ServerResponse } from 'node:http';
import { RegistryError } from '../errors.js';
import type { Metrics } from './metrics.js';

export interface HealthState {
  readonly healthy: boolean;
  /** Failing check name → error (empty while healthy). */
  status(): Record<string, string>;
  /** True once shutdown started: readiness fails so load balancers stop sending. */
  draining(): boolean;
  /**
   * Why this replica should get no traffic although it can serve (Redis unreachable: it would fetch from upstream
   * what other replicas are fetching); undefined when ready. Readiness only: /v2/ and liveness stay up.
   */
  notReady?(): string | undefined;
}

/** A route of the debug listener composed in by the server (the admin API); true when it answered. */
export type DebugRoute = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean>;

/** A whole response of the observability routes; `headers` may add headers or replace Cache-Control (default no-store). */
export function send(res: ServerResponse, status: number, body: string | Buffer, type = 'application/json', headers: Record<string, string> = {}): true {
  const buf = typeof body === 'string' ? Buffer.from(body) : body;
  // setHeader (not writeHead's object) keeps Content-Length readable for the access log.
  res.statusCode = status;
  res.setHeader('Cache-Control', 'no-store');
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader('Content-Type', type);
  res.setHeader('Content-Length', buf.length);
  res.end(buf);
  return true;
}

/**
 * Health endpoints, on the main and the debug listener:
 * - `/` and `/debug/health`: distribution's health check: 200 `{}`, or 503 `{"storagedriver_filesystem": "<error>"}`;
 * - `/healthz` (liveness): 200 while the process serves requests;
 * - `/readyz` (readiness): 503 when storage is unhealthy, when a configured Redis is unreachable, or while
 *   draining for shutdown.
 */
export function healthRoute(state: HealthState, req: IncomingMessage, res: ServerResponse, pathname: string): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  switch (pathname) {
    case '/':
    case '/debug/health': {
      const failing = state.status();
      return send(res, state.healthy ? 200 : 503, JSON.stringify(failing));
    }
    case '/healthz':
      return send(res, 200, 'ok\n', 'text/plain');
    case '/readyz': {
      if (state.draining()) return send(res, 503, 'draining\n', 'text/plain');
      if (!state.healthy) return send(res, 503, `unhealthy: ${Object.values(state.status()).join('; ')}\n`, 'text/plain');
      const why = state.notReady?.();
      if (why) return send(res, 503, `unhealthy: ${why}\n`, 'text/plain');
      return send(res, 200, 'ok\n', 'text/plain');
    }
  }
  return false;
}

/** Main listener: health endpoints, and `/v2/` answering 503 while storage is unhealthy (as distribution). */
export function mainRoutes(state: HealthState) {
  return (req: IncomingMessage, res: ServerResponse, pathname: string): boolean => {
    if (healthRoute(state, req, res, pathname)) return true;
    if ((pathname === '/v2/' || pathname === '/v2') && !state.healthy) {
      const err = new RegistryError('UNAVAILABLE', 'storage is unhealthy', { detail: state.status() });
      res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
      return send(res, err.status, JSON.stringify(err.toJSON()));
    }
    return false;
  };
}

/** The http.debug.addr listener: metrics, expvar, health, then the composed routes. */
export function debugHandler(opts: { state: HealthState; metrics: Metrics; prometheus?: { path: string }; routes: DebugRoute[] }) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      send(res, 400, '{"error":"bad URL"}');
      return;
    }
    const p = url.pathname;
    try {
      if (healthRoute(opts.state, req, res, p)) return;
      if (p === '/debug/vars' && req.method === 'GET') {
        await opts.metrics.refreshPeers();
        send(res, 200, JSON.stringify(opts.metrics.expvar(), null, 2));
        return;
      }
      if (opts.prometheus && p === opts.prometheus.path && req.method === 'GET') {
        send(res, 200, await opts.metrics.prometheus(), opts.metrics.contentType);
        return;
      }
      for (const route of opts.routes) if (await route(req, res, url)) return;
      send(res, 404, '{"error":"not found"}');
    } catch (e) {
      if (!res.headersSent) send(res, 500, JSON.stringify({ error: (e as Error).message }));
      else res.destroy();
    }
  };
}
