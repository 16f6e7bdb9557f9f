import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { CacheResult, ProxyEvents } from '../seams.js';
import { BREAKER_STATE_VALUE, type BreakerStatus } from '../upstream/index.js';
import type { DownloadSnapshot } from '../proxy/index.js';
import type { RateLimitInfo } from '../upstream/types.js';

/** What the handler reports per response (see HandlerOptions.onResponse). */
export interface ResponseInfo {
  method: string;
  route: string;
  status: number;
  ms: number;
  cache?: string;
  bytes: number;
  upstream?: string;
}

export interface MetricsSources {
  upstreams(): Array<{ name: string; rateLimit(): RateLimitInfo | undefined; breaker?(): BreakerStatus }>;
  cache(): { bytes: number; blobs: number; maxBytes?: number; lowWatermark?: number };
  storageHealthy(): boolean;
  /** Upstream blob fetches in progress. */
  downloads?(): DownloadSnapshot[];
  /** Cross-replica coordination (redis), when configured. */
  coordination?(): CoordinationStatus | undefined;
  /** regcache.dashboard.egressprice and currency: what a byte served from cache saved. */
  egress?: { pricePerGB: number; currency: string };
}

/** Redis coordination as metrics and readiness see it. */
export interface CoordinationStatus {
  /** Coordination calls answered locally because Redis failed (per-replica fallback). */
  fallbacks: number;
  /** The connection to Redis is up. */
  healthy: boolean;
  /** host:port */
  addr: string;
}

/** Per-upstream request statistics (/debug/vars regcache.upstreams[name].requests). */
export interface UpstreamStats {
  requests: number;
  errors: number;
  /** Mean time of the last (up to) 20 requests, in ms. */
  latencyMs: number | null;
  lastSuccess: number | null;
  lastError: number | null;
  lastErrorCode: string | null;
}

/** One eviction (or manual removal) as the sweeper or the admin API reported it. */
export interface EvictionRecord {
  at: number;
  reason: string;
  blobs: number;
  bytes: number;
}

/** How many recent evictions /debug/vars keeps. */
const RECENT_EVICTIONS = 50;
const LATENCY_WINDOW = 20;

/** distribution's expvar counters (registry.proxy.blobs / .manifests in /debug/vars). */
interface ProxyVars {
  Requests: number;
  Hits: number;
  Misses: number;
  BytesPulled: number;
  BytesPushed: number;
}

/** The plain counters behind /debug/vars and the dashboard. */
interface Counters {
  vars: { blobs: ProxyVars; manifests: ProxyVars };
  extra: { evictions: number; evictedBytes: number; coalescedWaits: number; staleServed: number; pullsSaved: number };
  results: Record<CacheResult, number>;
  served: { cache: number; upstream: number };
  upstreams: Record<string, UpstreamStats>;
}

/**
 * What one worker of several (regcache.workers) counted, as another worker gathers it over IPC: /metrics,
 * /debug/vars and the dashboard of the worker with the debug listener add up every worker's.
 */
export interface MetricsSnapshot {
  prom: Array<MetricObjectWithValues<MetricValue<string>>>;
  counters: Counters;
  downloads: DownloadSnapshot[];
}

/** Adds numeric fields of `b` into `a`, recursively (same shape). */
function addInto<T extends object>(a: T, b: T): void {
  for (const [k, v] of Object.entries(b)) {
    const cur = (a as Record<string, unknown>)[k];
    if (typeof v === 'number' && typeof cur === 'number') (a as Record<string, unknown>)[k] = cur + v;
    else if (v && typeof v === 'object' && cur && typeof cur === 'object') addInto(cur, v);
  }
}

function mergeUpstream(a: UpstreamStats | undefined, b: UpstreamStats): UpstreamStats {
  if (!a) return { ...b };
  const later = (b.lastError ?? 0) > (a.lastError ?? 0) ? b : a;
  return {
    requests: a.requests + b.requests,
    errors: a.errors + b.errors,
    latencyMs: a.latencyMs ?? b.latencyMs,
    lastSuccess: Math.max(a.lastSuccess ?? 0, b.lastSuccess ?? 0) || null,
    lastError: later.lastError,
    lastErrorCode: later.lastErrorCode,
  };
}

const FROM_CACHE = new Set<string>(['hit', 'revalidated', 'stale']);
const KIND: Record<string, 'blob' | 'manifest' | 'tags'> = { blobs: 'blob', manifests: 'manifest', tags: 'tags' };

/**
 * Every counter the mirror exports, in one prom-client registry per app (so several apps in one process do not
 * collide), plus distribution-style expvar counters for /debug/vars.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly vars = { blobs: newVars(), manifests: newVars() };
  private readonly extra = { evictions: 0, evictedBytes: 0, coalescedWaits: 0, staleServed: 0, pullsSaved: 0 };
  /** Registry requests by cache result (all kinds; = sum of regcache_cache_requests_total by result). */
  private readonly results: Record<CacheResult, number> = { hit: 0, miss: 0, coalesced: 0, revalidated: 0, stale: 0 };
  /** Body bytes by source (= sum of regcache_served_bytes_total by source). */
  private readonly served = { cache: 0, upstream: 0 };
  private readonly upstreamStats = new Map<string, UpstreamStats & { latencies: number[] }>();
  private readonly recentEvictions: EvictionRecord[] = [];

  private readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  private readonly httpDuration: Histogram<'method' | 'route'>;
  private readonly cacheRequests: Counter<'kind' | 'result'>;
  private readonly servedBytes: Counter<'kind' | 'source'>;
  private readonly pullsSaved: Counter<'upstream'>;
  private readonly upstreamRequests: Counter<'upstream' | 'op' | 'outcome'>;
  private readonly upstreamErrors: Counter<'upstream' | 'op' | 'code'>;
  private readonly upstreamBytes: Counter<'upstream' | 'kind'>;
  private readonly coalesced: Counter<'kind'>;
  private readonly stale: Counter<'upstream' | 'kind'>;
  private readonly evictions: Counter<'reason'>;
  private readonly evictedBytes: Counter<'reason'>;
  private readonly inflight: Gauge<'upstream'>;
  private readonly storageDuration: Histogram<'driver' | 'op'>;
  private readonly storageErrors: Counter<'driver' | 'op'>;

  constructor(private readonly sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.httpRequests = new Counter({
      name: 'regcache_http_requests_total',
      help: 'HTTP requests by method, route (base, manifests, blobs, tags, _catalog, referrers, other) and status',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'regcache_http_request_duration_seconds',
      help: 'Time from request to the last byte of the response',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    });
    this.cacheRequests = new Counter({
      name: 'regcache_cache_requests_total',
      help: 'Registry requests by kind (blob, manifest, tags) and cache result (hit, miss, coalesced, revalidated, stale)',
      labelNames: ['kind', 'result'],
      registers,
    });
    this.servedBytes = new Counter({
      name: 'regcache_served_bytes_total',
      help: 'Body bytes sent to clients, by kind and source: cache (stored) or upstream (fetched for this or a coalesced request)',
      labelNames: ['kind', 'source'],
      registers,
    });
    this.pullsSaved = new Counter({
      name: 'regcache_upstream_pulls_saved_total',
      help: 'Manifest GETs answered from cache: each is a pull the upstream (Docker Hub: rate-limited) did not count',
      labelNames: ['upstream'],
      registers,
    });
    this.upstreamRequests = new Counter({
      name: 'regcache_upstream_requests_total',
      help: 'Requests to upstream registries by operation and outcome (ok or error code)',
      labelNames: ['upstream', 'op', 'outcome'],
      registers,
    });
    this.upstreamErrors = new Counter({
      name: 'regcache_upstream_errors_total',
      help: 'Failed upstream requests (404 excluded), blob body failures included',
      labelNames: ['upstream', 'op', 'code'],
      registers,
    });
    this.upstreamBytes = new Counter({
      name: 'regcache_upstream_fetched_bytes_total',
      help: 'Bytes fetched from upstream registries (blobs and manifests)',
      labelNames: ['upstream', 'kind'],
      registers,
    });
    this.coalesced = new Counter({
      name: 'regcache_coalesced_waits_total',
      help: 'Requests that joined an upstream fetch already in flight instead of starting one',
      labelNames: ['kind'],
      registers,
    });
    this.stale = new Counter({
      name: 'regcache_stale_served_total',
      help: 'Cached manifests or tag lists served because upstream failed (stale-if-error)',
      labelNames: ['upstream', 'kind'],
      registers,
    });
    this.evictions = new Counter({
      name: 'regcache_evicted_blobs_total',
      help: 'Blobs removed from the cache by reason (ttl, lru, age, manual, corrupt)',
      labelNames: ['reason'],
      registers,
    });
    this.evictedBytes = new Counter({
      name: 'regcache_evicted_bytes_total',
      help: 'Bytes removed from the cache by reason',
      labelNames: ['reason'],
      registers,
    });
    this.inflight = new Gauge({
      name: 'regcache_inflight_downloads',
      help: 'Blob downloads from upstream in progress',
      labelNames: ['upstream'],
      registers,
    });
    this.storageDuration = new Histogram({
      name: 'regcache_storage_operation_seconds',
      help: 'Storage driver operations by driver and operation (stat, get, read, put, writer, write, commit, abort, delete, list, redirect, cleanup)',
      labelNames: ['driver', 'op'],
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers,
    });
    this.storageErrors = new Counter({
      name: 'regcache_storage_errors_total',
      help: 'Failed storage driver operations by driver and operation',
      labelNames: ['driver', 'op'],
      registers,
    });
    const src = sources;
    new Gauge({
      name: 'regcache_cache_size_bytes',
      aggregator: 'max',
      help: 'Bytes of blobs (layers, configs, manifests) in the cache',
      registers,
      collect() {
        this.set(src.cache().bytes);
      },
    });
    new Gauge({
      name: 'regcache_cache_blobs',
      aggregator: 'max',
      help: 'Blobs in the cache',
      registers,
      collect() {
        this.set(src.cache().blobs);
      },
    });
    new Gauge({
      name: 'regcache_cache_max_size_bytes',
      aggregator: 'max',
      help: 'regcache.cache.maxsize (absent when the cache is not capped)',
      registers,
      collect() {
        const max = src.cache().maxBytes;
        if (max !== undefined) this.set(max);
      },
    });
    new Counter({
      name: 'regcache_coordination_fallbacks_total',
      help: 'Coordination calls (leases across replicas) answered locally because Redis failed: each may cost a duplicate upstream fetch',
      registers,
      collect() {
        const c = src.coordination?.();
        this.reset();
        if (c) this.inc(c.fallbacks);
      },
    });
    new Gauge({
      name: 'regcache_redis_up',
      aggregator: 'min',
      help: '1 while the connection to the coordination Redis is up, 0 while it is down (absent without redis:)',
      registers,
      collect() {
        const c = src.coordination?.();
        this.reset();
        if (c) this.set(c.healthy ? 1 : 0);
      },
    });
    new Gauge({
      name: 'regcache_storage_healthy',
      aggregator: 'min',
      help: '1 while the storage health check passes (or is disabled), 0 after threshold consecutive failures',
      registers,
      collect() {
        this.set(src.storageHealthy() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'regcache_upstream_breaker_state',
      aggregator: 'max',
      help: 'Circuit breaker of each upstream: 0 closed (requests go upstream), 1 open (marked down: cache only, 503 for misses), 2 half-open (one probe in flight)',
      labelNames: ['upstream'],
      registers,
      collect() {
        this.reset();
        for (const u of src.upstreams()) {
          const b = u.breaker?.();
          if (b) this.set({ upstream: u.name }, BREAKER_STATE_VALUE[b.state]);
        }
      },
    });
    new Counter({
      name: 'regcache_upstream_breaker_openings_total',
      help: 'Times the circuit breaker of each upstream opened (after repeated failures, or after a failed probe)',
      labelNames: ['upstream'],
      registers,
      collect() {
        this.reset();
        for (const u of src.upstreams()) {
          const b = u.breaker?.();
          if (b) this.inc({ upstream: u.name }, b.openings);
        }
      },
    });
    for (const [name, field, help] of [
      ['regcache_upstream_ratelimit_remaining', 'remaining', 'Pulls left in the upstream rate-limit window (Docker Hub RateLimit-Remaining)'],
      ['regcache_upstream_ratelimit_limit', 'limit', 'Upstream rate limit per window (Docker Hub RateLimit-Limit)'],
    ] as const) {
      new Gauge({
        name,
        help,
        labelNames: ['upstream'],
        // every worker sees the same upstream answers: the latest is any one of them
        aggregator: 'min',
        registers,
        collect() {
          this.reset();
          for (const u of src.upstreams()) {
            const v = u.rateLimit()?.[field];
            if (v !== undefined) this.set({ upstream: u.name }, v);
          }
        },
      });
    }
  }

  /** The proxy hooks metrics care about. */
  readonly events: Pick<ProxyEvents, 'coalesced' | 'downloadStarted' | 'downloadFinished' | 'staleServed'> = {
    coalesced: (kind) => {
      this.coalesced.inc({ kind });
      this.extra.coalescedWaits++;
    },
    downloadStarted: (upstream) => this.inflight.inc({ upstream }),
    downloadFinished: (upstream, bytes, err) => {
      this.inflight.dec({ upstream });
      this.upstreamBytes.inc({ upstream, kind: 'blob' }, bytes);
      this.vars.blobs.BytesPulled += bytes;
      if (err) this.upstreamErrors.inc({ upstream, op: 'blobBody', code: (err as { code?: string }).code ?? 'error' });
    },
    staleServed: (upstream, kind) => {
      this.stale.inc({ upstream, kind });
      this.extra.staleServed++;
    },
  };

  onResponse(info: ResponseInfo): void {
    const status = String(info.status);
    this.httpRequests.inc({ method: info.method, route: info.route, status });
    this.httpDuration.observe({ method: info.method, route: info.route }, info.ms / 1000);
    const kind = KIND[info.route];
    if (!kind || !info.cache) return;
    const result = info.cache as CacheResult;
    this.cacheRequests.inc({ kind, result });
    if (result in this.results) this.results[result]++;
    const fromCache = FROM_CACHE.has(result);
    if (info.bytes > 0) {
      this.servedBytes.inc({ kind, source: fromCache ? 'cache' : 'upstream' }, info.bytes);
      this.served[fromCache ? 'cache' : 'upstream'] += info.bytes;
    }
    if (kind === 'tags') return;
    const v = kind === 'blob' ? this.vars.blobs : this.vars.manifests;
    v.Requests++;
    if (fromCache) v.Hits++;
    else v.Misses++;
    v.BytesPushed += info.bytes;
    if (kind === 'manifest' && info.method === 'GET' && fromCache && info.upstream && info.status < 400) {
      this.pullsSaved.inc({ upstream: info.upstream });
      this.extra.pullsSaved++;
    }
  }

  /** Called by the instrumented upstream client for every request. */
  upstreamCall(upstream: string, op: string, outcome: { code?: string; status?: number; bytes?: number; ms?: number }): void {
    this.upstreamRequests.inc({ upstream, op, outcome: outcome.code ?? 'ok' });
    let st = this.upstreamStats.get(upstream);
    if (!st) {
      st = { requests: 0, errors: 0, latencyMs: null, lastSuccess: null, lastError: null, lastErrorCode: null, latencies: [] };
      this.upstreamStats.set(upstream, st);
    }
    st.requests++;
    // A 404 is an answer: the upstream is up.
    if (outcome.code && outcome.status !== 404) {
      st.errors++;
      st.lastError = Date.now();
      st.lastErrorCode = outcome.code;
    } else st.lastSuccess = Date.now();
    if (outcome.ms !== undefined) {
      st.latencies.push(outcome.ms);
      if (st.latencies.length > LATENCY_WINDOW) st.latencies.shift();
      st.latencyMs = Math.round((st.latencies.reduce((a, b) => a + b, 0) / st.latencies.length) * 10) / 10;
    }
    if (outcome.code && outcome.status !== 404) this.upstreamErrors.inc({ upstream, op, code: outcome.code });
    if (outcome.bytes) {
      this.upstreamBytes.inc({ upstream, kind: 'manifest' }, outcome.bytes);
      this.vars.manifests.BytesPulled += outcome.bytes;
    }
  }

  /** A storage driver operation finished (see src/storage/checked.ts). */
  storageOp(driver: string, op: string, seconds: number, failed: boolean): void {
    this.storageDuration.observe({ driver, op }, seconds);
    if (failed) this.storageErrors.inc({ driver, op });
  }

  evicted(reason: string, blobs: number, bytes: number): void {
    this.evictions.inc({ reason }, blobs);
    this.evictedBytes.inc({ reason }, bytes);
    this.extra.evictions += blobs;
    this.extra.evictedBytes += bytes;
    this.recentEvictions.unshift({ at: Date.now(), reason, blobs, bytes });
    if (this.recentEvictions.length > RECENT_EVICTIONS) this.recentEvictions.pop();
  }

  /** The counters the dashboard's history samples (all also in /metrics and /debug/vars). */
  totals(): { results: Record<CacheResult, number>; served: { cache: number; upstream: number }; cacheBytes: number } {
    const { results, served } = this.merged();
    return { results, served, cacheBytes: this.sources.cache().bytes };
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private peers: (() => Promise<MetricsSnapshot[]>) | undefined;
  private peerSnapshots: MetricsSnapshot[] = [];

  /** Several workers: how to gather the others' snapshots (merged into what this one reports). */
  setPeers(gather: () => Promise<MetricsSnapshot[]>): void {
    this.peers = gather;
  }

  /** Gathers the other workers' counters now; what expvar() and totals() merge until the next refresh. */
  async refreshPeers(): Promise<void> {
    if (this.peers) this.peerSnapshots = await this.peers();
  }

  /** This worker's counters, for another worker's merge. */
  async snapshot(): Promise<MetricsSnapshot> {
    return { prom: await this.registry.getMetricsAsJSON(), counters: this.counters(), downloads: this.sources.downloads?.() ?? [] };
  }

  private counters(): Counters {
    const upstreams = Object.fromEntries([...this.upstreamStats].map(([name, { latencies: _, ...st }]) => [name, st]));
    return structuredClone({ vars: this.vars, extra: this.extra, results: this.results, served: this.served, upstreams });
  }

  /** This worker's counters plus the others' (as last refreshed). */
  private merged(): Counters {
    const c = this.counters();
    for (const p of this.peerSnapshots) {
      const { upstreams, ...rest } = p.counters;
      addInto(c, { ...rest, upstreams: {} });
      for (const [name, st] of Object.entries(upstreams)) c.upstreams[name] = mergeUpstream(c.upstreams[name], st);
    }
    return c;
  }

  async prometheus(): Promise<string> {
    if (!this.peers) return this.registry.metrics();
    const [own, others] = await Promise.all([this.registry.getMetricsAsJSON(), this.peers()]);
    return AggregatorRegistry.aggregate([own, ...others.map((o) => o.prom)]).metrics();
  }

  /** /debug/vars: expvar-style, like distribution (cmdline, memstats, registry.proxy.{blobs,manifests}). */
  expvar(): Record<string, unknown> {
    const mem = process.memoryUsage();
    const cache = this.sources.cache();
    const { vars, extra, results, served, upstreams: stats } = this.merged();
    return {
      cmdline: process.argv,
      memstats: { Alloc: mem.heapUsed, HeapAlloc: mem.heapUsed, HeapSys: mem.heapTotal, Sys: mem.rss, External: mem.external },
      registry: { proxy: { blobs: vars.blobs, manifests: vars.manifests } },
      regcache: {
        cache: {
          bytes: cache.bytes,
          blobs: cache.blobs,
          maxBytes: cache.maxBytes ?? null,
          lowWatermark: cache.lowWatermark ?? null,
        },
        evictions: { blobs: extra.evictions, bytes: extra.evictedBytes, recent: [...this.recentEvictions] },
        coalescedWaits: extra.coalescedWaits,
        staleServed: extra.staleServed,
        requests: results,
        servedBytes: served,
        pullsSaved: extra.pullsSaved,
        savings: savings(served.cache, this.sources.egress),
        storageHealthy: this.sources.storageHealthy(),
        downloads: [...(this.sources.downloads?.() ?? []), ...this.peerSnapshots.flatMap((p) => p.downloads)],
        upstreams: Object.fromEntries(
          this.sources.upstreams().map((u) => [u.name, { rateLimit: u.rateLimit() ?? null, breaker: u.breaker?.() ?? null, requests: stats[u.name] ?? null }]),
        ),
      },
    };
  }
}

/** Bytes served from cache are egress the upstream did not send: GB are 10^9 bytes, as cloud price lists count. */
function savings(bytes: number, egress: MetricsSources['egress']): { bytes: number; pricePerGB: number | null; currency: string | null; amount: number | null } {
  if (!egress) return { bytes, pricePerGB: null, currency: null, amount: null };
  return { bytes, pricePerGB: egress.pricePerGB, currency: egress.currency, amount: Math.round((bytes / 1e9) * egress.pricePerGB * 100) / 100 };
}

function newVars(): ProxyVars {
  return { Requests: 0, Hits: 0, Misses: 0, BytesPulled: 0, BytesPushed: 0 };
}
