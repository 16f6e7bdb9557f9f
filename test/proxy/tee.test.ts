// The cold path's tee: a reader that keeps up with a download is served from the bytes in memory, not by
// reading the temp file back; its final byte still waits for the verified commit; a reader that falls behind
// goes on from the file; a failing body errors it; a client hanging up mid-download leaks nothing.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { Download } from '../../src/proxy/download.js';
import type { BlobStore, BlobWriter } from '../../src/storage/blobstore.js';
import { openStorage } from '../../src/storage/index.js';
import { sha256, streamDigest } from '../support/digest.js';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { buildImage, pushImage } from '../support/images.js';
import { waitFor } from '../support/process.js';
import { startRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const MiB = 1024 * 1024;

/** Network-sized chunks of data; throws `fail` after `failAfter` bytes. */
async function* body(data: Buffer, opts: { failAfter?: number; fail?: Error } = {}): AsyncIterable<Uint8Array> {
  for (let off = 0; off < data.length; off += 64 * 1024) {
    if (opts.failAfter !== undefined && off >= opts.failAfter) throw opts.fail ?? new Error('upstream reset');
    yield data.subarray(off, off + 64 * 1024);
    await new Promise((r) => setImmediate(r));
  }
}

/** A real blob writer whose writes to disk wait until `release` is called. */
function gated(real: BlobWriter): BlobWriter & { release(): void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  return {
    get tempPath() {
      return real.tempPath;
    },
    get bytesWritten() {
      return real.bytesWritten;
    },
    write: async (c) => {
      await gate;
      await real.write(c);
    },
    commit: () => real.commit(),
    abort: () => real.abort(),
    release,
  };
}

interface Collected {
  chunks: Buffer[];
  bytes: number;
  /** Bytes this reader had delivered before the download committed. */
  beforeCommit: number;
  ended: boolean;
  error?: Error;
  done: Promise<void>;
}

function collect(dl: Download, stream: Readable): Collected {
  const c: Collected = { chunks: [], bytes: 0, beforeCommit: 0, ended: false, done: Promise.resolve() };
  stream.on('data', (b: Buffer) => {
    c.chunks.push(b);
    c.bytes += b.length;
    if (!dl.isCommitted) c.beforeCommit = c.bytes;
  });
  c.done = new Promise<void>((resolve) => {
    stream.once('end', () => {
      c.ended = true;
      resolve();
    });
    stream.once('error', (e) => {
      c.error = e;
      resolve();
    });
  });
  return c;
}

describe('the tee of a download', () => {
  let dir: string;
  let storage: BlobStore;

  before(async () => {
    dir = await makeTempDir('tee-');
    storage = await openStorage({ driver: 'filesystem', rootdirectory: dir });
  });
  after(async () => {
    await storage?.close();
    await removeDir(dir);
  });

  it('serves a reader that keeps up from memory before the bytes are on disk; its last byte only after the commit', async () => {
    const data = randomBytes(6 * MiB + 12345);
    const digest = sha256(data);
    const writer = gated(await storage.createBlobWriter(digest));
    const dl = await Download.start({ digest, size: data.length, body: body(data), writer });
    const reader = collect(dl, dl.createReader());
    // Nothing is on disk yet (the first write waits): the reader gets what arrived from memory.
    await waitFor(() => reader.bytes >= MiB, { what: 'the reader to be fed from memory while nothing is written' });
    assert.equal(writer.bytesWritten, 0);
    writer.release();
    await reader.done;
    await dl.finished;
    assert.equal(reader.error, undefined);
    assert.ok(reader.ended);
    assert.ok(Buffer.concat(reader.chunks).equals(data), 'the bytes are identical');
    assert.ok(reader.beforeCommit <= data.length - 1, `the final byte came only after the commit (${reader.beforeCommit})`);
    assert.deepEqual(await storage.statBlob(digest), { size: data.length });
  });

  it('a ranged reader of the download gets exactly its range, its last byte after the commit', async () => {
    const data = randomBytes(5 * MiB);
    const digest = sha256(data);
    const dl = await Download.start({ digest, size: data.length, body: body(data), writer: await storage.createBlobWriter(digest) });
    const range = collect(dl, dl.createReader(1000, 2 * MiB + 7));
    await range.done;
    assert.equal(range.error, undefined);
    assert.ok(Buffer.concat(range.chunks).equals(data.subarray(1000, 2 * MiB + 8)));
    assert.ok(range.beforeCommit <= 2 * MiB + 7 - 1000);
    await dl.finished;
  });

  it('a reader that does not keep up goes on from the temp file: bounded memory, identical bytes', async () => {
    const data = randomBytes(40 * MiB);
    const digest = sha256(data);
    const dl = await Download.start({ digest, size: data.length, body: body(data), writer: await storage.createBlobWriter(digest) });
    const stream = dl.createReader();
    stream.pause();
    stream.read(0); // start it, then take nothing until the download is done
    await dl.finished;
    assert.ok(stream.readableLength <= 16 * MiB, `a stalled reader holds ${stream.readableLength} bytes`);
    const reader = collect(dl, stream);
    stream.resume();
    await reader.done;
    assert.equal(reader.error, undefined);
    assert.ok(Buffer.concat(reader.chunks).equals(data));
  });

  it('a body that fails midway errors the teed reader, which never receives the whole blob', async () => {
    const data = randomBytes(6 * MiB);
    const digest = sha256(data);
    const dl = await Download.start({
      digest,
      size: data.length,
      body: body(data, { failAfter: 3 * MiB }),
      writer: await storage.createBlobWriter(digest),
    });
    const reader = collect(dl, dl.createReader());
    await reader.done;
    await assert.rejects(dl.finished);
    assert.ok(reader.error, 'the reader errors');
    assert.ok(!reader.ended);
    assert.ok(reader.bytes < data.length);
    assert.equal(await storage.statBlob(digest), null);
  });
});

describe('a client hanging up mid-tee', () => {
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let work: string;
  let layer: { digest: string; size: number };

  before(async () => {
    work = await makeTempDir('tee-e2e-');
    upstream = await startRegistry();
    const img = await buildImage({ dir: join(work, 'img'), layers: [24 * MiB], seed: 'tee-hangup' });
    await pushImage(img, upstream.host, 'team/tee:1');
    layer = img.manifests[0]!.layers[0]!;
    proxy = await startFaultProxy(upstream.url);
  });
  after(async () => {
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  it('leaks no file descriptor, and the blob is still committed and served whole', async () => {
    const c = await startRegcache({ upstreamUrl: proxy.url });
    try {
      proxy.setRules([{ method: 'GET', path: new RegExp(layer.digest), fault: { kind: 'drip', bytesPerTick: 512 * 1024, tickMs: 10 } }]);
      const url = `${c.url}/v2/team/tee/blobs/${layer.digest}`;
      const res = await request(url);
      assert.equal(res.statusCode, 200);
      let got = 0;
      for await (const chunk of res.body) {
        got += (chunk as Buffer).length;
        if (got >= 2 * MiB) break; // leaving the loop destroys the body: the client hangs up
      }
      await waitFor(async () => (await c.app.storage.statBlob(layer.digest)) !== null, { timeoutMs: 60_000, what: 'the blob committed' });
      await waitFor(async () => (await openBlobFiles(c.root)).length === 0, {
        timeoutMs: 10_000,
        what: 'no blob or temp file left open',
      });
      assert.equal(proxy.count({ method: 'GET', path: /\/blobs\// }), 1);
      proxy.clearRules();
      const again = await request(url);
      assert.equal((await streamDigest(again.body)).digest, layer.digest);
    } finally {
      await c.stop();
    }
  });
});

/** Files of this process open below the storage root (Linux), but for the metadata journal it keeps open. */
async function openBlobFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(root) && !target.includes('/_metadata/')) out.push(target);
  }
  return out;
}
