import type { Readable } from 'node:stream';

export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`body larger than ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

/**
 * Reads a whole body, refusing more than `limit` bytes (checked against Content-Length first, then
 * counted while reading); the stream is destroyed when refused.
 */
export async function readLimited(body: Readable, limit: number, contentLength: number | null): Promise<Buffer> {
  if (contentLength !== null && contentLength > limit) {
    body.destroy();
    throw new BodyTooLargeError(limit);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    total += b.length;
    if (total > limit) {
      body.destroy();
      throw new BodyTooLargeError(limit);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks, total);
}

/** Content-Length as a number; null when absent or malformed. */
export function parseContentLength(v: string | undefined): number | null {
  if (v === undefined || !/^\d+$/.test(v.trim())) return null;
  return Number(v.trim());
}
