import http from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { Proxy, type UpstreamHandle } from '../proxy/index.js';
import { RegistryApi } from '../registry/api.js';
import { UpstreamRouter } from '../registry/router.js';
import { openStorage, type StorageDriver } from '../storage/index.js';
import { createUpstream } from '../upstream/index.js';
import { openOperations, type Operations } from '../observability/operations.js';
import { createHandler } from './handler.js';
import { listenOn } from './addr.js';
import { Security } from './security.js';

export interface RunningApp {
  /** Bound addresses: main listener first, then per-upstream listeners. */
  urls: string[];
  storage: StorageDriver;
  proxy: Proxy;
  /** Metadata index, sweeper, health, metrics, debug listener (debugUrl). */
  operations: Operations;
  /** Stops accepting, drains in-flight requests (up to http.draintimeout), closes everything. */
  close(): Promise<void>;
}

export async function startApp(config: Config, logger: Logger): Promise<RunningApp> {
  const security = await Security.open(config, logger);
  const storage = await openStorage(config.storage, { redirect: config.storageRedirect });
  const removed = await storage.cleanup();
  if (removed > 0) logger.info({ removed }, 'removed leftovers of interrupted downloads');
  const operations = await openOperations(config, storage, logger);

  const upstreams: UpstreamHandle[] = config.upstreams.map((u) => ({
    config: u,
    client: operations.instrument(createUpstream(u, { logger: logger.child({ upstream: u.name }) })),
  }));
  const router = new UpstreamRouter(upstreams);
  const proxy = new Proxy(storage, logger, operations.events);
  // redis: replicas sharing one storage fetch each uncached blob once between them.
  // Loaded on demand, like the S3 driver: only replicas sharing a storage need Redis.
  const coordination = config.redis
    ? (await import('../coordination/index.js')).createCoordination(config.redis, logger)
    : undefined;
  proxy.blobs.setCoordinator(coordination?.coordinator);
  const api = new RegistryApi(proxy, router);

  const base = {
    api,
    logger,
    headers: config.http.headers,
    accessLog: !config.log.accesslog.disabled,
    authenticate: security.authenticator ? security.authenticate : undefined,
    ...operations.handlerOptions,
  };
  const servers: http.Server[] = [];
  const urls: string[] = [];
  const listeners: Array<{ addr: string; upstream?: string }> = [
    { addr: config.http.addr },
    ...config.upstreams.filter((u) => u.addr).map((u) => ({ addr: u.addr!, upstream: u.name })),
  ];
  try {
    for (const l of listeners) {
      const server = security.createServer(createHandler({ ...base, listenerUpstream: l.upstream }));
      servers.push(server);
      urls.push(await listenOn(server, l.addr, security.scheme));
      logger.info({ addr: l.addr, tls: security.scheme === 'https', upstream: l.upstream ?? config.upstreams[0]!.name }, 'listening');
    }
    const challenge = security.challengeServer(config);
    if (challenge) {
      servers.push(challenge.server);
      await listenOn(challenge.server, challenge.addr, 'http');
      logger.info({ addr: challenge.addr }, 'listening for ACME http-01 challenges');
    }
    await security.start();
    await operations.start({ proxy, upstreams, isLeader: coordination?.leadership('sweeper', 30_000).isLeader });
  } catch (e) {
    for (const s of servers) s.close();
    security.close();
    await coordination?.close();
    await operations.close();
    await storage.close();
    throw e;
  }

  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    operations.beginDrain();
    const drained = Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    for (const s of servers) s.closeIdleConnections();
    const timer = new Promise<void>((r) => setTimeout(r, config.http.draintimeoutMs).unref());
    // Keep-alive connections that go idle after their last response would otherwise hold the drain open.
    const idle = setInterval(() => servers.forEach((s) => s.closeIdleConnections()), 100);
    await Promise.race([drained, timer]);
    clearInterval(idle);
    for (const s of servers) s.closeAllConnections();
    await Promise.race([proxy.blobs.drain(), timer]);
    await Promise.all(upstreams.map((u) => u.client.close()));
    // Downloads cut off by the drain deadline fail now and remove their temp files.
    await Promise.race([proxy.blobs.drain(), new Promise((r) => setTimeout(r, 2000).unref())]);
    security.close();
    await coordination?.close();
    await operations.close();
    await storage.close();
  };
  return {
    urls,
    storage,
    proxy,
    operations,
    close: () => (closing ??= close()),
  };
}
