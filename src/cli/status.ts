import { Agent, fetch } from 'undici';
import type { CacheListing } from '../lifecycle/admin.js';
import { AdminClient } from '../lifecycle/adminclient.js';
import { ago, formatBytes, withCache } from './cache.js';

/** The parts of /debug/vars the summary reads (see src/observability/metrics.ts expvar()). */
interface Vars {
  regcache: {
    cache: { bytes: number; blobs: number; maxBytes: number | null; lowWatermark: number | null };
    requests: Record<'hit' | 'miss' | 'coalesced' | 'revalidated' | 'stale', number>;
    servedBytes: { cache: number; upstream: number };
    pullsSaved: number;
    savings: { bytes: number; pricePerGB: number | null; currency: string | null; amount: number | null };
    storageHealthy: boolean;
    evictions: { blobs: number; bytes: number; recent: Array<{ at: number; reason: string; blobs: number; bytes: number }> };
    downloads: Array<{ digest: string; upstream: string; repo: string; size: number | null; bytes: number; clients: number; startedAt: number }>;
    upstreams: Record<
      string,
      {
        rateLimit: { limit?: number; remaining?: number } | null;
        breaker: { state: string } | null;
        requests: { requests: number; errors: number; latencyMs: number | null; lastSuccess: number | null; lastError: number | null } | null;
      }
    >;
  };
}

export interface StatusReport {
  source: { server?: string; storage?: string };
  listing: CacheListing;
  vars?: Vars['regcache'];
}

const out = (s: string): void => void process.stdout.write(s + '\n');

async function readVars(baseUrl: string): Promise<Vars> {
  const res = await fetch(`${baseUrl}/debug/vars`, { dispatcher: new Agent({ headersTimeout: 10_000, bodyTimeout: 10_000 }) });
  if (!res.ok) throw new Error(`${baseUrl}/debug/vars: HTTP ${res.status}`);
  return (await res.json()) as Vars;
}

function upstreamState(u: Vars['regcache']['upstreams'][string]): string {
  if (u.breaker?.state === 'open') return 'breaker open';
  if (u.breaker?.state === 'half-open') return 'probing';
  const q = u.requests;
  if (q?.lastError && (!q.lastSuccess || q.lastError > q.lastSuccess)) return 'down';
  return 'up';
}

/**
 * `regcache status`: a one-screen summary — of a running server through its debug listener (/debug/vars and the
 * admin API's cache listing), or of a stopped cache straight from its storage.
 */
export async function runStatus(opts: { config?: string; url?: string; json: boolean }): Promise<void> {
  const report = await withCache({ config: opts.config, admin: opts.url }, async (ops, config) => {
    const listing = await ops.list();
    if (ops instanceof AdminClient) {
      const vars = await readVars(ops.baseUrl);
      return { source: { server: ops.baseUrl }, listing, vars: vars.regcache } satisfies StatusReport;
    }
    const where = config.storage.driver === 'filesystem' ? config.storage.rootdirectory : config.storage.driver;
    return { source: { storage: String(where) }, listing } satisfies StatusReport;
  });
  if (opts.json) return out(JSON.stringify(report, null, 2));
  printStatus(report);
}

function printStatus({ source, listing, vars }: StatusReport): void {
  const row = (k: string, v: string): void => out(`${k.padEnd(14)}${v}`);
  if (vars) row('server', `${source.server} (running), storage ${vars.storageHealthy ? 'healthy' : 'UNHEALTHY'}`);
  else row('server', `not running; read from storage ${source.storage}`);
  const max = listing.maxSizeBytes;
  const cap = max ? ` of ${formatBytes(max)} (${((listing.totalBytes / max) * 100).toFixed(1)}%)${vars?.cache.lowWatermark != null ? `, evicts down to ${Math.round(vars.cache.lowWatermark * 100)}%` : ''}` : ', no size cap';
  row('cache', `${formatBytes(listing.totalBytes)}${cap}, ${listing.blobs} blobs, ${listing.repos.length} repositories`);
  if (vars) {
    const r = vars.requests;
    const fromCache = r.hit + r.revalidated + r.stale;
    const all = fromCache + r.miss + r.coalesced;
    row('hit ratio', `${all ? ((fromCache / all) * 100).toFixed(1) + '%' : '-'} (${r.hit} hits, ${r.miss} misses, ${r.coalesced} coalesced, ${r.stale} stale, ${r.revalidated} revalidated)`);
    const s = vars.savings;
    const money = s.amount !== null ? `, ${s.amount.toFixed(2)} ${s.currency} at ${s.pricePerGB} ${s.currency}/GB egress` : '';
    row('saved', `${formatBytes(vars.servedBytes.cache)} served from cache${money}; ${formatBytes(vars.servedBytes.upstream)} fetched upstream`);
    row('pulls avoided', String(vars.pullsSaved));
    for (const [name, u] of Object.entries(vars.upstreams)) {
      const q = u.requests;
      const rl = u.rateLimit?.remaining !== undefined ? `, rate limit ${u.rateLimit.remaining}${u.rateLimit.limit !== undefined ? `/${u.rateLimit.limit}` : ''}` : '';
      const stats = q ? `, ${q.latencyMs ?? '-'} ms, ${q.requests} requests, ${q.errors} errors, last success ${ago(q.lastSuccess ?? 0)}` : ', no requests yet';
      row('upstream', `${name}: ${upstreamState(u)}${stats}${rl}`);
    }
    if (vars.downloads.length === 0) row('downloads', 'none');
    for (const d of vars.downloads) {
      row('downloading', `${d.upstream}/${d.repo} ${d.digest.slice(0, 19)} ${formatBytes(d.bytes)} of ${d.size !== null ? formatBytes(d.size) : '?'}, ${d.clients} clients`);
    }
    const last = vars.evictions.recent[0];
    row('evictions', `${vars.evictions.blobs} blobs, ${formatBytes(vars.evictions.bytes)}${last ? `; last ${ago(last.at)} (${last.reason})` : ''}`);
  }
  const top = [...listing.repos].sort((a, b) => b.bytes - a.bytes).slice(0, 5);
  for (const r of top) row('repository', `${r.upstream}/${r.repo}  ${formatBytes(r.bytes)}, ${r.tags.length} tags, last access ${ago(r.lastAccess)}`);
  if (listing.repos.length > top.length) row('', `… and ${listing.repos.length - top.length} more (regcache cache ls)`);
}
