// A stand-in upstream: a small node:http (or https) server on loopback that answers like a registry would,
// for what a real distribution registry does not do (CDN redirects, rate limits, hostile answers, stalls...).
import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

export interface StandInRequest {
  method: string;
  /** path + query as received */
  path: string;
  headers: IncomingHttpHeaders;
  authorization?: string;
}

export interface StandIn {
  /** http(s)://host:port */
  url: string;
  /** host:port */
  host: string;
  port: number;
  /** every request seen, in order of arrival */
  requests: StandInRequest[];
  /** connections accepted so far (TLS: completed handshakes) */
  connections: number;
  /** drops open connections and closes the server */
  close(): Promise<void>;
}

/** Starts a stand-in answering every request with handler, on a free port of `host` (default 127.0.0.1). */
export async function startStandIn(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  opts: { host?: string; tls?: { key: string; cert: string } } = {},
): Promise<StandIn> {
  const host = opts.host ?? '127.0.0.1';
  const { tls } = opts;
  const s: StandIn = { url: '', host: '', port: 0, requests: [], connections: 0, close: async () => {} };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    s.requests.push({ method: req.method!, path: req.url!, headers: req.headers, authorization: req.headers.authorization });
    handler(req, res);
  };
  const server: Server = tls ? createHttpsServer(tls, onRequest) : createHttpServer(onRequest);
  server.on(tls ? 'secureConnection' : 'connection', () => s.connections++);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  s.port = (server.address() as AddressInfo).port;
  s.host = `${host}:${s.port}`;
  s.url = `${tls ? 'https' : 'http'}://${s.host}`;
  s.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return s;
}
