import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CacheAdmin } from './admin.js';
import type { AdminGate } from './adminauth.js';
import type { BundleContext } from './bundle.js';

/**
 * The admin API on the debug listener (never on the public one), used by `regcache cache ... ` while the server
 * runs, since then only the server may change its cache:
 *   GET  /admin/cache?repo=NAME           → CacheListing
 *   POST /admin/cache/rm      {ref, dryRun}
 *   POST /admin/cache/prune   {olderThanMs, maxSizeBytes, dryRun}
 *   POST /admin/cache/verify  {dryRun}
 *   POST /admin/cache/export  {images, platform}   → an OCI image layout tar (application/x-tar)
 *   POST /admin/cache/import?upstream=NAME         ← an OCI image layout tar (Content-Type: application/x-tar)
 * Reading is open (as distribution's debug listener). Every state-changing request under /admin/ first passes the
 * AdminGate (adminauth.ts: a bearer token from regcache.admin.tokenfile, or a loopback-only listener; 401/403
 * otherwise), then must be `Content-Type: application/json` (415; `application/x-tar` for import, which a browser
 * cannot send cross-origin without a preflight either). Answers JSON; errors are {"error": "..."}.
 */
export const ADMIN_ROOT = '/admin/';
export const ADMIN_PREFIX = '/admin/cache';
export const ADMIN_IMPORT = `${ADMIN_PREFIX}/import`;
export const TAR_TYPE = 'application/x-tar';

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
  bundles?: BundleContext,
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
    const type = p === ADMIN_IMPORT ? TAR_TYPE : 'application/json';
    if ((req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase() !== type) {
      req.resume();
      return sendJson(res, 415, { error: `Content-Type must be ${type}` });
    }
  }
  if (!admin) return sendJson(res, 503, { error: 'this process does not manage the cache: another regcache process holds its metadata lock' });
  if (p !== ADMIN_PREFIX && !p.startsWith(`${ADMIN_PREFIX}/`)) return sendJson(res, 404, { error: `no admin resource ${p}` });
  const op = p.slice(ADMIN_PREFIX.length);
  // Bundles (tar) are loaded by the first export or import, not by every server at start.
  const bundleOps = () => import('./bundle.js');
  try {
    if (op === '' || op === '/') {
      if (req.method !== 'GET') return sendJson(res, 405, { error: 'use GET' });
      return sendJson(res, 200, admin.list(url.searchParams.get('repo') ?? undefined));
    }
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'use POST' });
    if (op === '/import') {
      if (!bundles) return sendJson(res, 503, { error: 'this process does not manage the cache' });
      const upstream = url.searchParams.get('upstream') ?? undefined;
      const { importBundle } = await bundleOps();
      return sendJson(res, 200, await importBundle(bundles, req, { upstream }));
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
      case '/export': {
        if (!bundles) return sendJson(res, 503, { error: 'this process does not manage the cache' });
        const images = Array.isArray(body.images) && body.images.every((i) => typeof i === 'string') ? (body.images as string[]) : undefined;
        if (!images) return sendJson(res, 400, { error: 'images (a list of image references) is required' });
        const platform = typeof body.platform === 'string' && body.platform ? body.platform : undefined;
        const { planExport, writeBundle } = await bundleOps();
        const plan = await planExport(bundles, images, { platform });
        res.writeHead(200, { 'Content-Type': TAR_TYPE, 'X-Regcache-Export-Bytes': String(plan.bytes) });
        await writeBundle(bundles, plan, res).catch((e: unknown) => {
          bundles.logger?.warn({ err: (e as Error).message }, 'cache export: stream ended early');
          res.destroy();
        });
        return true;
      }
      default:
        return sendJson(res, 404, { error: `no admin operation ${op}` });
    }
  } catch (e) {
    if (!res.headersSent) {
      // A bad bundle or request is the caller's (400); anything else is ours, said without a stack trace.
      const status = op !== '/import' || !(e instanceof Error) || e instanceof (await bundleOps()).BundleError ? 400 : 500;
      if (op === '/import') req.resume();
      sendJson(res, status, { error: (e as Error).message });
    }
    return true;
  }
}
