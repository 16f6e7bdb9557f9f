import type { Logger } from 'pino';
import type { Readable } from 'node:stream';
import { RegistryError } from '../errors.js';
import type { ByteRange, CacheResult, Coordinator, ProxyEvents } from '../seams.js';
import type { BlobStore } from '../storage/blobstore.js';
import type { Upstream } from '../upstream/types.js';
import { Download } from './download.js';
import { BlobScopes } from './scope.js';
import { NegativeCache } from './negative.js';

/** A read-only view of one upstream blob fetch in progress (the dashboard, /debug/vars). */
export interface DownloadSnapshot {
  digest: string;
  upstream: string;
  repo: string;
  /** Announced size; null when the upstream sent none. */
  size: number | null;
  bytes: number;
  startedAt: number;
  /** Client streams reading the blob now (the first requester and those that joined). */
  clients: number;
}

export type BlobSource =
  | { kind: 'stored'; size: number; result: CacheResult; open(range?: ByteRange): Promise<Readable> }
  | { kind: 'download'; size: number | null; result: CacheResult; open(range?: ByteRange): Readable };

/** A fetch lease outlives a crashed replica by at most this long. */
const LEASE_TTL_MS = 15_000;
/** How long a replica waits for another's lease before looking at storage and trying again. */
const WAIT_SLICE_MS = 5_000;

/**
 * Blob cache policy: content-addressed and immutable, so a stored blob is always served as is; a miss
 * starts exactly one upstream fetch per digest, which every concurrent client shares (see Download).
 * With a Coordinator (several replicas over one storage), a replica fetches only while it holds the digest's
 * lease; the others wait for it to be released and then serve the committed blob from storage.
 */
export class BlobCache {
  /** null: another replica committed the blob while we waited; read it from storage. */
  private readonly inflight = new Map<string, Promise<Download | null>>();
  private coordinator: Coordinator | undefined;
  /** Open client streams per digest. */
  private readonly serving = new Map<string, number>();
  /** Downloads this process runs, for downloads(). */
  private readonly running = new Map<string, { upstream: string; repo: string; startedAt: number; dl: Download }>();

  constructor(
    private readonly storage: BlobStore,
    private readonly logger: Logger,
    private readonly events: ProxyEvents,
    private readonly scopes: BlobScopes = new BlobScopes(),
    private readonly negative: NegativeCache = new NegativeCache(0),
  ) {}

  /**
   * A blob we hold (stored or in flight) is served for upstream/repo only when that repository is known to
   * reference it; otherwise the upstream is asked (a HEAD with its credentials) and its error, if any, is the
   * answer — exactly as for a blob we do not hold.
   */
  private async ensureScoped(upstream: Upstream, repo: string, digest: string): Promise<void> {
    if (this.scopes.knows(upstream.name, repo, digest)) return;
    await this.headUpstream(upstream, repo, digest);
    this.scopes.confirm(upstream.name, repo, digest);
  }

  /** Cross-replica coordination of upstream fetches (redis); undefined: this process alone. */
  setCoordinator(coordinator: Coordinator | undefined): void {
    this.coordinator = coordinator;
  }

  private async stored(digest: string, result: CacheResult): Promise<BlobSource | null> {
    const st = await this.storage.statBlob(digest);
    if (!st) return null;
    return {
      kind: 'stored',
      size: st.size,
      result,
      open: (range) => this.storage.readBlob(digest, range),
    };
  }

  /** Size of a blob without reading it: from storage, an in-flight download, or an upstream HEAD. */
  async stat(upstream: Upstream, repo: string, digest: string): Promise<{ size: number; result: CacheResult }> {
    const st = await this.storage.statBlob(digest);
    if (st) {
      await this.ensureScoped(upstream, repo, digest);
      return { size: st.size, result: 'hit' };
    }
    const running = this.inflight.get(digest);
    if (running) {
      const dl = await running.catch(() => undefined);
      if (dl?.size != null) {
        await this.ensureScoped(upstream, repo, digest);
        return { size: dl.size, result: 'coalesced' };
      }
    }
    const head = await this.headUpstream(upstream, repo, digest);
    this.scopes.confirm(upstream.name, repo, digest);
    return { size: head.size, result: 'miss' };
  }

  private headUpstream(upstream: Upstream, repo: string, digest: string): Promise<{ size: number }> {
    return this.negative.run(`${upstream.name}/${repo}@${digest}`, () => upstream.headBlob(repo, digest));
  }

  /** True while the blob is being fetched or served: the lifecycle sweeper leaves it alone. */
  isBusy(digest: string): boolean {
    return this.inflight.has(digest) || (this.serving.get(digest) ?? 0) > 0;
  }

  private track<T extends Readable>(digest: string, stream: T): T {
    this.serving.set(digest, (this.serving.get(digest) ?? 0) + 1);
    stream.once('close', () => {
      const n = (this.serving.get(digest) ?? 1) - 1;
      if (n > 0) this.serving.set(digest, n);
      else this.serving.delete(digest);
    });
    return stream;
  }

  async get(upstream: Upstream, repo: string, digest: string): Promise<BlobSource> {
    const src = await this.lookup(upstream, repo, digest);
    this.events.blobServed(upstream.name, repo, digest, src.result);
    if (src.kind === 'download') {
      const open = src.open;
      return { ...src, open: (range) => this.track(digest, open(range)) };
    }
    const open = src.open;
    return {
      ...src,
      open: async (range) => {
        let stream: Readable;
        try {
          stream = await open(range);
        } catch (e) {
          if (!(e instanceof RegistryError) || e.code !== 'BLOB_UNKNOWN') throw e;
          // Evicted between lookup and open: fetch it again, transparently.
          stream = await (await this.lookup(upstream, repo, digest)).open(range);
        }
        return this.track(digest, stream);
      },
    };
  }

  private async lookup(upstream: Upstream, repo: string, digest: string): Promise<BlobSource> {
    const hit = await this.stored(digest, 'hit');
    if (hit) {
      await this.ensureScoped(upstream, repo, digest);
      return hit;
    }
    let result: CacheResult = 'coalesced';
    let pending = this.inflight.get(digest);
    if (pending) {
      await this.ensureScoped(upstream, repo, digest);
      this.events.coalesced('blob');
    } else {
      result = 'miss';
      pending = this.coordinator
        ? this.fetchCoordinated(upstream, repo, digest, this.coordinator)
        : this.startDownload(upstream, repo, digest);
      this.inflight.set(digest, pending);
      const done = (): boolean => this.inflight.delete(digest);
      pending.then((dl) => (dl ? dl.finished.then(done, done) : done()), done);
    }
    const dl = await pending;
    if (!dl || !dl.isRunning) {
      // Finished between lookup and now (or by another replica): committed → serve from storage; failed → its error.
      await dl?.finished;
      const s = await this.stored(digest, dl ? result : 'coalesced');
      if (s) return s;
      return this.lookup(upstream, repo, digest);
    }
    return { kind: 'download', size: dl.size, result, open: (range) => dl.createReader(range?.start, range?.end) };
  }

  /**
   * Fetches the blob once across replicas: holds `blob:<digest>` while downloading (released after commit or
   * failure; a crashed holder's lease expires), or waits for the holder and then takes the committed blob
   * from storage — or the lease, if the holder failed.
   */
  private async fetchCoordinated(
    upstream: Upstream,
    repo: string,
    digest: string,
    coordinator: Coordinator,
  ): Promise<Download | null> {
    const key = `blob:${digest}`;
    for (let waited = false; ; waited = true) {
      const lease = await coordinator.tryAcquire(key, LEASE_TTL_MS);
      if (lease) {
        let dl: Download | null = null;
        try {
          // Another replica may have committed it between our storage miss and the lease.
          if (!(await this.storage.statBlob(digest))) dl = await this.startDownload(upstream, repo, digest);
        } finally {
          if (dl) void dl.finished.then(() => lease.release(), () => lease.release());
          else await lease.release();
        }
        return dl;
      }
      if (!waited) {
        this.events.coalesced('blob');
        this.logger.debug({ digest, repo }, 'blob is being fetched by another replica; waiting');
      }
      await coordinator.waitReleased(key, WAIT_SLICE_MS);
      if (await this.storage.statBlob(digest)) return null;
    }
  }

  private async startDownload(upstream: Upstream, repo: string, digest: string): Promise<Download> {
    const resp = await this.negative.run(`${upstream.name}/${repo}@${digest}`, () => upstream.getBlob(repo, digest));
    this.scopes.confirm(upstream.name, repo, digest);
    let writer;
    try {
      writer = await this.storage.createBlobWriter(digest);
    } catch (e) {
      // destroying an unread undici body emits an abort error: without a listener it would crash the process
      resp.body.on('error', () => {});
      resp.body.destroy();
      throw e;
    }
    this.events.downloadStarted(upstream.name);
    const started = Date.now();
    const dl = await Download.start({
      digest,
      size: resp.size,
      body: resp.body,
      writer,
      onFinish: (err, bytes) => {
        this.events.downloadFinished(upstream.name, bytes, err);
        if (!err) this.events.blobFetched(upstream.name, repo, digest, bytes);
        if (err) this.logger.warn({ digest, repo, upstream: upstream.name, err: err.message }, 'blob download failed; nothing cached');
        else this.logger.debug({ digest, repo, bytes, ms: Date.now() - started }, 'blob cached');
      },
    });
    this.running.set(digest, { upstream: upstream.name, repo, startedAt: started, dl });
    const forget = (): boolean => this.running.delete(digest);
    dl.finished.then(forget, forget);
    return dl;
  }

  /** The downloads running now, each with its progress and how many clients read it. */
  downloads(): DownloadSnapshot[] {
    return [...this.running].map(([digest, r]) => ({
      digest,
      upstream: r.upstream,
      repo: r.repo,
      size: r.dl.size,
      bytes: r.dl.bytesWritten,
      startedAt: r.startedAt,
      clients: this.serving.get(digest) ?? 0,
    }));
  }

  /** Resolves when no download is running (graceful shutdown). */
  async drain(): Promise<void> {
    const all = [...this.inflight.values()];
    await Promise.allSettled(all.map(async (p) => (await p)?.finished));
  }
}
