import { EventEmitter } from 'node:events';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { RegistryError } from '../errors.js';
import type { BlobWriter } from '../storage/blobstore.js';
import { WriteBehind } from './writebehind.js';

const READ_CHUNK = 1024 * 1024;

type State = 'running' | 'committed' | 'failed';

/**
 * One upstream blob fetch, shared by every client that asks for the blob while it runs.
 *
 * Bytes go upstream → temp file (hashed on the way); each client gets its own reader that follows the
 * temp file as it grows, so slow clients never hold memory and clients may join at any time. The last
 * byte is held back until the digest is verified and the blob committed: a client can never receive a
 * complete-looking body that failed verification — on failure its stream errors (connection aborted).
 */
export class Download extends EventEmitter {
  private state: State = 'running';
  private failure: Error | undefined;
  private readers = 0;
  private pumpDone = false;
  readonly finished: Promise<void>;

  private constructor(
    readonly digest: string,
    /** Total size when the upstream announced it. */
    readonly size: number | null,
    private readonly writer: BlobWriter,
    private readonly readFd: FileHandle,
  ) {
    super();
    this.setMaxListeners(0);
    this.finished = new Promise<void>((resolve, reject) => {
      this.once('committed', resolve);
      this.once('failed', reject);
    });
    this.finished.catch(() => {});
  }

  static async start(opts: {
    digest: string;
    size: number | null;
    body: AsyncIterable<Uint8Array> & { destroy?(err?: Error): void };
    writer: BlobWriter;
    onFinish?: (err: Error | undefined, bytes: number) => void;
  }): Promise<Download> {
    let readFd: FileHandle;
    try {
      readFd = await open(opts.writer.tempPath, 'r');
    } catch (e) {
      await opts.writer.abort();
      (opts.body as unknown as NodeJS.EventEmitter).on?.('error', () => {});
      opts.body.destroy?.();
      throw new RegistryError('STORAGE_ERROR', `cannot read back temp file (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e });
    }
    const dl = new Download(opts.digest, opts.size, opts.writer, readFd);
    void dl.pump(opts.body, opts.onFinish);
    return dl;
  }

  get bytesWritten(): number {
    return this.writer.bytesWritten;
  }

  get isRunning(): boolean {
    return this.state === 'running';
  }

  /**
   * Upstream → writer, then exactly one final state. Total: whatever throws on the way (the body, the writer's
   * write, commit or abort, the onFinish callback) ends in 'committed' or 'failed', never in a success report
   * for a failed blob, never left running (which would pin the digest in flight), never a rejected promise
   * nobody awaits.
   */
  private async pump(
    body: AsyncIterable<Uint8Array> & { destroy?(err?: Error): void },
    onFinish?: (err: Error | undefined, bytes: number) => void,
  ): Promise<void> {
    let failure: unknown;
    try {
      const out = new WriteBehind(this.writer, () => this.emit('change'));
      for await (const chunk of body) await out.push(chunk);
      await out.end();
      if (this.size !== null && this.writer.bytesWritten !== this.size) {
        throw new RegistryError('UPSTREAM_ERROR', `upstream sent ${this.writer.bytesWritten} of ${this.size} bytes`);
      }
      await this.writer.commit();
    } catch (e) {
      failure = e ?? new Error('unknown failure');
    }
    if (failure !== undefined) {
      try {
        body.destroy?.();
      } catch {
        // already destroyed
      }
      await this.writer.abort().catch(() => {});
      this.failure =
        failure instanceof RegistryError && failure.code !== 'DIGEST_INVALID'
          ? failure
          : new RegistryError('UPSTREAM_ERROR', `upstream blob fetch failed: ${(failure as Error).message}`, { cause: failure });
    }
    this.state = this.failure ? 'failed' : 'committed';
    this.pumpDone = true;
    try {
      onFinish?.(this.failure, this.writer.bytesWritten);
    } catch {
      // observers (metrics, index) must not change the outcome of a download
    }
    if (this.failure) this.emit('failed', this.failure);
    else this.emit('committed');
    this.emit('change');
    await this.maybeCloseFd();
  }

  private async maybeCloseFd(): Promise<void> {
    if (this.pumpDone && this.readers === 0) await this.readFd.close().catch(() => {});
  }

  /** A stream of bytes [start, end] (inclusive; end defaults to the last byte). */
  createReader(start = 0, end?: number): Readable {
    this.readers++;
    return new DownloadReader(this, start, end ?? (this.size !== null ? this.size - 1 : Infinity));
  }

  /** Bytes a reader may deliver now: all once committed; before that all but the last, held back until verified. */
  get available(): number {
    return this.state === 'committed' ? this.writer.bytesWritten : Math.max(0, this.writer.bytesWritten - 1);
  }

  get isCommitted(): boolean {
    return this.state === 'committed';
  }

  get error(): Error | undefined {
    return this.state === 'failed' ? this.failure : undefined;
  }

  read(buf: Buffer, len: number, pos: number): Promise<number> {
    return this.readFd.read(buf, 0, len, pos).then((r) => r.bytesRead);
  }

  readerClosed(): void {
    this.readers--;
    void this.maybeCloseFd();
  }
}

/**
 * One client's view of a Download: bytes [pos, last] of the temp file, delivered as they become available.
 * Invariants:
 * - until the blob is verified and committed, the final byte of this reader's range is held back (and the
 *   Download holds back the blob's final byte), so no client — ranged or not — receives all the bytes its
 *   response announced before they were verified; on failure it is destroyed with the download's error and
 *   the client sees an aborted body, never a complete one;
 * - it ends only after the commit;
 * - it waits for the Download's 'change' event only when it has nothing to deliver, and listens at most once.
 */
class DownloadReader extends Readable {
  private waiting = false;

  constructor(
    private readonly dl: Download,
    private pos: number,
    /** Inclusive. */
    private readonly last: number,
  ) {
    super({ highWaterMark: READ_CHUNK });
  }

  override _read(): void {
    void this.step();
  }

  private readonly wake = (): void => {
    if (!this.waiting) return;
    this.waiting = false;
    this.dl.off('change', this.wake);
    void this.step();
  };

  private async step(): Promise<void> {
    if (this.destroyed) return;
    const { dl } = this;
    if (dl.error) {
      this.destroy(dl.error);
      return;
    }
    const limit = Math.min(dl.available, dl.isCommitted ? this.last + 1 : this.last);
    if (this.pos < limit) {
      const len = Math.min(limit - this.pos, READ_CHUNK);
      const buf = Buffer.allocUnsafe(len);
      try {
        const n = await dl.read(buf, len, this.pos);
        if (this.destroyed) return;
        this.pos += n;
        this.push(n === len ? buf : buf.subarray(0, n));
      } catch (e) {
        this.destroy(e as Error);
      }
      return;
    }
    if (dl.isCommitted) {
      this.push(null);
      return;
    }
    this.waiting = true;
    dl.on('change', this.wake);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.dl.off('change', this.wake);
    this.dl.readerClosed();
    cb(err);
  }
}
