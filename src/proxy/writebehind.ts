import type { BlobWriter } from '../storage/blobstore.js';

/** Largest single write: what arrives while a write is in flight is gathered up to this. */
const COALESCE_BYTES = 1024 * 1024;
/** A partly gathered block is written (and teed) after this long: an upstream that pauses does not hold bytes back. */
const FLUSH_MS = 5;

/**
 * Writes upstream chunks (tens of KiB each) to a blob writer in 1 MiB blocks without making the network wait
 * for the disk: chunks gather in one buffer while the other is being written (and hashed). A block is written
 * once full (and the rest by end()), so a 1 GiB blob costs ~1,000 writes and hash updates, not one per
 * network chunk (~16,000: each write is a thread-pool round trip that costs the main thread tens of µs).
 * Reading from the upstream only waits when a full buffer is queued behind a write. Two buffers per download,
 * reused — unless onBlock keeps a block: Download's tee hands each block to the clients that keep up with the
 * download (the same immutable buffer to all of them, so a client's socket gets 1 MiB writes, not one per
 * network chunk) and holds the latest few for clients that join; a kept block is never written into again.
 */
export class WriteBehind {
  private buf: Buffer = Buffer.allocUnsafeSlow(COALESCE_BYTES);
  private spare: Buffer | undefined;
  private fill = 0;
  /** Bytes handed to writes so far (the offset of the block being gathered). */
  private sealed = 0;
  private writing: Promise<void> | undefined;
  private failure: unknown;
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly writer: BlobWriter,
    /** After each write: more bytes are readable from the writer's temp file. */
    private readonly onWritten: () => void,
    /** Each block (blob bytes [start, start + block.length)) before it is written; true: the callee keeps it. */
    private readonly onBlock: (block: Buffer, start: number) => boolean = () => false,
  ) {}

  async push(chunk: Uint8Array): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      if (this.failure !== undefined) throw this.failure;
      if (this.fill === this.buf.length) {
        if (this.writing) await this.writing; // the buffer is full: wait for the write ahead of it, which then writes it
        else this.startWrite();
        continue;
      }
      const n = Math.min(chunk.length - off, this.buf.length - this.fill);
      this.buf.set(chunk.subarray(off, off + n), this.fill);
      this.fill += n;
      off += n;
    }
    if (!this.writing && this.fill === this.buf.length) this.startWrite();
    else this.flushSoon();
  }

  /** Writes a partial block FLUSH_MS from now unless it fills up first. */
  private flushSoon(): void {
    if (this.flushTimer || this.fill === 0 || this.failure !== undefined) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      if (!this.writing) this.startWrite(); // else the write's completion looks again
    }, FLUSH_MS);
    this.flushTimer.unref();
  }

  /** Writes what is gathered; resolves once every pushed byte is written; rejects with the first write failure. */
  async end(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    for (;;) {
      if (this.failure !== undefined) throw this.failure;
      if (this.writing) await this.writing;
      else if (this.fill > 0) this.startWrite();
      else return;
    }
  }

  /** After a failure elsewhere: nothing more is written. */
  stop(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.failure ??= new Error('stopped');
  }

  private startWrite(): void {
    if (this.fill === 0 || this.failure !== undefined) return;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const full = this.buf;
    const bytes = full.subarray(0, this.fill);
    this.buf = this.spare ?? Buffer.allocUnsafeSlow(COALESCE_BYTES);
    this.spare = undefined;
    const start = this.sealed;
    this.sealed += this.fill;
    this.fill = 0;
    const kept = this.onBlock(bytes, start);
    this.writing = this.writer.write(bytes).then(
      () => {
        if (!kept) this.spare = full;
        this.writing = undefined;
        this.onWritten();
        if (this.fill === this.buf.length) this.startWrite(); // a block gathered meanwhile
        else this.flushSoon();
      },
      (e: unknown) => {
        this.failure = e;
        this.writing = undefined;
      },
    );
  }
}
