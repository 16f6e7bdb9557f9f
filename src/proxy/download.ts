import { EventEmitter } from 'node:events';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { RegistryError } from '../errors.js';
import type { BlobWriter } from '../storage/types.js';

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

  private async pump(
    body: AsyncIterable<Uint8Array> & { destroy?(err?: Error): void },
    onFinish?: (err: Error | undefined, bytes: number) => void,
  ): Promise<void> {
    try {
      for await (const chunk of body) {
        await this.writer.write(chunk);
        this.emit('progress');
      }
      if (this.size !== null && this.writer.bytesWritten !== this.size) {
        throw new RegistryError('UPSTREAM_ERROR', `upstream sent ${this.writer.bytesWritten} of ${this.size} bytes`);
      }
      await this.writer.commit();
      this.state = 'committed';
      this.emit('committed');
    } catch (e) {
      body.destroy?.();
      await this.writer.abort();
      const err =
        e instanceof RegistryError && e.code !== 'DIGEST_INVALID'
          ? e
          : new RegistryError('UPSTREAM_ERROR', `upstream blob fetch failed: ${(e as Error).message}`, { cause: e });
      this.failure = err;
      this.state = 'failed';
      this.emit('failed', err);
    } finally {
      this.pumpDone = true;
      onFinish?.(this.failure, this.writer.bytesWritten);
      await this.maybeCloseFd();
    }
  }

  private async maybeCloseFd(): Promise<void> {
    if (this.pumpDone && this.readers === 0) await this.readFd.close().catch(() => {});
  }

  /** A stream of bytes [start, end] (inclusive; end defaults to the last byte). */
  createReader(start = 0, end?: number): Readable {
    this.readers++;
    let pos = start;
    const last = end ?? (this.size !== null ? this.size - 1 : Infinity);
    let waiting = false;
    const dl = this;
    const available = (): number => {
      if (dl.state === 'committed') return dl.writer.bytesWritten;
      // Hold back the final byte until the digest is verified.
      return Math.max(0, dl.writer.bytesWritten - 1);
    };
    const stream = new Readable({
      highWaterMark: READ_CHUNK,
      read() {
        void step();
      },
      destroy(err, cb) {
        dl.off('progress', wake);
        dl.off('committed', wake);
        dl.off('failed', wake);
        dl.readers--;
        void dl.maybeCloseFd();
        cb(err);
      },
    });
    const wake = (): void => {
      if (!waiting) return;
      waiting = false;
      dl.off('progress', wake);
      dl.off('committed', wake);
      dl.off('failed', wake);
      void step();
    };
    const step = async (): Promise<void> => {
      if (stream.destroyed) return;
      if (dl.state === 'failed') {
        stream.destroy(dl.failure);
        return;
      }
      const limit = Math.min(available(), last + 1);
      if (pos < limit) {
        const len = Math.min(limit - pos, READ_CHUNK);
        const buf = Buffer.allocUnsafe(len);
        try {
          const { bytesRead } = await dl.readFd.read(buf, 0, len, pos);
          if (stream.destroyed) return;
          pos += bytesRead;
          stream.push(bytesRead === len ? buf : buf.subarray(0, bytesRead));
        } catch (e) {
          stream.destroy(e as Error);
        }
        return;
      }
      if (dl.state === 'committed' || pos > last) {
        stream.push(null);
        return;
      }
      waiting = true;
      dl.on('progress', wake);
      dl.on('committed', wake);
      dl.on('failed', wake);
    };
    return stream;
  }
}
