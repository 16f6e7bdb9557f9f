import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { isLoopbackAddr } from '../config/admintoken.js';
import type { Config } from '../config/types.js';
import { clientAddressResolver } from '../net/clientaddr.js';
import type { BlobStore } from '../storage/blobstore.js';
import type { StorageObserver } from '../storage/checked.js';
import type { Upstream } from '../upstream/types.js';
import type { DownloadSnapshot } from '../proxy/index.js';
import { dashboardRoute } from './dashboard.js';
import { StorageHealth } from './health.js';
import { History } from './history.js';
import { Metrics, type CoordinationStatus, type ResponseInfo } from './metrics.js';
import { debugHandler, mainRoutes, type DebugRoute, type HealthState } from './routes.js';
import { instrumentUpstream } from './upstream.js';

export { Metrics, type CoordinationStatus, type MetricsSnapshot } from './metrics.js';
export { StorageHealth } from './health.js';
export type { DebugRoute } from './routes.js';

/** What the metrics read when scraped. */
export interface WatchedRuntime {
  storage: BlobStore;
  cache(): { bytes: number; blobs: number };
  upstreams(): Upstream[];
  /** Upstream blob fetches in progress (the dashboard, /debug/vars). */
  downloads?(): DownloadSnapshot[];
  /** Redis coordination, when configured: its reachability is part of readiness. */
  coordination?(): CoordinationStatus;
}

/**
 * Metrics, health and their routes. It reads the runtime it is shown (watch) and composes nothing: the
 * composition root wires its hooks into storage, upstream clients, the cache policy and the listeners.
 */
export class Observability {
  readonly metrics: Metrics;
  /** Counter samples for the dashboard's charts. */
  readonly history: History;
  health: StorageHealth | undefined;
  private runtime: WatchedRuntime | undefined;
  private draining = false;
  private readonly state: HealthState;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
  ) {
    const maxBytes = config.regcache.cache.maxsizeBytes;
    this.metrics = new Metrics({
      upstreams: () => this.runtime?.upstreams() ?? [],
      cache: () => ({ ...(this.runtime?.cache() ?? { bytes: 0, blobs: 0 }), maxBytes, lowWatermark: maxBytes !== undefined ? config.regcache.cache.lowwatermark : undefined }),
      storageHealthy: () => this.health?.healthy ?? true,
      downloads: () => this.runtime?.downloads?.() ?? [],
      coordination: () => this.runtime?.coordination?.(),
      egress: { pricePerGB: config.regcache.dashboard.egressprice, currency: config.regcache.dashboard.currency },
    });
    this.history = new History(this.metrics);
    const self = this;
    this.state = {
      get healthy() {
        return self.health?.healthy ?? true;
      },
      status: () => this.health?.status() ?? {},
      draining: () => this.draining,
      notReady: () => {
        const c = this.runtime?.coordination?.();
        return c && !c.healthy ? `redis ${c.addr} unreachable` : undefined;
      },
    };
  }

  /** For openStorage: every driver operation's time and outcome. */
  readonly observeStorage: StorageObserver = (driver, op, seconds, failed) => this.metrics.storageOp(driver, op, seconds, failed);

  /** Wraps an upstream client so that its requests are counted. */
  instrument(client: Upstream): Upstream {
    return instrumentUpstream(client, (u, op, outcome) => this.metrics.upstreamCall(u, op, outcome));
  }

  /** Starts the storage health checks over the runtime, which the metrics read from now on. */
  watch(runtime: WatchedRuntime): void {
    this.runtime = runtime;
    this.health = new StorageHealth(runtime.storage, this.config.health.storagedriver, this.logger.child({ component: 'lifecycle' }));
    this.health.start();
    this.history.start();
  }

  /** Spread into createHandler's options for each main listener. */
  get handlerOptions(): {
    onResponse(info: ResponseInfo): void;
    extra(req: IncomingMessage, res: ServerResponse, pathname: string): boolean;
    clientAddress(req: IncomingMessage): string | undefined;
  } {
    return {
      onResponse: (info) => this.metrics.onResponse(info),
      extra: mainRoutes(this.state),
      clientAddress: clientAddressResolver(this.config.regcache.trustproxy),
    };
  }

  /**
   * The dashboard's route (regcache.dashboard), answering under its path. `admin` is the admin API route (it lists
   * and removes); `mainListener`: served to clients, where the debug listener's loopback exception does not apply,
   * so removal there needs regcache.admin.tokenfile.
   */
  dashboard(admin: DebugRoute, mainListener: boolean): DebugRoute {
    const d = this.config.regcache.dashboard;
    const hasToken = this.config.regcache.admin?.tokenfile !== undefined;
    const route = dashboardRoute({
      base: d.path,
      metrics: this.metrics,
      history: this.history,
      admin,
      removal: hasToken ? 'token' : mainListener || !isLoopbackAddr(this.config.http.debug?.addr ?? '') ? 'disabled' : 'open',
      price: { pricePerGB: d.egressprice, currency: d.currency },
    });
    return async (req, res, url) => {
      // Several workers: the page shows all of them, gathered when it is asked.
      if (url.pathname === d.path || url.pathname.startsWith(`${d.path}/`)) await this.metrics.refreshPeers();
      return route(req, res, url);
    };
  }

  /** The http.debug.addr listener's handler: health, expvar, Prometheus, then `routes` (the admin API). */
  debugHandler(routes: DebugRoute[]) {
    const dbg = this.config.http.debug;
    return debugHandler({
      state: this.state,
      metrics: this.metrics,
      prometheus: dbg?.prometheus.enabled ? { path: dbg.prometheus.path } : undefined,
      routes,
    });
  }

  /** Shutdown begins: /readyz fails from now on. */
  beginDrain(): void {
    this.draining = true;
  }

  close(): void {
    this.draining = true;
    this.health?.stop();
    this.history.stop();
  }
}
