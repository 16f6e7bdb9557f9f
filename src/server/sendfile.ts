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
/** The pools are dropped after this long without blob traffic, so idle memory returns to baseline. */
const POOL_IDLE_MS = 2000;
/** Buffers kept for reuse per size (8 concurrent fast downloads' worth of large ones). */
const POOL_MAX = 16;

/** Bytes of response buffers handed out (in flight or pooled), against RESPONSE_BUFFER_BUDGET; FIFO waiters. */
class ByteBudget {
  used = 0;
  private readonly waiters: Array<{ n: number; resolve: () => void }> = [];

  constructor(readonly limit: number) {}

  available(): number {
    return this.limit - this.used;
  }

  get hasWaiters(): boolean {
    return this.waiters.length > 0;
  }

  async acquire(n: number): Promise<void> {
    if (this.waiters.length === 0 && this.used + n <= this.limit) {
      this.used += n;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push({ n, resolve }));
  }

  release(n: number): void {
    this.used -= n;
    while (this.waiters.length > 0 && this.used + this.waiters[0]!.n <= this.limit) {
      const w = this.waiters.shift()!;
      this.used += w.n;
      w.resolve();
    }
  }
}

const budget = new ByteBudget(RESPONSE_BUFFER_BUDGET);

/**
 * Reusable read buffers of the two sizes, counted in the budget while pooled. Allocating a fresh 1 MiB Buffer
 * per chunk makes V8 run a full collection every few dozen MiB served; reusing them keeps warm blob serving
 * free of garbage.
 */
const pools = new Map<number, Buffer[]>([
  [CHUNK, []],
  [SMALL_CHUNK, []],
]);
let lastUse = 0;
/** Responses being sent now: with many, each gets small reads so that all of them fit in the budget. */
let active = 0;
let trimTimer: NodeJS.Timeout | undefined;

async function takeBuffer(): Promise<Buffer> {
  for (const [, pool] of pools) {
    const b = pool.pop();
    if (b) return b; // already counted in the budget
  }
  const size = active * IN_FLIGHT * CHUNK <= budget.limit / 2 ? CHUNK : SMALL_CHUNK;
  await budget.acquire(size);
  return Buffer.allocUnsafeSlow(size);
}

function giveBack(buf: Buffer): void {
  const pool = pools.get(buf.length)!;
  if (pool.length < POOL_MAX && !budget.hasWaiters) pool.push(buf);
  else budget.release(buf.length);
  lastUse = Date.now();
  trimTimer ??= setTimeout(trim, POOL_IDLE_MS).unref();
}

function trim(): void {
  trimTimer = undefined;
  const idle = Date.now() - lastUse;
  if (idle < POOL_IDLE_MS) {
    trimTimer = setTimeout(trim, POOL_IDLE_MS - idle).unref();
    return;
  }
  for (const [, pool] of pools) for (const b of pool.splice(0)) budget.release(b.length);
}

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
  active++;
  try {
    return await sendLoop(res, fd, start, end, closed, gone);
  } finally {
    active--;
  }
}

async function sendLoop(res: ServerResponse, fd: number, start: number, end: number, closed: Promise<never>, gone: Error): Promise<number> {
  let pos = start;
  const pending: Array<Promise<void>> = [];
  while (pos <= end) {
    if (res.destroyed) throw gone;
    const taking = takeBuffer();
    // A client that leaves while waiting for the budget: the buffer it is granted later goes straight back.
    const buf = await Promise.race([taking, closed]).catch((e: unknown) => {
      void taking.then(giveBack);
      throw e;
    });
    let n: number;
    try {
      n = await readAt(fd, buf, Math.min(buf.length, end - pos + 1), pos);
    } catch (e) {
      giveBack(buf);
      throw e;
    }
    if (n === 0) {
      giveBack(buf);
      throw new Error('file ended before the expected size');
    }
    pos += n;
    const written = new Promise<void>((resolve, reject) => {
      res.write(n === buf.length ? buf : buf.subarray(0, n), (err) => {
        // After an error the socket may still reference the buffer: leave it to the GC, but not the budget.
        if (err) {
          budget.release(buf.length);
          return reject(err);
        }
        giveBack(buf);
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
