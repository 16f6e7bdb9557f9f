import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import type { MetadataIndex } from '../metadata/index.js';
import { LOCK_REFRESH_MS } from '../metadata/lock.js';
import { metadataDir, openMetadata, tryTakeOver } from '../metadata/open.js';
import { reconcile } from '../metadata/reconcile.js';
import type { PullThroughCache, ReferenceLookup, UpstreamHandle } from '../proxy/index.js';
import { manifestId, repoName } from '../metadata/types.js';
import type { AccessRecorder, ProxyEvents } from '../seams.js';
import type { BlobStore } from '../storage/blobstore.js';
import { CacheAdmin } from './admin.js';
import { handleAdmin } from './adminapi.js';
import type { BundleContext } from './bundle.js';
import { createAdminGate } from './adminauth.js';
import { blobAccessId, type Reason } from './plan.js';
import type { LiveCache } from './remove.js';
import { Serial } from './serial.js';
import { Sweeper, ttlInterval, ttlResolver } from './sweeper.js';
import { ScheduledWarmer } from './warmer.js';

/** The index updates the cache policy's events cause. */
type IndexEvents = Pick<ProxyEvents, 'blobFetched' | 'blobServed' | 'manifestFetched' | 'manifestServed' | 'tagValidated'>;

export interface CacheLifecycle {
  index: MetadataIndex;
  /** Undefined until start(), and when another process owns this storage's lifecycle. */
  sweeper?: Sweeper;
  admin?: CacheAdmin;
  /** Export/import of the admin API (only in the process that owns the cache). */
  bundles?: BundleContext;
  /** regcache.warm (runs only while this process owns the cache). */
  warmer?: ScheduledWarmer;
  /** Proxy events that keep the index current. */
  events: IndexEvents;
  /** Whether a cached manifest of upstream/repo references a blob, or the blob was fetched or served for it. */
  references: ReferenceLookup;
  /** Once the cache policy exists: catch up with storage, then sweep (as leader) and answer the admin API. */
  start(opts: {
    proxy: PullThroughCache;
    /**
     * Several replicas or workers: campaigns for leadership of the eviction sweeps. Called only in the process
     * that owns the index (the only one with a sweeper), so the leader is always a process that sweeps.
     */
    campaign?: () => () => boolean;
    /** Several replicas: accesses are noted cluster-wide and eviction plans use everyone's. */
    access?: AccessRecorder;
    /** Image name → upstream and repository, as the registry API routes it (for regcache.warm). */
    resolve?(name: string): { upstream: UpstreamHandle; repo: string };
    onRemoved(reason: Reason, blobs: number, bytes: number): void;
  }): void;
  /** The admin API route for the debug listener (state-changing requests pass the admin gate, adminauth.ts). */
  adminRoute(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean>;
  close(): Promise<void>;
}

export function liveCacheOf(proxy: PullThroughCache): LiveCache {
  return {
    isBusy: (d) => proxy.blobs.isBusy(d),
    forgetManifest: (upstream, repo, digest) => proxy.manifests.forget(upstream, repo, { digest }),
    forgetTag: (upstream, repo, tag) => proxy.manifests.forget(upstream, repo, { tag }),
  };
}

/**
 * The cache's runtime besides serving it: the metadata index (single writer, behind its lock), reconcile with
 * storage, the TTL/LRU sweeper and the admin operations. A process that finds the lock held serves only.
 */
export async function openLifecycle(
  config: Config,
  storage: BlobStore,
  logger: Logger,
  /** serveOnly: a worker other than worker 0 (regcache.workers), which manages the cache for all of them. */
  opts: { serveOnly?: boolean } = {},
): Promise<CacheLifecycle> {
  const log = logger.child({ component: 'lifecycle' });
  // First: an unusable admin token file stops the start before anything is opened.
  const gate = await createAdminGate(config, log);
  const dir = metadataDir(config.storage);
  let meta = await openMetadata(dir, log, { serveOnly: opts.serveOnly });
  if (opts.serveOnly) {
    if (!meta.owner) log.debug('worker 0 manages this storage (metadata index, eviction, admin API); this worker serves');
  } else if (!meta.owner) {
    log.warn({ holder: meta.heldBy }, 'another regcache process manages this storage (metadata lock held): this one serves only, no eviction');
  }
  const now = Date.now;
  let closed = false;
  let takeOver: NodeJS.Timeout | undefined;
  let access: AccessRecorder | undefined;

  const lc: CacheLifecycle = {
    index: meta.index,
    references: (u, r, d) => lc.index.repoReferences(u, r, d) || (lc.index.blob(d)?.repos.includes(repoName(u, r)) ?? false),
    events: {
      blobFetched: (u, r, d, size) => lc.index.blobFetched(d, size, u, r, now()),
      blobServed: (u, r, d) => {
        const at = now();
        lc.index.blobAccessed(d, u, r, at);
        access?.touched(blobAccessId(d), at);
      },
      manifestFetched: (u, r, d, mediaType, bytes) => lc.index.manifestFetched(u, r, d, mediaType, bytes, now()),
      manifestServed: (u, r, d) => {
        const at = now();
        lc.index.manifestAccessed(u, r, d, at);
        access?.touched(manifestId(u, r, d), at);
      },
      tagValidated: (u, r, t, d) => lc.index.tagValidated(u, r, t, d, now()),
    },

    start({ proxy, campaign, onRemoved, access: recorder, resolve }) {
      access = recorder;
      if (config.regcache.warm && resolve) {
        lc.warmer = new ScheduledWarmer(config.regcache.warm, { proxy, resolve, isOwner: () => lc.admin !== undefined && !closed, logger: log.child({ task: 'warm' }) });
      }
      const manage = (): void => {
        const ctx = {
          index: lc.index,
          storage,
          live: liveCacheOf(proxy),
          logger: log,
          ttlOf: ttlResolver(config),
          maxSizeBytes: config.regcache.cache.maxsizeBytes,
          lowWatermark: config.regcache.cache.lowwatermark,
          onRemoved,
          serial: new Serial(),
          access,
        };
        if (meta.owner) {
          lc.admin = new CacheAdmin(ctx);
          lc.bundles = { ...ctx, upstreams: config.upstreams.map((u) => u.name) };
          lc.sweeper = new Sweeper({ ...ctx, ttlIntervalMs: ttlInterval(config.upstreams.map((u) => u.ttlMs)), isLeader: campaign?.() });
        }
        // Storage is the truth: catch up with what a crash lost (or rebuild from scratch), then start sweeping.
        const index = lc.index;
        const rebuilding = index.isEmpty;
        void reconcile(index, storage, now).then(
          (r) => {
            const changed = Object.values(r).some((n) => n > 0);
            if (changed) log.info({ ...r, rebuild: rebuilding }, rebuilding ? 'metadata index rebuilt from storage' : 'metadata index reconciled with storage');
            if (!closed) lc.sweeper?.start();
            if (!closed && lc.admin) lc.warmer?.start();
          },
          (e: unknown) => log.error({ err: (e as Error).message }, 'metadata scan of storage failed; eviction disabled'),
        );
      };
      manage();
      if (meta.owner || !dir || opts.serveOnly) return;
      // Serving only: the holder may be gone without a trace (a crashed server in another container is seen
      // as gone only when its lock goes stale). Take the cache's lifecycle over then.
      let trying = false;
      takeOver = setInterval(() => {
        if (trying || closed) return;
        trying = true;
        void tryTakeOver(dir, log)
          .then(async (owned) => {
            if (!owned) return;
            if (closed) return owned.close();
            clearInterval(takeOver);
            const shared = meta;
            meta = owned;
            lc.index = owned.index;
            await shared.close();
            log.info('the process that managed this storage is gone: this one manages the cache now');
            manage();
          })
          .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'taking the metadata lock over failed'))
          .finally(() => (trying = false));
      }, LOCK_REFRESH_MS);
      takeOver.unref();
    },

    adminRoute(req, res, url) {
      return handleAdmin(lc.admin, gate, req, res, url, lc.bundles);
    },

    async close() {
      closed = true;
      clearInterval(takeOver);
      await lc.warmer?.stop();
      await lc.sweeper?.stop();
      await meta.close();
    },
  };
  return lc;
}
