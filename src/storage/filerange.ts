import { close, read } from 'node:fs';
import { Readable } from 'node:stream';
import type { FileRegion } from '../seams.js';

const CHUNK = 1024 * 1024;

/**
 * Bytes [start, end] of an open local file. Works as an ordinary Readable; it also exposes its `fileRegion`
 * capability, so the HTTP writer may instead send from the fd directly with pooled buffers and then destroy
 * the stream, which closes the file.
 */
export class FileRangeStream extends Readable {
  private pos: number;
  readonly fileRegion: FileRegion;

  constructor(fd: number, start: number, end: number) {
    super({ highWaterMark: CHUNK });
    this.pos = start;
    this.fileRegion = { fd, start, end };
  }

  override _read(): void {
    const { fd, end } = this.fileRegion;
    const len = Math.min(CHUNK, end - this.pos + 1);
    if (len <= 0) {
      this.push(null);
      return;
    }
    const buf = Buffer.allocUnsafe(len);
    read(fd, buf, 0, len, this.pos, (err, n) => {
      if (err) return this.destroy(err);
      if (n === 0) return this.destroy(new Error('file ended before the expected size'));
      this.pos += n;
      this.push(n === len ? buf : buf.subarray(0, n));
    });
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    close(this.fileRegion.fd, () => cb(err));
  }
}
