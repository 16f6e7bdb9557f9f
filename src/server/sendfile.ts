import { read } from 'node:fs';
import type { ServerResponse } from 'node:http';

/** Read size while the budget is plentiful: large reads keep a fast client near disk speed. */
const CHUNK = 1024 * 1024;
/** Read size once the budget runs short (many concurrent responses): each one still makes progress. */
const SMALL_CHUNK = 64 * 1024;
/**
 * All file-backed responses together hold at most this many bytes of read buffers (in flight to sockets, or
 * pooled). 1,000 slow clients of large blobs then cost this much, not a megabyte or two each. Above
 * ~2,000 stalled clients (2 × SMALL_CHUNK each) new responses wait for buffers, in arrival order.
 */
const RESPONSE_BUFFER_BUDGET = 256 * 1024 * 1024;
/** Writes outstanding per response: one being sent while the next is read. */
const IN_FLIGHT = 2;
/** Pooled buffers are dropped after this long without blob traffic, so idle memory returns to baseline. */
const POOL_IDLE_MS = 2000;

/**
 * The read buffers of all file-backed responses: allocated up to RESPONSE_BUFFER_BUDGET bytes, then reused.
 * A buffer that comes back goes to the first response waiting for one, else to the pool; none is dropped while
 * traffic lasts. Dropping and reallocating them would leave garbage for V8 to collect later (with 1,000 slow
 * clients, gigabytes of it between collections); reusing them keeps serving free of garbage and memory within
 * the budget.
 */
class ResponseBuffers {
  /** Bytes allocated: in flight to sockets, or pooled. */
  private allocated = 0;
  private readonly pool = new Map<number, Buffer[]>([
    [CHUNK, []],
    [SMALL_CHUNK, []],
  ]);
  private readonly waiters: Array<(buf: Buffer) => void> = [];
  private lastUse = 0;
  private trimTimer: NodeJS.Timeout | undefined;
  /** Responses being sent now: with many, new buffers are small so that all of them fit in the budget. */
  active = 0;

  constructor(private readonly limit: number) {}

  async take(): Promise<Buffer> {
    const size = this.active * IN_FLIGHT * CHUNK <= this.limit / 2 ? CHUNK : SMALL_CHUNK;
    const pooled = this.pool.get(size)!.pop() ?? this.pool.get(size === CHUNK ? SMALL_CHUNK : CHUNK)!.pop();
    if (pooled) return pooled;
    for (const n of [size, SMALL_CHUNK]) {
      if (this.waiters.length === 0 && this.allocated + n <= this.limit) {
        this.allocated += n;
        return Buffer.allocUnsafeSlow(n);
      }
    }
    return new Promise<Buffer>((resolve) => this.waiters.push(resolve));
  }

  give(buf: Buffer): void {
    const waiter = this.waiters.shift();
    if (waiter) return waiter(buf);
    this.pool.get(buf.length)!.push(buf);
    this.lastUse = Date.now();
    this.trimTimer ??= setTimeout(() => this.trim(), POOL_IDLE_MS).unref();
  }

  /** A buffer that cannot be reused (a socket may still reference it after a write error). */
  lose(buf: Buffer): void {
    this.allocated -= buf.length;
    const waiter = this.waiters.shift();
    if (!waiter) return;
    this.allocated += SMALL_CHUNK;
    waiter(Buffer.allocUnsafeSlow(SMALL_CHUNK));
  }

  private trim(): void {
    this.trimTimer = undefined;
    const idle = Date.now() - this.lastUse;
    if (idle < POOL_IDLE_MS) {
      this.trimTimer = setTimeout(() => this.trim(), POOL_IDLE_MS - idle).unref();
      return;
    }
    for (const [, bufs] of this.pool) for (const b of bufs.splice(0)) this.allocated -= b.length;
  }
}

const buffers = new ResponseBuffers(RESPONSE_BUFFER_BUDGET);

function readAt(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buf, 0, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/**
 * Sends bytes [start, end] of an open file to the response with pooled buffers from the global budget,
 * double-buffered, and ends it. A buffer goes back only after the socket reported its write done. Returns body
 * bytes sent; throws when the file or the connection fails (the caller aborts the response).
 */
export async function sendFileRange(res: ServerResponse, fd: number, start: number, end: number): Promise<number> {
  const gone = new Error('client closed the connection');
  const closed = new Promise<never>((_, reject) => {
    if (res.destroyed) reject(gone);
    else res.once('close', () => reject(gone));
  });
  closed.catch(() => {});
  // The status goes out now, also when the budget makes this response wait for its first buffer.
  res.flushHeaders();
  buffers.active++;
  try {
    return await sendLoop(res, fd, start, end, closed, gone);
  } finally {
    buffers.active--;
  }
}

async function sendLoop(res: ServerResponse, fd: number, start: number, end: number, closed: Promise<never>, gone: Error): Promise<number> {
  let pos = start;
  const pending: Array<Promise<void>> = [];
  while (pos <= end) {
    if (res.destroyed) throw gone;
    const taking = buffers.take();
    // A client that leaves while waiting for a buffer: the one it is granted later goes straight back.
    const buf = await Promise.race([taking, closed]).catch((e: unknown) => {
      void taking.then((b) => buffers.give(b));
      throw e;
    });
    let n: number;
    try {
      n = await readAt(fd, buf, Math.min(buf.length, end - pos + 1), pos);
    } catch (e) {
      buffers.give(buf);
      throw e;
    }
    if (n === 0) {
      buffers.give(buf);
      throw new Error('file ended before the expected size');
    }
    pos += n;
    const written = new Promise<void>((resolve, reject) => {
      res.write(n === buf.length ? buf : buf.subarray(0, n), (err) => {
        // After an error the socket may still reference the buffer: leave it to the GC, but not the budget.
        if (err) {
          buffers.lose(buf);
          return reject(err);
        }
        buffers.give(buf);
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
