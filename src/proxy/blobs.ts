import type { Logger } from 'pino';
import type { Readable } from 'node:stream';
import type { StorageDriver, ByteRange } from '../storage/types.js';
import type { Upstream } from '../upstream/types.js';
import { Download } from './download.js';
import type { CacheResult, ProxyEvents } from './events.js';

export type BlobSource =
  | { kind: 'stored'; size: number; result: CacheResult; path?: string; open(range?: ByteRange): Promise<Readable> }
  | { kind: 'download'; size: number | null; result: CacheResult; open(range?: ByteRange): Readable };

/**
 * Blob cache policy: content-addressed and immutable, so a stored blob is always served as is; a miss
 * starts exactly one upstream fetch per digest, which every concurrent client shares (see Download).
 */
export class BlobCache {
  private readonly inflight = new Map<string, Promise<Download>>();

  constructor(
    private readonly storage: StorageDriver,
    private readonly logger: Logger,
    private readonly events: ProxyEvents,
  ) {}

  private async stored(digest: string, result: CacheResult): Promise<BlobSource | null> {
    const st = await this.storage.statBlob(digest);
    if (!st) return null;
    return {
      kind: 'stored',
      size: st.size,
      result,
      path: this.storage.localBlobPath?.(digest),
      open: (range) => this.storage.readBlob(digest, range),
    };
  }

  /** Size of a blob without reading it: from storage, an in-flight download, or an upstream HEAD. */
  async stat(upstream: Upstream, repo: string, digest: string): Promise<{ size: number; result: CacheResult }> {
    const st = await this.storage.statBlob(digest);
    if (st) return { size: st.size, result: 'hit' };
    const running = this.inflight.get(digest);
    if (running) {
      const dl = await running.catch(() => undefined);
      if (dl?.size != null) return { size: dl.size, result: 'coalesced' };
    }
    const head = await upstream.headBlob(repo, digest);
    return { size: head.size, result: 'miss' };
  }

  async get(upstream: Upstream, repo: string, digest: string): Promise<BlobSource> {
    const hit = await this.stored(digest, 'hit');
    if (hit) return hit;
    let result: CacheResult = 'coalesced';
    let pending = this.inflight.get(digest);
    if (!pending) {
      result = 'miss';
      pending = this.startDownload(upstream, repo, digest);
      this.inflight.set(digest, pending);
      pending.then(
        (dl) =>
          dl.finished.then(
            () => this.inflight.delete(digest),
            () => this.inflight.delete(digest),
          ),
        () => this.inflight.delete(digest),
      );
    } else {
      this.events.coalesced('blob');
    }
    const dl = await pending;
    if (!dl.isRunning) {
      // Finished between lookup and now: committed → serve from storage; failed → its error.
      await dl.finished;
      const s = await this.stored(digest, result);
      if (s) return s;
      return this.get(upstream, repo, digest);
    }
    return { kind: 'download', size: dl.size, result, open: (range) => dl.createReader(range?.start, range?.end) };
  }

  private async startDownload(upstream: Upstream, repo: string, digest: string): Promise<Download> {
    const resp = await upstream.getBlob(repo, digest);
    let writer;
    try {
      writer = await this.storage.createBlobWriter(digest);
    } catch (e) {
      resp.body.destroy();
      throw e;
    }
    this.events.downloadStarted(upstream.name);
    const started = Date.now();
    return Download.start({
      digest,
      size: resp.size,
      body: resp.body,
      writer,
      onFinish: (err, bytes) => {
        this.events.downloadFinished(upstream.name, bytes, err);
        if (err) this.logger.warn({ digest, repo, upstream: upstream.name, err: err.message }, 'blob download failed; nothing cached');
        else this.logger.debug({ digest, repo, bytes, ms: Date.now() - started }, 'blob cached');
      },
    });
  }

  /** Resolves when no download is running (graceful shutdown). */
  async drain(): Promise<void> {
    const all = [...this.inflight.values()];
    await Promise.allSettled(all.map(async (p) => (await p).finished));
  }
}
