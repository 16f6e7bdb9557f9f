import http from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { CacheAdmin } from '../lifecycle/admin.js';
import type { Reason } from '../lifecycle/plan.js';
import type { LiveCache } from '../lifecycle/remove.js';
import { Serial } from '../lifecycle/serial.js';
import { Sweeper, ttlInterval, ttlResolver } from '../lifecycle/sweeper.js';
import type { MetadataIndex } from '../metadata/index.js';
import { metadataDir, openMetadata, type OpenedMetadata } from '../metadata/open.js';
import { reconcile } from '../metadata/reconcile.js';
import type { Proxy, ProxyEvents, UpstreamHandle } from '../proxy/index.js';
import { listenOn } from '../server/addr.js';
import type { StorageDriver } from '../storage/types.js';
import type { Upstream } from '../upstream/types.js';
import { clientAddressResolver } from './clientaddr.js';
import { StorageHealth } from './health.js';
import { Metrics, type ResponseInfo } from './metrics.js';
import { debugHandler, mainRoutes, type HealthState } from './routes.js';
import { instrumentUpstream } from './upstream.js';

export interface Operations {
  metrics: Metrics;
  index: MetadataIndex;
  health: StorageHealth;
  /** Undefined until start(), and when another process owns this storage's lifecycle. */
  sweeper?: Sweeper;
  admin?: CacheAdmin;
  /** URL of the http.debug.addr listener once started. */
  debugUrl?: string;
  /** Proxy hooks: metrics + metadata index updates. */
  events: ProxyEvents;
  /** Wraps an upstream client so that its requests are counted. */
  instrument(client: Upstream): Upstream;
  /** Spread into createHandler's options for each main listener. */
  handlerOptions: {
    onResponse(info: ResponseInfo): void;
    extra(req: http.IncomingMessage, res: http.ServerResponse, pathname: string): boolean;
    clientAddress(req: http.IncomingMessage): string | undefined;
  };
  /** Once the proxy exists: storage scan, sweeper, health checks, debug listener. */
  start(opts: { proxy: Proxy; upstreams: UpstreamHandle[]; isLeader?: () => boolean }): Promise<void>;
  /** Shutdown begins: /readyz fails from now on. */
  beginDrain(): void;
  close(): Promise<void>;
}

export function liveCacheOf(proxy: Proxy): LiveCache {
  return {
    isBusy: (d) => proxy.blobs.isBusy(d),
    forgetManifest: (upstream, repo, digest) => proxy.manifests.forget(upstream, repo, { digest }),
    forgetTag: (upstream, repo, tag) => proxy.manifests.forget(upstream, repo, { tag }),
  };
}

/**
 * Everything that watches and maintains the cache besides serving it: metadata index, TTL/LRU sweeper,
 * storage health, metrics, access-log client address, the debug listener with its admin API.
 */
export async function openOperations(config: Config, storage: StorageDriver, logger: Logger): Promise<Operations> {
  const log = logger.child({ component: 'lifecycle' });
  const meta: OpenedMetadata = await openMetadata(metadataDir(config.storage), log);
  if (!meta.owner) {
    log.warn({ pid: meta.heldBy }, 'another regcache process manages this storage (metadata lock held): this one serves only, no eviction');
  }
  const { index } = meta;
  const health = new StorageHealth(storage, config.health.storagedriver, log);
  let upstreamClients: Upstream[] = [];
  const maxBytes = config.regcache.cache.maxsizeBytes;
  const metrics = new Metrics({
    upstreams: () => upstreamClients,
    cache: () => ({ bytes: index.totalBytes, blobs: index.blobCount, maxBytes }),
    storageHealthy: () => health.healthy,
  });
  let draining = false;
  let closed = false;
  const state: HealthState = { health, draining: () => draining };
  const now = Date.now;
  const onRemoved = (reason: Reason, blobs: number, bytes: number): void => metrics.evicted(reason, blobs, bytes);
  const ttlOf = ttlResolver(config);

  let debugServer: http.Server | undefined;

  const ops: Operations = {
    metrics,
    index,
    health,
    events: {
      ...metrics.events,
      blobFetched: (u, r, d, size) => index.blobFetched(d, size, u, r, now()),
      blobServed: (u, r, d) => index.blobAccessed(d, u, r, now()),
      manifestFetched: (u, r, d, mediaType, bytes) => index.manifestFetched(u, r, d, mediaType, bytes, now()),
      manifestServed: (u, r, d) => index.manifestAccessed(u, r, d, now()),
      tagValidated: (u, r, t, d) => index.tagValidated(u, r, t, d, now()),
    },
    instrument: (client) => instrumentUpstream(client, (u, op, outcome) => metrics.upstreamCall(u, op, outcome)),
    handlerOptions: {
      onResponse: (info) => metrics.onResponse(info),
      extra: mainRoutes(state),
      clientAddress: clientAddressResolver(config.regcache.trustproxy),
    },

    async start({ proxy, upstreams, isLeader }) {
      upstreamClients = upstreams.map((u) => u.client);
      const live = liveCacheOf(proxy);
      const lifecycle = {
        index,
        storage,
        live,
        logger: log,
        ttlOf,
        maxSizeBytes: maxBytes,
        lowWatermark: config.regcache.cache.lowwatermark,
        onRemoved,
        serial: new Serial(),
      };
      if (meta.owner) {
        ops.admin = new CacheAdmin(lifecycle);
        ops.sweeper = new Sweeper({ ...lifecycle, ttlIntervalMs: ttlInterval(config.upstreams.map((u) => u.ttlMs)), isLeader });
      }
      health.start();
      // Storage is the truth: catch up with what a crash lost (or rebuild from scratch), then start sweeping.
      const rebuilding = index.isEmpty;
      void reconcile(index, storage, now).then(
        (r) => {
          const changed = Object.values(r).some((n) => n > 0);
          if (changed) log.info({ ...r, rebuild: rebuilding }, rebuilding ? 'metadata index rebuilt from storage' : 'metadata index reconciled with storage');
          if (!closed) ops.sweeper?.start();
        },
        (e: unknown) => log.error({ err: (e as Error).message }, 'metadata scan of storage failed; eviction disabled'),
      );
      const dbg = config.http.debug;
      if (dbg) {
        debugServer = http.createServer(
          debugHandler({ state, metrics, prometheus: dbg.prometheus.enabled ? { path: dbg.prometheus.path } : undefined, admin: ops.admin }),
        );
        ops.debugUrl = await listenOn(debugServer, dbg.addr);
        logger.info({ addr: dbg.addr, url: ops.debugUrl, prometheus: dbg.prometheus.enabled ? dbg.prometheus.path : false }, 'debug listener');
      }
    },

    beginDrain() {
      draining = true;
    },

    async close() {
      draining = true;
      closed = true;
      health.stop();
      await ops.sweeper?.stop();
      if (debugServer) {
        const s = debugServer;
        const closed = new Promise<void>((r) => s.close(() => r()));
        s.closeAllConnections();
        await closed;
      }
      await meta.close();
    },
  };
  return ops;
}
