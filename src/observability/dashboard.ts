import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { History } from './history.js';
import type { Metrics } from './metrics.js';
import { send } from './routes.js';

/**
 * The web dashboard: one server-rendered HTML page, a small script of our own (assets/dashboard/app.js, no build step)
 * and uPlot for the charts, all served from this process — nothing from a CDN (mirrors run air-gapped). The page
 * polls JSON that is exactly what /debug/vars and the admin API's cache listing answer, so every number it shows
 * is also in the machine interfaces.
 *
 * Routes under `base` (e.g. /dashboard):
 *   GET  base, base/          the page
 *   GET  base/static/<file>   app.js, app.css, uplot.js, uplot.css
 *   GET  base/api/vars        = /debug/vars
 *   GET  base/api/history     counter samples (?since=<ms>) for the charts (history.ts)
 *   GET  base/api/cache       = GET /admin/cache
 *   POST base/api/rm          = POST /admin/cache/rm, through the admin gate (docs/security.md)
 */
export interface DashboardOptions {
  base: string;
  metrics: Metrics;
  history: History;
  /** The admin API (lifecycle): answers /admin/cache and /admin/cache/rm; false when it did not answer. */
  admin(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean>;
  /** What the page says about removal before anyone tries (e.g. "needs the admin token"). */
  removal: 'open' | 'token' | 'disabled';
  price: { pricePerGB: number; currency: string };
}

const ASSET_DIR = new URL('../../assets/dashboard/', import.meta.url);
const require = createRequire(import.meta.url);

const STATIC: Record<string, { file: () => string; type: string }> = {
  'app.js': { file: () => new URL('app.js', ASSET_DIR).pathname, type: 'text/javascript; charset=utf-8' },
  'app.css': { file: () => new URL('app.css', ASSET_DIR).pathname, type: 'text/css; charset=utf-8' },
  'uplot.js': { file: () => require.resolve('uplot/dist/uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  'uplot.css': { file: () => require.resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

const SECURITY_HEADERS = {
  // Only our own files: no inline script, nothing from elsewhere, not framed by other sites.
  'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

const reply = (res: ServerResponse, status: number, body: string | Buffer, type: string, cache = 'no-store'): true =>
  send(res, status, body, type, { ...SECURITY_HEADERS, 'Cache-Control': cache });

const json = (res: ServerResponse, status: number, v: unknown): true => reply(res, status, JSON.stringify(v), 'application/json');

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function dashboardRoute(opts: DashboardOptions) {
  const base = opts.base === '/' ? '' : opts.base;
  const files = new Map<string, Buffer>();
  const asset = async (name: string): Promise<Buffer> => {
    let b = files.get(name);
    if (!b) files.set(name, (b = await readFile(STATIC[name]!.file())));
    return b;
  };
  return async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> => {
    const p = url.pathname;
    if (p !== base && !p.startsWith(`${base}/`)) return false;
    const rest = p.slice(base.length);
    const read = req.method === 'GET' || req.method === 'HEAD';
    if (rest === '' || rest === '/') {
      if (!read) return json(res, 405, { error: 'use GET' });
      return reply(res, 200, page(base, opts), 'text/html; charset=utf-8');
    }
    if (rest.startsWith('/static/')) {
      const name = rest.slice('/static/'.length);
      if (!read || !Object.hasOwn(STATIC, name)) return json(res, 404, { error: 'not found' });
      return reply(res, 200, await asset(name), STATIC[name]!.type, 'public, max-age=300');
    }
    switch (rest) {
      case '/api/vars':
        if (!read) return json(res, 405, { error: 'use GET' });
        return json(res, 200, opts.metrics.expvar());
      case '/api/history': {
        if (!read) return json(res, 405, { error: 'use GET' });
        const since = Number(url.searchParams.get('since') ?? 0);
        return json(res, 200, opts.history.since(Number.isFinite(since) ? since : 0));
      }
      case '/api/cache':
        if (!read) return json(res, 405, { error: 'use GET' });
        if (await opts.admin(req, res, new URL(`/admin/cache${url.search}`, url))) return true;
        return json(res, 503, { error: 'the cache listing is not available' });
      case '/api/rm':
        if (req.method !== 'POST') return json(res, 405, { error: 'use POST' });
        if (opts.removal === 'disabled') {
          req.resume();
          return json(res, 403, {
            error: 'removal from this page is disabled: on the main listener it needs regcache.admin.tokenfile (docs/security.md)',
          });
        }
        if (await opts.admin(req, res, new URL('/admin/cache/rm', url))) return true;
        return json(res, 503, { error: 'the admin API is not available' });
    }
    return json(res, 404, { error: 'not found' });
  };
}

function page(base: string, opts: DashboardOptions): string {
  const price = `${opts.price.pricePerGB} ${opts.price.currency}`;
  const removal = { open: 'Removal is allowed from this page.', token: 'Removal needs the admin token (regcache.admin.tokenfile).', disabled: 'Removal is disabled on this listener.' }[opts.removal];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>regcache dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${esc(base)}/static/uplot.css">
<link rel="stylesheet" href="${esc(base)}/static/app.css">
</head>
<body data-base="${esc(base)}" data-removal="${opts.removal}" data-price="${opts.price.pricePerGB}" data-currency="${esc(opts.price.currency)}">
<header>
  <h1>regcache</h1>
  <p class="status"><span id="health" role="status">loading…</span> · updated <time id="updated">never</time></p>
</header>
<main>
<section aria-labelledby="h-overview">
  <h2 id="h-overview">Overview</h2>
  <div class="cards">
    <div class="card"><h3>Cache size</h3><p class="big" id="cache-size">–</p>
      <p class="sub"><span id="cache-cap">no size cap</span></p>
      <div class="meter" id="cache-meter" role="meter" aria-label="cache size against the cap" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0"><div class="fill" id="cache-fill"></div><div class="mark" id="cache-watermark" title="eviction low-water mark"></div></div>
      <p class="sub"><span id="cache-blobs">–</span> blobs</p></div>
    <div class="card"><h3>Hit ratio</h3><p class="big" id="hit-ratio">–</p><p class="sub"><span id="req-hit">0</span> hits · <span id="req-miss">0</span> misses · <span id="req-coalesced">0</span> coalesced · <span id="req-stale">0</span> stale · <span id="req-revalidated">0</span> revalidated</p></div>
    <div class="card"><h3>Bytes saved</h3><p class="big" id="bytes-saved">–</p><p class="sub">served from cache; <span id="bytes-upstream">–</span> fetched upstream</p></div>
    <div class="card"><h3>Money saved</h3><p class="big" id="money-saved">–</p><p class="sub">at <span id="egress-price">${esc(price)}</span> per GB of egress (regcache.dashboard.egressprice)</p></div>
    <div class="card"><h3>Upstream pulls avoided</h3><p class="big" id="pulls-saved">–</p><p class="sub">manifest GETs answered from cache</p></div>
    <div class="card"><h3>Rate limit remaining</h3><p class="big" id="ratelimit">–</p><p class="sub" id="ratelimit-detail">from the upstream's RateLimit headers</p></div>
  </div>
  <div class="charts">
    <figure><figcaption>Hit ratio</figcaption><div id="chart-ratio" class="chart"></div></figure>
    <figure><figcaption>Bytes per second: from cache vs fetched upstream</figcaption><div id="chart-bytes" class="chart"></div></figure>
    <figure><figcaption>Requests per second by result</figcaption><div id="chart-rps" class="chart"></div></figure>
  </div>
</section>
<section aria-labelledby="h-downloads">
  <h2 id="h-downloads">Downloads in flight</h2>
  <p id="downloads-empty">None right now.</p>
  <ul id="downloads" class="downloads"></ul>
</section>
<section aria-labelledby="h-upstreams">
  <h2 id="h-upstreams">Upstreams</h2>
  <div class="scroll"><table id="upstreams"><thead><tr><th scope="col">Upstream</th><th scope="col">State</th><th scope="col">Latency</th><th scope="col">Requests</th><th scope="col">Errors</th><th scope="col">Last success</th><th scope="col">Rate limit</th></tr></thead><tbody></tbody></table></div>
</section>
<section aria-labelledby="h-repos">
  <h2 id="h-repos">Cached repositories</h2>
  <p class="sub">${esc(removal)}</p>
  <label for="repo-filter">Filter repositories</label> <input id="repo-filter" type="search" placeholder="e.g. library/alpine">
  <div class="scroll"><table id="repos"><thead><tr><th scope="col">Repository</th><th scope="col">Tags</th><th scope="col">Images</th><th scope="col">Size</th><th scope="col">Blobs</th><th scope="col">Last access</th><th scope="col"><span class="vh">Actions</span></th></tr></thead><tbody></tbody></table></div>
</section>
<section aria-labelledby="h-evictions">
  <h2 id="h-evictions">Recent evictions</h2>
  <p id="evictions-empty">None since start.</p>
  <div class="scroll"><table id="evictions"><thead><tr><th scope="col">When</th><th scope="col">Why</th><th scope="col">Blobs</th><th scope="col">Bytes</th></tr></thead><tbody></tbody></table></div>
</section>
</main>
<dialog id="confirm" aria-labelledby="confirm-title">
  <form method="dialog" id="confirm-form">
    <h2 id="confirm-title">Remove from the cache?</h2>
    <p id="confirm-text"></p>
    <p><label for="admin-token">Admin token</label> <input id="admin-token" type="password" autocomplete="off"></p>
    <p class="error" id="confirm-error" role="alert"></p>
    <p class="buttons"><button value="cancel" type="submit" id="confirm-cancel" formnovalidate>Cancel</button> <button value="remove" type="submit" id="confirm-remove" class="danger">Remove</button></p>
  </form>
</dialog>
<script src="${esc(base)}/static/uplot.js"></script>
<script src="${esc(base)}/static/app.js"></script>
</body>
</html>
`;
}
