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

  /** A buffer; waits for one when the budget is spent. Rejects with the signal's reason if it aborts meanwhile. */
  async take(signal: AbortSignal): Promise<Buffer> {
    signal.throwIfAborted();
    const size = this.active * IN_FLIGHT * CHUNK <= this.limit / 2 ? CHUNK : SMALL_CHUNK;
    const pooled = this.pool.get(size)!.pop() ?? this.pool.get(size === CHUNK ? SMALL_CHUNK : CHUNK)!.pop();
    if (pooled) return pooled;
    for (const n of [size, SMALL_CHUNK]) {
      if (this.waiters.length === 0 && this.allocated + n <= this.limit) {
        this.allocated += n;
        return Buffer.allocUnsafeSlow(n);
      }
    }
    return new Promise<Buffer>((resolve, reject) => {
      const waiter = (buf: Buffer): void => {
        signal.removeEventListener('abort', onAbort);
        resolve(buf);
      };
      const onAbort = (): void => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
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
  if (res.destroyed) throw gone;
  // One listener per response. (Racing every chunk against a "closed" promise would pile a reaction per race
  // onto that promise for the response's whole life: hundreds of MB with 1,000 slow clients.)
  const abort = new AbortController();
  const onClose = (): void => abort.abort(gone);
  res.once('close', onClose);
  // The status goes out now, also when the budget makes this response wait for its first buffer.
  res.flushHeaders();
  buffers.active++;
  try {
    return await sendLoop(res, fd, start, end, abort.signal, gone);
  } finally {
    buffers.active--;
    res.off('close', onClose);
  }
}

/** p, or the signal's reason once it aborts; the abort listener is removed again, so nothing piles up. */
async function orAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  let onAbort!: () => void;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([p, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

async function sendLoop(res: ServerResponse, fd: number, start: number, end: number, signal: AbortSignal, gone: Error): Promise<number> {
  let pos = start;
  const pending: Array<Promise<void>> = [];
  while (pos <= end) {
    if (res.destroyed) throw gone;
    const buf = await buffers.take(signal);
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
    if (pending.length >= IN_FLIGHT) await orAbort(pending.shift()!, signal);
  }
  await orAbort(Promise.all(pending), signal);
  if (res.destroyed) throw gone;
  res.end();
  return pos - start;
}
