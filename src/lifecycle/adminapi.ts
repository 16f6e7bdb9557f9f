import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CacheAdmin } from './admin.js';

/**
 * The admin API on the debug listener (never on the public one), used by `regcache cache ... ` while the server
 * runs, since then only the server may change its cache:
 *   GET  /admin/cache?repo=NAME           → CacheListing
 *   POST /admin/cache/rm      {ref, dryRun}
 *   POST /admin/cache/prune   {olderThanMs, maxSizeBytes, dryRun}
 *   POST /admin/cache/verify  {dryRun}
 * POST bodies must be `Content-Type: application/json`. Answers JSON; errors are {"error": "..."} with 4xx.
 */
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

export function sendJson(res: ServerResponse, status: number, value: unknown): true {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
  res.end(body);
  return true;
}

const optNumber = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined);

/** Handles `/admin/cache...`; returns false for other paths. */
export async function handleAdmin(admin: CacheAdmin, req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
  const p = url.pathname;
  if (p !== ADMIN_PREFIX && !p.startsWith(`${ADMIN_PREFIX}/`)) return false;
  const op = p.slice(ADMIN_PREFIX.length);
  try {
    if (op === '' || op === '/') {
      if (req.method !== 'GET') return sendJson(res, 405, { error: 'use GET' });
      return sendJson(res, 200, admin.list(url.searchParams.get('repo') ?? undefined));
    }
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'use POST' });
    // A browser cannot send this cross-origin without a CORS preflight, which is never granted.
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      return sendJson(res, 415, { error: 'Content-Type must be application/json' });
    }
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
