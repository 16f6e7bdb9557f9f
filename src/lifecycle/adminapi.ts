import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CacheAdmin } from './admin.js';
import type { AdminGate } from './adminauth.js';

/**
 * The admin API on the debug listener (never on the public one), used by `regcache cache ... ` while the server
 * runs, since then only the server may change its cache:
 *   GET  /admin/cache?repo=NAME           → CacheListing
 *   POST /admin/cache/rm      {ref, dryRun}
 *   POST /admin/cache/prune   {olderThanMs, maxSizeBytes, dryRun}
 *   POST /admin/cache/verify  {dryRun}
 * Reading is open (as distribution's debug listener). Every state-changing request under /admin/ first passes the
 * AdminGate (adminauth.ts: a bearer token from regcache.admin.tokenfile, or a loopback-only listener; 401/403
 * otherwise), then must be `Content-Type: application/json` (415). Answers JSON; errors are {"error": "..."}.
 */
export const ADMIN_ROOT = '/admin/';
export const ADMIN_PREFIX = '/admin/cache';

const MAX_BODY = 64 * 1024;

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > MAX_BODY) throw new Error('request body too large');
    chunks.push(c as Buffer);
  }
  if (n === 0) return {};
  const v = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('expected a JSON object');
  return v as Record<string, unknown>;
}

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): true {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
  res.end(body);
  return true;
}

const optNumber = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined);

const isRead = (method: string | undefined): boolean => method === 'GET' || method === 'HEAD';

/**
 * Handles `/admin/...`; returns false for other paths. `admin` is undefined when another process owns the cache
 * (503 after the gate: a refused caller learns nothing).
 */
export async function handleAdmin(
  admin: CacheAdmin | undefined,
  gate: AdminGate,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<boolean> {
  const p = url.pathname;
  if (!p.startsWith(ADMIN_ROOT)) return false;
  if (!isRead(req.method)) {
    const denied = await gate.check(req);
    if (denied) {
      req.resume(); // the body is not read: let the connection be reused
      return sendJson(res, denied.status, { error: denied.error }, denied.headers);
    }
    // A browser cannot send this cross-origin without a CORS preflight, which is never granted.
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      req.resume();
      return sendJson(res, 415, { error: 'Content-Type must be application/json' });
    }
  }
  if (!admin) return sendJson(res, 503, { error: 'this process does not manage the cache: another regcache process holds its metadata lock' });
  if (p !== ADMIN_PREFIX && !p.startsWith(`${ADMIN_PREFIX}/`)) return sendJson(res, 404, { error: `no admin resource ${p}` });
  const op = p.slice(ADMIN_PREFIX.length);
  try {
    if (op === '' || op === '/') {
      if (req.method !== 'GET') return sendJson(res, 405, { error: 'use GET' });
      return sendJson(res, 200, admin.list(url.searchParams.get('repo') ?? undefined));
    }
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'use POST' });
    const body = await readJson(req);
    const dryRun = body.dryRun === true;
    switch (op) {
      case '/rm':
        if (typeof body.ref !== 'string' || !body.ref) return sendJson(res, 400, { error: 'ref is required' });
        return sendJson(res, 200, await admin.remove(body.ref, { dryRun }));
      case '/prune':
        return sendJson(res, 200, await admin.prune({ olderThanMs: optNumber(body.olderThanMs), maxSizeBytes: optNumber(body.maxSizeBytes), dryRun }));
      case '/verify':
        return sendJson(res, 200, await admin.verify({ dryRun }));
      default:
        return sendJson(res, 404, { error: `no admin operation ${op}` });
    }
  } catch (e) {
    if (!res.headersSent) sendJson(res, 400, { error: (e as Error).message });
    return true;
  }
}
