import { read } from 'node:fs';
import type { ServerResponse } from 'node:http';

const CHUNK = 1024 * 1024;
/** Buffers kept for reuse (8 concurrent downloads' worth); beyond that they are allocated. */
const POOL_MAX = 16;
/** The pool is dropped after this long without blob traffic, so idle memory returns to baseline. */
const POOL_IDLE_MS = 2000;
/** Writes outstanding per response: one being sent while the next is read. */
const IN_FLIGHT = 2;

/**
 * Reusable read buffers. Allocating a fresh 1 MiB Buffer per chunk makes V8 run a full collection every
 * few dozen MiB served; reusing them keeps warm blob serving free of garbage.
 */
const pool: Buffer[] = [];
let lastUse = 0;
let trimTimer: NodeJS.Timeout | undefined;

function release(buf: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(buf);
  lastUse = Date.now();
  trimTimer ??= setTimeout(trim, POOL_IDLE_MS).unref();
}

function trim(): void {
  trimTimer = undefined;
  const idle = Date.now() - lastUse;
  if (idle >= POOL_IDLE_MS) pool.length = 0;
  else trimTimer = setTimeout(trim, POOL_IDLE_MS - idle).unref();
}

function readAt(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buf, 0, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/**
 * Sends bytes [start, end] of an open file to the response with pooled buffers, double-buffered, and ends
 * it. A buffer goes back to the pool only after the socket reported its write done. Returns body bytes
 * sent; throws when the file or the connection fails (the caller aborts the response).
 */
export async function sendFileRange(res: ServerResponse, fd: number, start: number, end: number): Promise<number> {
  const gone = new Error('client closed the connection');
  const closed = new Promise<never>((_, reject) => {
    if (res.destroyed) reject(gone);
    else res.once('close', () => reject(gone));
  });
  closed.catch(() => {});
  let pos = start;
  const pending: Array<Promise<void>> = [];
  while (pos <= end) {
    if (res.destroyed) throw gone;
    const buf = pool.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
    const n = await readAt(fd, buf, Math.min(CHUNK, end - pos + 1), pos);
    if (n === 0) throw new Error('file ended before the expected size');
    pos += n;
    const written = new Promise<void>((resolve, reject) => {
      res.write(n === CHUNK ? buf : buf.subarray(0, n), (err) => {
        // After an error the socket may still reference the buffer: leave it to the GC.
        if (err) return reject(err);
        release(buf);
        resolve();
      });
    });
    written.catch(() => {});
    pending.push(written);
    if (pending.length >= IN_FLIGHT) await Promise.race([pending.shift()!, closed]);
  }
  await Promise.race([Promise.all(pending), closed]);
  if (res.destroyed) throw gone;
  res.end();
  return pos - start;
}
