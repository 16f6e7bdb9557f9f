import type { BlobWriter } from '../storage/blobstore.js';

/** Largest single write: what arrives while a write is in flight is gathered up to this. */
const COALESCE_BYTES = 1024 * 1024;

/**
 * Writes upstream chunks (tens of KiB each) to a blob writer without making the network wait for the disk:
 * a chunk is written at once when no write is in flight; otherwise chunks gather in a buffer (up to 1 MiB)
 * that is written as soon as the current write completes. Reading from the upstream only waits when a full
 * buffer is queued behind a write. Two buffers per download, reused.
 */
export class WriteBehind {
  private buf: Buffer = Buffer.allocUnsafeSlow(COALESCE_BYTES);
  private spare: Buffer | undefined;
  private fill = 0;
  private writing: Promise<void> | undefined;
  private failure: unknown;

  constructor(
    private readonly writer: BlobWriter,
    /** After each write: more bytes are readable from the writer's temp file. */
    private readonly onWritten: () => void,
  ) {}

  async push(chunk: Uint8Array): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      if (this.failure !== undefined) throw this.failure;
      if (this.fill === this.buf.length) {
        await this.writing; // the buffer is full: wait for the write ahead of it, which then writes it
        continue;
      }
      const n = Math.min(chunk.length - off, this.buf.length - this.fill);
      this.buf.set(chunk.subarray(off, off + n), this.fill);
      this.fill += n;
      off += n;
    }
    if (!this.writing) this.startWrite();
  }

  /** Resolves once every pushed byte is written; rejects with the first write failure. */
  async end(): Promise<void> {
    while (this.writing) await this.writing;
    if (this.failure !== undefined) throw this.failure;
  }

  private startWrite(): void {
    if (this.fill === 0 || this.failure !== undefined) return;
    const full = this.buf;
    const bytes = full.subarray(0, this.fill);
    this.buf = this.spare ?? Buffer.allocUnsafeSlow(COALESCE_BYTES);
    this.spare = undefined;
    this.fill = 0;
    this.writing = this.writer.write(bytes).then(
      () => {
        this.spare = full;
        this.writing = undefined;
        this.onWritten();
        this.startWrite(); // what gathered meanwhile
      },
      (e: unknown) => {
        this.failure = e;
        this.writing = undefined;
      },
    );
  }
}
