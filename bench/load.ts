// Load generators, each a separate process from the servers: skopeo (image pulls), curl (blob GETs),
// autocannon (manifest requests).
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { copyToDir } from '../test/support/skopeo.js';
import { runChild } from './teardown.js';

/** Seconds that `fn` took. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/** skopeo copy docker://HOST/REF dir:DEST (plain HTTP) */
export function pull(host: string, ref: string, dest: string): Promise<void> {
  return copyToDir(`docker://${host}/${ref}`, dest);
}

/** Runs `count` tasks with at most `limit` at a time. */
export async function withConcurrency(count: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}

export interface Download {
  bytes: number;
  /** curl's time_total (connect to last byte) */
  seconds: number;
}

/** GET url to /dev/null with curl; throws unless it is a 200 of exactly expectBytes. */
export async function curlGet(url: string, expectBytes: number): Promise<Download> {
  const r = await runChild('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{time_total}', url]);
  const [status, size, total] = r.stdout.trim().split(' ');
  if (r.code !== 0 || status !== '200' || Number(size) !== expectBytes) {
    throw new Error(`GET ${url}: curl exit ${r.code}, status ${status}, ${size} of ${expectBytes} bytes ${r.stderr}`);
  }
  return { bytes: Number(size), seconds: Number(total) };
}

export interface Cannonade {
  reqPerSec: number;
  total: number;
  non2xx: number;
  errors: number;
  p99Ms: number;
}

const CANNON = new URL('./cannon.ts', import.meta.url).pathname;

/** autocannon in a child process (bench/cannon.ts): fixed connections and duration; req/s counts 2xx only. */
export async function cannonade(
  url: string,
  opts: { method: 'GET' | 'HEAD'; headers: Record<string, string>; connections: number; seconds: number },
): Promise<Cannonade> {
  const args = { url, method: opts.method, headers: opts.headers, connections: opts.connections, duration: opts.seconds };
  const r = await runChild(process.execPath, ['--import', 'tsx', CANNON, JSON.stringify(args)], {
    timeoutMs: (opts.seconds + 60) * 1000,
  });
  if (r.code !== 0) throw new Error(`autocannon exited ${r.code}: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as {
    requests: { total: number };
    duration: number;
    non2xx: number;
    errors: number;
    timeouts: number;
    '2xx': number;
    latency: { p99: number };
  };
  return {
    reqPerSec: out['2xx'] / out.duration,
    total: out.requests.total,
    non2xx: out.non2xx,
    errors: out.errors + out.timeouts,
    p99Ms: out.latency.p99,
  };
}

export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * A client that reads a blob at `rate` bytes/s (pausing its socket between reads), over its own connection.
 * Resolves with whether it received the whole body.
 */
export function slowGet(url: string, size: number, rate: number): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: u.hostname, port: Number(u.port) });
    const started = performance.now();
    let head = Buffer.alloc(0);
    let body = -1; // -1 until the headers ended
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.on('error', () => finish(false));
    socket.on('close', () => resolve(body === size));
    socket.on('data', (chunk: Buffer) => {
      if (body < 0) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (!head.subarray(0, 12).toString().startsWith('HTTP/1.1 200')) return finish(false);
        body = head.length - end - 4;
      } else body += chunk.length;
      if (body >= size) return finish(body === size);
      const ahead = (body / rate) * 1000 - (performance.now() - started);
      if (ahead > 1) {
        socket.pause();
        setTimeout(() => socket.resume(), ahead);
      }
    });
    socket.write(`GET ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: close\r\n\r\n`);
  });
}
