// Object driver conformance: the narrow, path-based contract every storage driver keeps (inmemory, filesystem,
// s3 on s3rver), seen through the one wrapper that checks keys and times operations.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { RegistryError } from '../../src/errors.js';
import type { ObjectDriver } from '../../src/seams.js';
import { checkedDriver, type StorageOp } from '../../src/storage/checked.js';
import { InMemoryDriver } from '../../src/storage/inmemory.js';
import { HARNESSES, leftoversAfterAbort, TEST_PART_SIZE, type DriverHarness } from './drivers.js';

async function readAll(s: Readable | null): Promise<Buffer> {
  assert.ok(s, 'object exists');
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function keys(d: ObjectDriver, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of d.list(prefix)) out.push(o.key);
  return out.sort();
}

const refused = (e: unknown) => e instanceof RegistryError && e.code === 'NAME_INVALID';

for (const [name, make] of HARNESSES) {
  describe(`object driver conformance: ${name}`, () => {
    let h: DriverHarness;
    let d: ObjectDriver;

    before(async () => {
      h = await make();
      d = h.driver;
    });
    after(async () => {
      await h?.stop();
    });

    it('absent keys are null, not errors', async () => {
      assert.equal(await d.stat('a/missing'), null);
      assert.equal(await d.get('a/missing'), null);
      assert.equal(await d.read('a/missing'), null);
      await d.delete('a/missing');
      assert.deepEqual(await keys(d, 'nothing/here'), []);
    });

    it('puts, reads, stats, lists with sizes, replaces and deletes', async () => {
      await d.put('p/x/one', Buffer.from('1'));
      await d.put('p/x/deep/two', Buffer.from('22'));
      await d.put('p/xy/other', Buffer.from('333'));
      assert.deepEqual(await d.stat('p/x/deep/two'), { size: 2 });
      const listed: Array<{ key: string; size: number }> = [];
      for await (const o of d.list('p/x')) listed.push(o);
      assert.deepEqual(
        listed.sort((a, b) => a.key.localeCompare(b.key)),
        [
          { key: 'p/x/deep/two', size: 2 },
          { key: 'p/x/one', size: 1 },
        ],
        'a prefix is a folder: p/xy is not below p/x',
      );
      await d.put('p/x/one', Buffer.from('replaced'));
      assert.deepEqual(await d.read('p/x/one'), Buffer.from('replaced'));
      await d.delete('p/x/one');
      assert.deepEqual(await keys(d, 'p'), ['p/x/deep/two', 'p/xy/other']);
    });

    it('gets whole objects and inclusive byte ranges', async () => {
      const data = randomBytes(300_000);
      await d.put('r/obj', data);
      assert.ok((await readAll(await d.get('r/obj'))).equals(data));
      for (const [start, end] of [
        [0, 0],
        [1, 65_536],
        [299_999, 299_999],
      ] as const) {
        assert.ok((await readAll(await d.get('r/obj', { start, end }))).equals(data.subarray(start, end + 1)), `${start}-${end}`);
      }
    });

    it('a writer is invisible until commit; a local file, when it offers one, grows with the writes', async () => {
      const data = randomBytes(TEST_PART_SIZE + 54_321);
      const w = await d.writer('w/committed');
      const fd = w.localPath === undefined ? undefined : await open(w.localPath, 'r');
      try {
        await w.write(data.subarray(0, 1000));
        await w.write(data.subarray(1000));
        assert.equal(await d.stat('w/committed'), null, 'not visible before commit');
        if (fd) {
          const got = Buffer.alloc(data.length);
          await fd.read(got, 0, got.length, 0);
          assert.ok(got.equals(data), 'localPath holds every byte written so far');
        }
        await w.commit();
      } finally {
        await fd?.close();
      }
      assert.deepEqual(await d.stat('w/committed'), { size: data.length });
      assert.ok((await d.read('w/committed'))!.equals(data));
      await w.abort(); // after commit: nothing to undo
      assert.deepEqual(await d.stat('w/committed'), { size: data.length });
    });

    it('abort leaves nothing behind, and a finished writer takes no more bytes', async () => {
      const w = await d.writer('w/aborted');
      await w.write(randomBytes(TEST_PART_SIZE + 10));
      await w.abort();
      await w.abort();
      assert.equal(await d.stat('w/aborted'), null);
      await assert.rejects(w.write(Buffer.from('x')));
      assert.equal(await leftoversAfterAbort(h), 0);
    });

    it('refuses every key that could leave its root', async () => {
      for (const k of ['', '/abs', 'a//b', './a', 'a/./b', '..', '../x', 'a/../../x', 'a\\b', 'a\0b']) {
        await assert.rejects(d.put(k, Buffer.from('x')), refused, `put ${JSON.stringify(k)}`);
        await assert.rejects(d.read(k), refused, `read ${JSON.stringify(k)}`);
        await assert.rejects(d.stat(k), refused, `stat ${JSON.stringify(k)}`);
        await assert.rejects(d.get(k), refused, `get ${JSON.stringify(k)}`);
        await assert.rejects(d.delete(k), refused, `delete ${JSON.stringify(k)}`);
        await assert.rejects(d.writer(k), refused, `writer ${JSON.stringify(k)}`);
        await assert.rejects(keys(d, k), refused, `list ${JSON.stringify(k)}`);
      }
      assert.deepEqual(await h.outsideRoot(), []);
    });
  });
}

describe('the driver wrapper', () => {
  it('times every operation and counts failures, per driver and operation', async () => {
    const seen: Array<[string, StorageOp, boolean]> = [];
    const d = checkedDriver(new InMemoryDriver(), (driver, op, seconds, failed) => {
      assert.ok(seconds >= 0);
      seen.push([driver, op, failed]);
    });
    await d.put('k/a', Buffer.from('a'));
    await d.read('k/a');
    await d.stat('k/missing');
    const w = await d.writer('k/b');
    await w.write(Buffer.from('b'));
    await w.commit();
    await assert.rejects(w.commit());
    for await (const _ of d.list('k'));
    await assert.rejects(d.put('../x', Buffer.from('x')), refused);
    assert.deepEqual(seen, [
      ['inmemory', 'put', false],
      ['inmemory', 'read', false],
      ['inmemory', 'stat', false],
      ['inmemory', 'writer', false],
      ['inmemory', 'write', false],
      ['inmemory', 'commit', false],
      ['inmemory', 'commit', true],
      ['inmemory', 'list', false],
    ]);
  });
});
