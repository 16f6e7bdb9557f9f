// Loopback HTTP reverse proxy in front of a target (e.g. the upstream registry) that records requests and
// injects faults. Bodies stream both ways; redirects pass through unchanged.
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export type Fault =
  | { kind: 'none' }
  | { kind: 'delay'; ms: number } // delay before forwarding
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string } // answer this instead
  | { kind: 'reset-after'; bytes: number } // headers + first N body bytes, then the connection is closed (FIN once flushed)
  | { kind: 'truncate'; bytes: number; keepLength: boolean } // N body bytes then end; keepLength: client sees a short body
  | { kind: 'close-before-headers' }
  | { kind: 'stall' } // accept, never answer
  | { kind: 'drip'; bytesPerTick: number; tickMs: number } // slow but complete body
  | { kind: 'corrupt' }; // flip bytes in the body, same length

export interface FaultRule {
  method?: string;
  path?: RegExp;
  fault: Fault;
  /** how many requests this rule applies to; default: unlimited */
  times?: number;
}

export interface RecordedRequest {
  method: string;
  /** path + query as received */
  path: string;
  /** status sent to the client; 0 if none was sent (close-before-headers, stall, upstream unreachable) */
  status: number;
  /** request headers as received from the client */
  headers: Record<string, string | string[] | undefined>;
  /** the fault applied to this request */
  fault: Fault['kind'];
}

export interface FaultProxy {
  url: string;
  host: string;
  port: number;
  /** every request seen, in order of arrival */
  requests: RecordedRequest[];
  count(filter?: { method?: string; path?: RegExp }): number;
  /** replaces rules; the first matching rule with times left applies */
  setRules(rules: FaultRule[]): void;
  clearRules(): void;
  /** clears rules and recorded requests */
  reset(): void;
  /** closes server + all open sockets */
  stop(): Promise<void>;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function endToEnd(headers: http.IncomingHttpHeaders, drop: string[] = []): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined && !HOP_BY_HOP.has(k) && !drop.includes(k)) out[k] = v;
  }
  return out;
}

const matches = (method: string, path: string, f: { method?: string; path?: RegExp }) => {
  if (f.method && f.method.toUpperCase() !== method.toUpperCase()) return false;
  if (f.path) {
    f.path.lastIndex = 0; // a /g regexp is stateful
    if (!f.path.test(path)) return false;
  }
  return true;
};

export async function startFaultProxy(targetUrl: string): Promise<FaultProxy> {
  const target = new URL(targetUrl);
  const transport = target.protocol === 'https:' ? https : http;
  const agent = new transport.Agent({ keepAlive: true });
  const requests: RecordedRequest[] = [];
  let rules: Array<FaultRule & { left: number }> = [];
  const sockets = new Set<Socket>();
  let stopped = false;

  const pickFault = (method: string, path: string): Fault => {
    const rule = rules.find((r) => r.left > 0 && matches(method, path, r));
    if (!rule) return { kind: 'none' };
    rule.left--;
    return rule.fault;
  };

  const server = http.createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const fault = pickFault(method, path);
    const record: RecordedRequest = { method, path, status: 0, headers: { ...req.headers }, fault: fault.kind };
    requests.push(record);
    const respond = (status: number, headers: http.OutgoingHttpHeaders) => {
      record.status = status;
      res.writeHead(status, headers);
    };
    void handle(req, res, fault, respond).catch(() => res.socket?.destroy());
  });

  async function handle(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    fault: Fault,
    respond: (status: number, headers: http.OutgoingHttpHeaders) => void,
  ): Promise<void> {
    switch (fault.kind) {
      case 'close-before-headers':
        req.socket.destroy();
        return;
      case 'stall':
        return; // the socket stays open until the client gives up or stop()
      case 'status': {
        req.resume();
        const body = fault.body ?? '';
        respond(fault.status, { 'content-length': Buffer.byteLength(body), ...fault.headers });
        res.end(body);
        return;
      }
      case 'delay':
        await sleep(fault.ms);
        if (res.destroyed || stopped) return;
        break;
    }

    const upstreamReq = transport.request({
      protocol: target.protocol,
      hostname: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: { ...endToEnd(req.headers), host: target.host },
      agent,
    });
    res.on('close', () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    upstreamReq.on('error', () => {
      if (!res.headersSent) {
        respond(502, { 'content-type': 'text/plain' });
        res.end('fault proxy: upstream unreachable\n');
      } else {
        res.socket?.destroy();
      }
    });
    req.pipe(upstreamReq);
    const upstreamRes = await new Promise<http.IncomingMessage | undefined>((resolve) => {
      upstreamReq.once('response', resolve);
      upstreamReq.once('error', () => resolve(undefined)); // answered by the 'error' handler above
    });
    if (!upstreamRes) return;
    const status = upstreamRes.statusCode ?? 502;
    const headers = endToEnd(upstreamRes.headers);
    const hasBody = req.method !== 'HEAD' && status !== 204 && status !== 304;

    if (fault.kind === 'truncate' && !fault.keepLength) delete headers['content-length'];
    respond(status, headers);
    if (!hasBody) {
      upstreamRes.resume();
      res.end();
      return;
    }

    switch (fault.kind) {
      case 'reset-after':
        await forwardPrefix(upstreamRes, res, fault.bytes, 'cut');
        return;
      case 'truncate':
        // keepLength: the connection must close, or the client would wait for the missing bytes
        await forwardPrefix(upstreamRes, res, fault.bytes, fault.keepLength ? 'cut' : 'end');
        return;
      case 'drip':
        await drip(upstreamRes, res, fault.bytesPerTick, fault.tickMs);
        return;
      case 'corrupt':
        await corrupt(upstreamRes, res);
        return;
      default:
        upstreamRes.pipe(res);
    }
  }

  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as { port: number }).port;

  let stopping: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    requests,
    count: (filter = {}) => requests.filter((r) => matches(r.method, r.path, filter)).length,
    setRules(next) {
      rules = next.map((r) => ({ ...r, left: r.times ?? Infinity }));
    },
    clearRules() {
      rules = [];
    },
    reset() {
      rules = [];
      requests.length = 0;
    },
    stop() {
      stopping ??= (async () => {
        stopped = true;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const s of sockets) s.destroy();
        agent.destroy();
        await closed;
      })();
      return stopping;
    },
  };
}

/** Writes res, honouring backpressure; false if the client went away. */
async function write(res: http.ServerResponse, chunk: Buffer): Promise<boolean> {
  if (res.destroyed) return false;
  if (res.write(chunk)) return true;
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}

/**
 * Forwards the first `limit` body bytes. 'cut': then close the connection (after flushing what was written);
 * 'end': then finish the response normally. A body shorter than limit is forwarded whole.
 */
async function forwardPrefix(
  upstream: http.IncomingMessage,
  res: http.ServerResponse,
  limit: number,
  then: 'cut' | 'end',
): Promise<void> {
  let sent = 0;
  let complete = true;
  if (limit > 0) {
    for await (const chunk of upstream as AsyncIterable<Buffer>) {
      const part = chunk.subarray(0, limit - sent);
      if (!(await write(res, part))) return;
      sent += part.length;
      if (sent >= limit) {
        complete = false;
        break; // leaving the loop destroys the upstream response
      }
    }
  } else {
    complete = false;
    upstream.destroy();
  }
  if (complete || then === 'end') {
    res.end();
    return;
  }
  if (sent === 0) res.flushHeaders();
  const socket = res.socket;
  if (!socket) return;
  // end() flushes everything queued (headers, corked writes) before the FIN; then drop the connection
  socket.end();
  socket.once('finish', () => socket.destroy());
}

async function drip(upstream: http.IncomingMessage, res: http.ServerResponse, perTick: number, tickMs: number) {
  for await (const chunk of upstream as AsyncIterable<Buffer>) {
    for (let off = 0; off < chunk.length; off += perTick) {
      if (!(await write(res, chunk.subarray(off, off + perTick)))) return;
      await sleep(tickMs); // the fault itself: pace the body
    }
  }
  res.end();
}

/** Flips every byte at an offset that is a multiple of 4096 (so at least the first byte). */
async function corrupt(upstream: http.IncomingMessage, res: http.ServerResponse) {
  let offset = 0;
  for await (const chunk of upstream as AsyncIterable<Buffer>) {
    const copy = Buffer.from(chunk);
    for (let i = (4096 - (offset % 4096)) % 4096; i < copy.length; i += 4096) copy[i] ^= 0xff;
    offset += chunk.length;
    if (!(await write(res, copy))) return;
  }
  res.end();
}
