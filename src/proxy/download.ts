import { EventEmitter } from 'node:events';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { RegistryError } from '../errors.js';
import type { BlobWriter } from '../storage/blobstore.js';
import { WriteBehind } from './writebehind.js';

const READ_CHUNK = 1024 * 1024;
/**
 * The tee keeps the most recent blocks up to this many bytes (references, not copies), so that a
 * reader that opens a moment after the download started (the first client's own request: the download starts
 * before its reader exists) or that catches up from the temp file joins the tee without a gap.
 */
const TEE_BACKLOG = 4 * 1024 * 1024;
/** A teed reader whose client has not taken this many bytes falls back to following the temp file. */
const TEE_MAX_LAG = 8 * 1024 * 1024;

type State = 'running' | 'committed' | 'failed';

/**
 * One upstream blob fetch, shared by every client that asks for the blob while it runs.
 *
 * Bytes go upstream → 1 MiB blocks → temp file (hashed on the way). Each client gets its own reader. A
 * reader that keeps up with the download is fed each block as it is gathered, before it is written (the tee:
 * the same immutable buffer for every reader, no copy, no read back); one that joins late or falls more than
 * TEE_MAX_LAG behind follows the temp file as it grows instead, so slow clients never hold more than that
 * and clients may join at any time. The last byte is held back until the digest is verified and the blob
 * committed (a teed reader takes it from the file then): a client can never receive a complete-looking body
 * that failed verification — on failure its stream errors (connection aborted).
 */
export class Download extends EventEmitter {
  private state: State = 'running';
  private failure: Error | undefined;
  private readers = 0;
  private pumpDone = false;
  /** Bytes teed so far (received from the upstream and gathered into blocks; the temp file may lag behind). */
  private received = 0;
  /** The latest blocks, oldest first, at most ~TEE_BACKLOG bytes; empty when there is no tee. */
  private backlog: Array<{ buf: Buffer; start: number }> = [];
  private backlogBytes = 0;
  /** Readers fed from the blocks in memory. */
  private readonly teed = new Set<DownloadReader>();
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
    let out: WriteBehind | undefined;
    try {
      out = new WriteBehind(
        this.writer,
        () => this.emit('change'),
        (block, start) => this.tee(block, start),
      );
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
      out?.stop();
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
    this.backlog = [];
    this.backlogBytes = 0;
    const teed = [...this.teed];
    this.teed.clear();
    if (this.failure) this.emit('failed', this.failure);
    else this.emit('committed');
    for (const r of teed) r.untee();
    this.emit('change');
    await this.maybeCloseFd();
  }

  /**
   * Hands a block of received bytes (blob bytes [start, start + chunk.length)) to the teed readers and keeps it
   * in the backlog. Without a known size: no tee. True: the block is kept (WriteBehind must not reuse it).
   */
  private tee(chunk: Buffer, start: number): boolean {
    this.received = start + chunk.length;
    if (this.size === null || this.state !== 'running') return false;
    this.backlog.push({ buf: chunk, start });
    this.backlogBytes += chunk.length;
    while (this.backlog.length > 1 && this.backlogBytes - this.backlog[0]!.buf.length >= TEE_BACKLOG) {
      this.backlogBytes -= this.backlog.shift()!.buf.length;
    }
    for (const r of this.teed) r.feed(chunk, start);
    return true;
  }

  /**
   * Feeds the reader from the blocks in memory from its position on, when the backlog still holds that position
   * and the reader needs more than its final byte (which only the committed file gives). False: it follows the file.
   */
  attach(reader: DownloadReader, pos: number, last: number): boolean {
    if (this.state !== 'running' || this.size === null || pos >= last) return false;
    const from = this.backlog[0]?.start ?? this.received;
    if (pos < from || pos > this.received) return false;
    this.teed.add(reader);
    for (const c of this.backlog) if (c.start + c.buf.length > pos && this.teed.has(reader)) reader.feed(c.buf, c.start);
    return true;
  }

  detach(reader: DownloadReader): void {
    this.teed.delete(reader);
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
 * One client's view of a Download: bytes [pos, last] of the blob, delivered as they become available: from the
 * blocks in memory while it keeps up (teed), else from the temp file. Invariants:
 * - until the blob is verified and committed, the final byte of this reader's range is held back (and the
 *   Download holds back the blob's final byte), so no client — ranged or not — receives all the bytes its
 *   response announced before they were verified; on failure it is destroyed with the download's error and
 *   the client sees an aborted body, never a complete one;
 * - it ends only after the commit;
 * - it waits for the Download's 'change' event only when it has nothing to deliver, and listens at most once.
 */
class DownloadReader extends Readable {
  private waiting = false;
  /** Fed by the Download's tee (see feed), not reading the file. */
  private teed = false;
  /** _read was called and nothing was pushed since. */
  private wanted = false;

  constructor(
    private readonly dl: Download,
    private pos: number,
    /** Inclusive. */
    private readonly last: number,
  ) {
    super({ highWaterMark: READ_CHUNK });
  }

  override _read(): void {
    this.wanted = true;
    if (!this.teed) void this.step();
  }

  /**
   * A block (bytes [start, start + chunk.length) of the blob), while teed: pushes the part this reader
   * needs, never the final byte of its range. Leaves the tee once only that final byte is missing (the file
   * has it after the commit) or when its client lags more than TEE_MAX_LAG behind.
   */
  feed(chunk: Buffer, start: number): void {
    if (this.destroyed) return;
    const end = Math.min(start + chunk.length, this.last);
    if (start > this.pos) return this.leaveTee(); // a gap: cannot happen; the file has every byte
    if (end > this.pos) {
      const part = chunk.subarray(this.pos - start, end - start);
      this.pos = end;
      this.wanted = false;
      this.push(part);
    }
    if (this.pos >= this.last || this.readableLength > TEE_MAX_LAG) this.leaveTee();
  }

  /** The download finished: a teed reader goes on from the file (its final byte; or the error). */
  untee(): void {
    this.teed = false;
    const { error } = this.dl;
    if (error) this.destroy(error);
    else if (this.wanted) void this.step();
  }

  private leaveTee(): void {
    if (!this.teed) return;
    this.dl.detach(this);
    this.untee();
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
    if (this.teed) return;
    this.teed = true; // before attach: it may feed the backlog (and leave the tee) at once
    if (dl.attach(this, this.pos, this.last)) return;
    this.teed = false;
    const limit = Math.min(dl.available, dl.isCommitted ? this.last + 1 : this.last);
    if (this.pos < limit) {
      const len = Math.min(limit - this.pos, READ_CHUNK);
      const buf = Buffer.allocUnsafe(len);
      try {
        const n = await dl.read(buf, len, this.pos);
        if (this.destroyed) return;
        this.pos += n;
        this.wanted = false;
        this.push(n === len ? buf : buf.subarray(0, n));
      } catch (e) {
        this.destroy(e as Error);
      }
      return;
    }
    if (dl.isCommitted) {
      this.wanted = false;
      this.push(null);
      return;
    }
    this.waiting = true;
    dl.on('change', this.wake);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.teed = false;
    this.dl.detach(this);
    this.dl.off('change', this.wake);
    this.dl.readerClosed();
    cb(err);
  }
}
