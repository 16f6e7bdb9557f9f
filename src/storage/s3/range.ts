import { Readable, Transform } from 'node:stream';
import type { ByteRange } from '../../seams.js';

/**
 * The bytes of `range` out of a ranged GetObject answer, whatever the server made of the Range header.
 * S3-compatible servers differ: AWS and moto answer exactly; s3rver reads `bytes=0-0` as "from 0 to the end"
 * (206 with the whole object); a server may also ignore Range altogether (200, whole object). The answer's
 * Content-Range tells where its body starts: the body is cut to exactly the requested bytes.
 */
export function exactRange(body: Readable, range: ByteRange, contentRange: string | undefined): Readable {
  const want = range.end - range.start + 1;
  const m = contentRange ? /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange.trim()) : null;
  // No Content-Range: the whole object, from byte 0.
  const bodyStart = m ? Number(m[1]) : 0;
  const bodyEnd = m ? Number(m[2]) : undefined;
  if (bodyStart === range.start && bodyEnd === range.end) return body;
  let skip = range.start - bodyStart;
  if (skip < 0) {
    body.destroy();
    throw new Error(`server answered bytes ${bodyStart}- for a request of bytes ${range.start}-${range.end}`);
  }
  let left = want;
  const cut = new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (left === 0) return done();
      if (skip >= chunk.length) {
        skip -= chunk.length;
        return done();
      }
      const part = chunk.subarray(skip, skip + left);
      skip = 0;
      left -= part.length;
      if (part.length > 0) this.push(part);
      if (left === 0) {
        // The rest is not needed: end here and stop reading the server's answer.
        this.push(null);
        body.unpipe(cut);
        body.destroy();
      }
      done();
    },
  });
  body.on('error', (e) => cut.destroy(e));
  cut.on('close', () => body.destroy());
  return body.pipe(cut);
}
