// Shared helpers for the reliability and fuzz suites: honest-outcome checks, cache-consistency checks,
// a switchable TCP forwarder (an upstream that can go down and come back on the same port) and raw HTTP.
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { join, relative } from 'node:path';
import { fileDigest, sha256 } from '../support/digest.js';
import { waitFor } from '../support/process.js';

/** Short upstream timeouts for fault scenarios (regcache config, deep-merged). */
export const SHORT_TIMEOUTS = { regcache: { timeouts: { connect: '1s', headers: '2s', idle: '2s' } } };

export interface Outcome {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** set when the connection failed or the body ended before it was complete */
  error?: string;
}

/** One request on a fresh connection; never throws (a refused/reset connection is an Outcome with status 0). */
export function request(
  url: string,
  opts: { method?: string; headers?: http.OutgoingHttpHeaders; timeoutMs?: number; abortAfterBytes?: number } = {},
): Promise<Outcome> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (o: Outcome) => {
      if (!settled) {
        settled = true;
        resolve(o);
      }
    };
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let error: string | undefined;
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        size += c.length;
        if (opts.abortAfterBytes !== undefined && size >= opts.abortAfterBytes) {
          error = 'aborted by client';
          req.destroy();
        }
      });
      res.on('aborted', () => (error ??= 'connection aborted'));
      res.on('error', (e) => (error ??= e.message));
      res.on('close', () => {
        if (!res.complete) error ??= 'incomplete body';
        done({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), error });
      });
    });
    req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(new Error('client timeout')));
    req.on('error', (e) => done({ status: 0, headers: {}, body: Buffer.alloc(0), error: e.message }));
    req.end();
  });
}

/** `{"errors":[{"code":...,"message":...}]}`; fails the test otherwise. Returns the first code. */
export function ociErrorCode(o: Pick<Outcome, 'body' | 'headers'>, context = ''): string {
  let doc: { errors?: Array<{ code?: unknown; message?: unknown }> };
  try {
    doc = JSON.parse(o.body.toString('utf8'));
  } catch {
    assert.fail(`${context}: error body is not JSON: ${JSON.stringify(o.body.toString('latin1').slice(0, 200))}`);
  }
  const first = doc.errors?.[0];
  assert.ok(first && typeof first.code === 'string' && typeof first.message === 'string', `${context}: not an OCI error body`);
  assert.match(String(o.headers['content-type']), /application\/json/, `${context}: error content type`);
  assertNoLeaks(o.body.toString('utf8'), context);
  return first.code as string;
}

/** Error bodies must not carry stack traces or source paths. */
export function assertNoLeaks(text: string, context = ''): void {
  assert.doesNotMatch(text, /\n\s+at |\bat [\w.<>]+ \(|\.ts:\d+|node:internal|\/src\//, `${context}: stack trace or source path in body`);
}

/**
 * The guarantee every fault scenario checks: the client got either exactly the expected bytes, or a clear
 * failure (error status with an OCI body, or an aborted connection) — never a short or wrong body presented
 * as complete. Returns whether it was a success.
 */
export function assertHonest(o: Outcome, expected: { digest: string; size: number }, context = ''): boolean {
  const ctx = `${context} (status ${o.status}, ${o.body.length} bytes, error ${o.error ?? 'none'})`;
  if (o.error !== undefined) {
    // aborted: whatever arrived must not be the whole, verified thing under a clean end
    return false;
  }
  if (o.status >= 200 && o.status < 300) {
    assert.equal(o.body.length, expected.size, `${ctx}: completed body has the wrong length`);
    assert.equal(sha256(o.body), expected.digest, `${ctx}: completed body has the wrong digest`);
    if (o.headers['content-length'] !== undefined) assert.equal(Number(o.headers['content-length']), o.body.length, ctx);
    return true;
  }
  assert.ok(o.status >= 400, `${ctx}: unexpected status`);
  ociErrorCode(o, ctx);
  return false;
}

/** Relative paths of every file below dir (recursive), sorted; [] when dir is missing. */
export async function listFiles(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { recursive: true, withFileTypes: true });
  } catch {
    return [];
  }
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => relative(dir, join(e.parentPath ?? e.path, e.name)))
    .sort();
}

/** Files that are cache content (blobs and repository objects), not temp files or the metadata index. */
export async function cachedFiles(root: string): Promise<string[]> {
  return (await listFiles(root)).filter((f) => f.startsWith('blobs/') || f.startsWith('repositories/'));
}

/**
 * The cache is consistent: every stored blob's sha256 equals its name, and every file is where the layout
 * puts it (blobs, repository objects, upload temp files). Returns the stored blob digests.
 */
export async function assertStoreConsistent(root: string): Promise<string[]> {
  const digests: string[] = [];
  for (const f of await listFiles(root)) {
    const blob = /^blobs\/sha256\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(f);
    if (blob) {
      assert.equal(blob[1], blob[2]!.slice(0, 2), `blob in the wrong fan-out dir: ${f}`);
      const digest = `sha256:${blob[2]}`;
      assert.equal(await fileDigest(join(root, f)), digest, `stored blob ${f} does not match its name`);
      digests.push(digest);
      continue;
    }
    // repository objects, upload temp files, the embedded metadata index
    const layout =
      /^(repositories\/[A-Za-z0-9._:-]+\/[a-z0-9._/-]+\/_(manifests\/sha256\/[0-9a-f]{64}|tags\/[\w.-]+|taglist)|_uploads\/(?:\w+\.\w+\.\d+-)?[0-9a-f-]{36}|_metadata\/[\w.-]+)$/;
    assert.match(f, layout, `unexpected file in storage: ${f}`);
  }
  return digests;
}

/** Waits until no temp file is left in <root>/_uploads (downloads finished or aborted). */
export async function waitUploadsEmpty(root: string, timeoutMs = 15_000): Promise<void> {
  await waitFor(async () => (await listFiles(join(root, '_uploads'))).length === 0, {
    timeoutMs,
    what: `empty ${root}/_uploads`,
  });
}

export async function fileSize(path: string): Promise<number> {
  return (await stat(path)).size;
}

export interface Switch {
  port: number;
  url: string;
  /** stop accepting and drop open connections: the upstream is "down" (connection refused) */
  down(): Promise<void>;
  /** accept again on the same port */
  up(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A TCP forwarder on a fixed loopback port to target port: lets a test take an upstream down (refused
 * connections) and bring it back at the same address. Starts down when `startDown`.
 */
export async function startSwitch(targetPort: number, opts: { port?: number; startDown?: boolean } = {}): Promise<Switch> {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = opts.port ?? 0;
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };
  const up = async () => {
    if (server) return;
    const srv = net.createServer((client) => {
      track(client);
      const upstream = net.connect(targetPort, '127.0.0.1');
      track(upstream);
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, '127.0.0.1', resolve);
    });
    port = (srv.address() as net.AddressInfo).port;
    server = srv;
  };
  const down = async () => {
    const srv = server;
    server = undefined;
    if (!srv) return;
    const closed = new Promise<void>((resolve) => srv.close(() => resolve()));
    for (const s of sockets) s.destroy();
    await closed;
  };
  if (opts.startDown) {
    if (!port) throw new Error('startDown needs a port');
  } else {
    await up();
  }
  return {
    get port() {
      return port;
    },
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    up,
    down,
    stop: down,
  };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** the whole response as received */
  raw: Buffer;
}

/** Sends bytes as they are (no URL normalisation) on a fresh connection and reads until the server closes. */
export function rawRequest(port: number, request: Buffer | string, timeoutMs = 15_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error(`no complete answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', (e) => {
      clearTimeout(timer);
      // a reset after the answer was read is fine
      if (chunks.length) finish();
      else reject(e);
    });
    socket.on('end', () => socket.end());
    socket.on('close', () => {
      clearTimeout(timer);
      finish();
    });
    let finished = false;
    function finish() {
      if (finished) return;
      finished = true;
      try {
        resolve(parseRawResponse(Buffer.concat(chunks)));
      } catch (e) {
        reject(e);
      }
    }
    socket.write(request);
  });
}

function parseRawResponse(raw: Buffer): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no HTTP response head in ${JSON.stringify(raw.toString('latin1').slice(0, 200))}`);
  const [statusLine, ...lines] = raw.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine!);
  if (!m) throw new Error(`bad status line ${JSON.stringify(statusLine)}`);
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = raw.subarray(end + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = dechunk(body);
  return { status: Number(m[1]), headers, body, raw };
}

function dechunk(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let i = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', i);
    if (eol < 0) break;
    const len = parseInt(b.subarray(i, eol).toString('latin1'), 16);
    if (!Number.isFinite(len) || len === 0) break;
    out.push(b.subarray(eol + 2, eol + 2 + len));
    i = eol + 2 + len + 2;
  }
  return Buffer.concat(out);
}
