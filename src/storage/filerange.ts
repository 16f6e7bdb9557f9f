import { close, read } from 'node:fs';
import { Readable } from 'node:stream';

const CHUNK = 1024 * 1024;

/**
 * Bytes [start, end] of an open local file. Works as an ordinary Readable; a consumer that knows better
 * (the HTTP server's pooled-buffer sender) may instead read `fd` directly and then destroy the stream,
 * which closes the file.
 */
export class FileRangeStream extends Readable {
  private pos: number;

  constructor(
    readonly fd: number,
    readonly start: number,
    /** Inclusive. */
    readonly end: number,
  ) {
    super({ highWaterMark: CHUNK });
    this.pos = start;
  }

  override _read(): void {
    const len = Math.min(CHUNK, this.end - this.pos + 1);
    if (len <= 0) {
      this.push(null);
      return;
    }
    const buf = Buffer.allocUnsafe(len);
    read(this.fd, buf, 0, len, this.pos, (err, n) => {
      if (err) return this.destroy(err);
      if (n === 0) return this.destroy(new Error('file ended before the expected size'));
      this.pos += n;
      this.push(n === len ? buf : buf.subarray(0, n));
    });
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    close(this.fd, () => cb(err));
  }
}
