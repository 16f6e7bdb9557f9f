// The download failure path is total: whatever throws (the body, the writer's commit or abort, an observer),
// a Download reaches one final state, never reports success for a failed blob, never stays running, and
// leaves no unhandled rejection.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Download } from '../../src/proxy/download.js';
import type { BlobWriter } from '../../src/storage/blobstore.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

/** A writer over a real temp file whose commit/abort can be made to throw. */
function writer(tempPath: string, faults: { commit?: Error; abort?: Error }): BlobWriter & { aborted: number } {
  let written = 0;
  return {
    tempPath,
    aborted: 0,
    get bytesWritten() {
      return written;
    },
    async write(c) {
      written += c.length;
    },
    async commit() {
      if (faults.commit) throw faults.commit;
    },
    async abort() {
      this.aborted++;
      if (faults.abort) throw faults.abort;
    },
  };
}

async function* body(chunks: Buffer[], fail?: Error): AsyncIterable<Uint8Array> {
  for (const c of chunks) yield c;
  if (fail) throw fail;
}

describe('Download final states', () => {
  let dir: string;
  let temp: string;
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);

  before(async () => {
    dir = await makeTempDir('download-');
    temp = join(dir, 'temp');
    await writeFile(temp, 'abc');
    process.on('unhandledRejection', onUnhandled);
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await removeDir(dir);
  });

  async function settle(dl: Download): Promise<'committed' | Error> {
    return dl.finished.then(
      () => 'committed' as const,
      (e: Error) => e,
    );
  }

  it('a failing body whose writer abort also throws still fails cleanly', async () => {
    const w = writer(temp, { abort: new Error('abort exploded') });
    const dl = await Download.start({ digest: 'sha256:x', size: 3, body: body([Buffer.from('ab')], new Error('reset')), writer: w });
    const outcome = await settle(dl);
    assert.ok(outcome instanceof Error && /reset/.test(outcome.message), String(outcome));
    assert.equal(dl.isRunning, false);
    assert.equal(w.aborted, 1);
  });

  it('a commit that throws and an abort that throws: failed, never committed', async () => {
    const w = writer(temp, { commit: new Error('digest mismatch'), abort: new Error('abort exploded') });
    let reported: unknown = 'none';
    const dl = await Download.start({
      digest: 'sha256:x',
      size: 3,
      body: body([Buffer.from('abc')]),
      writer: w,
      onFinish: (err) => (reported = err),
    });
    const outcome = await settle(dl);
    assert.ok(outcome instanceof Error, 'failed');
    assert.ok(reported instanceof Error, 'reported as a failure to observers');
    assert.equal(dl.isRunning, false);
  });

  it('an observer that throws does not turn a committed blob into a failure, nor a failure into a hang', async () => {
    const ok = await Download.start({
      digest: 'sha256:x',
      size: 3,
      body: body([Buffer.from('abc')]),
      writer: writer(temp, {}),
      onFinish: () => {
        throw new Error('index exploded');
      },
    });
    assert.equal(await settle(ok), 'committed');
    const bad = await Download.start({
      digest: 'sha256:x',
      size: 3,
      body: body([], new Error('reset')),
      writer: writer(temp, {}),
      onFinish: () => {
        throw new Error('index exploded');
      },
    });
    assert.ok((await settle(bad)) instanceof Error);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(unhandled, [], 'no unhandled rejection');
  });
});
