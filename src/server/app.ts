import http from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import type { IpcCoordination } from '../coordination/ipc.js';
import { openLifecycle, type CacheLifecycle } from '../lifecycle/runtime.js';
import { listenOn } from '../net/listen.js';
import { Observability, type MetricsSnapshot } from '../observability/index.js';
import { BlobScopes, PullThroughCache, type UpstreamHandle } from '../proxy/index.js';
import { RegistryApi } from '../registry/api.js';
import { UpstreamRouter } from '../registry/router.js';
import type { ProxyEvents } from '../seams.js';
import { openStorage, type BlobStore } from '../storage/index.js';
import { createUpstream } from '../upstream/index.js';
import { DisposerStack } from './disposers.js';
import { ABORTED_DOWNLOADS_GRACE_MS, delay, drainServers } from './drain.js';
import { createHandler, type HandlerOptions } from './handler.js';
import { Security } from './security.js';

/** The eviction sweeper's leader lease among replicas sharing a Redis: a crashed leader is replaced within this long. */
const SWEEPER_LEADER_TTL_MS = 30_000;

export interface RunningApp {
  /** Bound addresses: main listener first, then per-upstream listeners. */
  urls: string[];
  /** URL of the http.debug.addr listener, when configured. */
  debugUrl?: string;
  storage: BlobStore;
  proxy: PullThroughCache;
  lifecycle: CacheLifecycle;
  observability: Observability;
  /** Stops accepting, drains in-flight requests (up to http.draintimeout), closes everything. */
  close(): Promise<void>;
}

export interface AppOptions {
  /**
   * A worker of several (regcache.workers): the channel to the others. It coordinates fetches unless Redis
   * does, and merges the workers' metrics.
   */
  workers?: IpcCoordination;
  /** Which worker this is: worker 0 manages the cache (metadata lock, eviction, admin API) for all of them. */
  worker?: number;
}

/** Index events a worker tells the others, so that every worker's index knows what storage holds. */
const SHARED_INDEX_EVENTS = ['blobFetched', 'manifestFetched', 'tagValidated'] as const;

/** The composition root: builds every part in dependency order, each registering its teardown as it is made. */
export async function startApp(config: Config, logger: Logger, opts: AppOptions = {}): Promise<RunningApp> {
  const disposers = new DisposerStack();
  try {
    return await compose(config, logger, disposers, opts);
  } catch (e) {
    await disposers.disposeAll().catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'cleanup after a failed start failed'));
    throw e;
  }
}

async function compose(config: Config, logger: Logger, disposers: DisposerStack, opts: AppOptions): Promise<RunningApp> {
  const security = disposers.use(await Security.open(config, logger), (s) => s.close());
  const observability = disposers.use(new Observability(config, logger), (o) => o.close());
  const storage = disposers.use(
    await openStorage(config.storage, { redirect: config.storageRedirect, observe: observability.observeStorage }),
    (s) => s.close(),
  );
  const { removed, warnings } = await storage.cleanup();
  if (removed > 0) logger.info({ removed }, 'removed leftovers of interrupted downloads');
  for (const w of warnings) logger.warn(`storage cleanup: ${w}`);
  const lifecycle = disposers.use(await openLifecycle(config, storage, logger, { serveOnly: (opts.worker ?? 0) > 0 }), (l) => l.close());

  // redis: replicas sharing one storage fetch each uncached blob once between them; workers of one server
  // do the same over IPC. Loaded on demand, like the S3 driver: only replicas sharing a storage need Redis.
  const workers = opts.workers && disposers.use(opts.workers, (w) => w.close());
  const redis = config.redis
    ? disposers.use((await import('../coordination/index.js')).createCoordination(config.redis, logger), (c) => c.close())
    : undefined;
  const coordination = redis ?? workers;
  if (workers) {
    workers.provide(() => observability.metrics.snapshot());
    observability.metrics.setPeers(() => workers.gather<MetricsSnapshot>());
  }
  const indexEvents = workers?.share(lifecycle.events, SHARED_INDEX_EVENTS) ?? lifecycle.events;
  const events: ProxyEvents = { ...observability.metrics.events, ...indexEvents };
  const scopes = new BlobScopes(lifecycle.references);
  // Workers: what upstream confirmed to one of them (a blob belongs to a repository) holds for all of them.
  if (workers) Object.assign(scopes, workers.share({ confirm: scopes.confirm.bind(scopes) }, ['confirm'] as const));
  const proxy = new PullThroughCache(storage, logger, events, {
    scopes,
    negativeTtlMs: config.regcache.negativeTtlMs,
    manifestMemoryBytes: config.regcache.cache.manifestMemoryBytes,
  });
  // Runs after the upstream clients closed (below): downloads they cut off fail and remove their temp files.
  disposers.defer(() => Promise.race([proxy.blobs.drain(), delay(ABORTED_DOWNLOADS_GRACE_MS)]));

  // Workers: an upstream one of them finds reachable again is reachable for all (no worker keeps its breaker
  // open, answering 503, while the others serve).
  const clients = new Map<string, UpstreamHandle['client']>();
  const reachable = workers?.share({ upstreamReachable: (name: string) => clients.get(name)?.markReachable?.() }, ['upstreamReachable'] as const);
  const upstreams: UpstreamHandle[] = config.upstreams.map((u) => {
    const onReachable = reachable && (() => reachable.upstreamReachable(u.name));
    const client = observability.instrument(createUpstream(u, { logger: logger.child({ upstream: u.name }), onReachable }));
    clients.set(u.name, client);
    disposers.defer(() => client.close());
    return { config: u, client };
  });
  proxy.blobs.setCoordinator(coordination?.coordinator);
  proxy.manifests.setCoordinator(coordination?.coordinator);
  observability.watch({
    storage,
    cache: () => ({ bytes: lifecycle.index.totalBytes, blobs: lifecycle.index.blobCount }),
    upstreams: () => upstreams.map((u) => u.client),
    coordination: redis && (() => ({ fallbacks: redis.fallbacks, healthy: redis.healthy, addr: redis.addr })),
    downloads: () => proxy.blobs.downloads(),
  });
  const router = new UpstreamRouter(upstreams, logger);
  lifecycle.start({
    proxy,
    resolve: (name) => router.resolve(name),
    campaign: coordination && (() => coordination.leadership('sweeper', SWEEPER_LEADER_TTL_MS).isLeader),
    access: coordination?.access,
    onRemoved: (reason, blobs, bytes) => observability.metrics.evicted(reason, blobs, bytes),
  });

  const api = new RegistryApi(proxy, router);
  const auth = security.auth;
  const base: Omit<HandlerOptions, 'listenerUpstream'> = {
    api,
    logger,
    headers: config.http.headers,
    accessLog: !config.log.accesslog.disabled,
    authenticate: auth && ((req: http.IncomingMessage) => auth.authenticate(req)),
    ...observability.handlerOptions,
  };
  const servers: http.Server[] = [];
  const listen = async (server: http.Server, addr: string, scheme: 'http' | 'https' = 'http'): Promise<string> => {
    disposers.defer(() => closeServer(server));
    const url = await listenOn(server, addr, scheme);
    servers.push(server);
    return url;
  };
  const urls: string[] = [];
  const listeners: Array<{ addr: string; upstream?: string }> = [
    { addr: config.http.addr },
    ...config.upstreams.filter((u) => u.addr).map((u) => ({ addr: u.addr!, upstream: u.name })),
  ];
  const adminRoute = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => lifecycle.adminRoute(req, res, url);
  const dash = config.regcache.dashboard;
  if (dash.enabled && dash.mainlistener) {
    // regcache.dashboard.mainlistener: the page on the main listener too, behind the same client auth as /v2/.
    const route = observability.dashboard(adminRoute, true);
    const extra = base.extra;
    base.extra = async (req, res, pathname) => {
      if (await extra?.(req, res, pathname)) return true;
      if (pathname !== dash.path && !pathname.startsWith(`${dash.path}/`)) return false;
      if (auth) await auth.authenticate(req);
      return route(req, res, new URL(req.url ?? '/', 'http://localhost'));
    };
  }
  for (const l of listeners) {
    urls.push(await listen(security.createServer(createHandler({ ...base, listenerUpstream: l.upstream })), l.addr, security.scheme));
    logger.info({ addr: l.addr, tls: security.scheme === 'https', upstream: l.upstream ?? config.upstreams[0]!.name }, 'listening');
  }
  const challenge = security.challengeServer(config);
  if (challenge) {
    await listen(challenge.server, challenge.addr);
    logger.info({ addr: challenge.addr }, 'listening for ACME http-01 challenges');
  }
  await security.start();

  let debugUrl: string | undefined;
  const dbg = config.http.debug;
  if (dbg) {
    const handler = observability.debugHandler([adminRoute, ...(dash.enabled ? [observability.dashboard(adminRoute, false)] : [])]);
    // Not drained with the API listeners: metrics stay readable until the very end.
    const debugServer = http.createServer(handler);
    disposers.defer(() => closeServer(debugServer));
    debugUrl = await listenOn(debugServer, dbg.addr);
    logger.info({ addr: dbg.addr, url: debugUrl, prometheus: dbg.prometheus.enabled ? dbg.prometheus.path : false }, 'debug listener');
  }

  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    observability.beginDrain();
    const deadline = delay(config.http.draintimeoutMs);
    await drainServers(servers, deadline);
    await Promise.race([proxy.blobs.drain(), deadline]);
    await disposers.disposeAll();
  };
  return { urls, debugUrl, storage, proxy, lifecycle, observability, close: () => (closing ??= close()) };
}

async function closeServer(server: http.Server): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((r) => server.close(() => r()));
  server.closeAllConnections();
  await closed;
}
