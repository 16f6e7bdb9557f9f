// sha256 digests in the registry's `sha256:<hex>` form, of bytes, streams and files.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** `sha256:<hex>` of a buffer or string. */
export const sha256 = (data: Buffer | string): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** `sha256:<hex>` and length of everything a stream (or any iterable of Buffer chunks) yields. */
export async function streamDigest(body: AsyncIterable<unknown>): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of body) {
    h.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

/** `sha256:<hex>` of a file's contents, read as a stream. */
export async function fileDigest(path: string): Promise<string> {
  return (await streamDigest(createReadStream(path))).digest;
}
