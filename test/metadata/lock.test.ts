// The metadata lock: one writer per storage, across processes and across pid namespaces (two containers on one
// volume are both pid 1), created whole (never seen empty), taken over when its holder is gone.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { acquireLock, LOCK_FILE, LOCK_STALE_MS } from '../../src/metadata/lock.js';
import { startProcess, waitFor, waitForHttp, type ManagedProcess } from '../support/process.js';
import { freePort, REPO_ROOT, TSX_LOADER } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { skipUnless } from '../support/skips.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const isRoot = process.getuid?.() === 0;

describe('metadata lock', () => {
  let work: string;
  before(async () => {
    work = await makeTempDir('lock-');
  });
  after(async () => {
    await removeDir(work);
  });

  it('a lock of another pid namespace is held while it is refreshed, and taken over once stale', async () => {
    const dir = join(work, 'foreign');
    const mine = await acquireLock(dir);
    assert.ok(!('heldBy' in mine));
    await mine.release();
    // The same file as written by pid 1 of another container.
    await writeFile(join(dir, LOCK_FILE), JSON.stringify({ owner: 'deadbeef.4026599999.1', pid: 1 }));
    const held = await acquireLock(dir);
    assert.ok('heldBy' in held, 'a fresh foreign lock is held');
    assert.deepEqual(held.heldBy, { pid: 1, owner: 'deadbeef.4026599999.1' });
    const past = new Date(Date.now() - LOCK_STALE_MS - 1000);
    await utimes(join(dir, LOCK_FILE), past, past);
    const taken = await acquireLock(dir);
    assert.ok(!('heldBy' in taken), 'a stale foreign lock is taken over');
    assert.equal(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8')).pid, process.pid);
    await taken.release();
  });

  it('a bare pid (earlier versions) of a live process is held; of a dead one, taken over', async () => {
    const dir = join(work, 'legacy');
    const sleeper = spawn('sleep', ['30']);
    try {
      const first = await acquireLock(dir);
      if (!('heldBy' in first)) await first.release();
      await writeFile(join(dir, LOCK_FILE), String(sleeper.pid));
      const held = await acquireLock(dir);
      assert.ok('heldBy' in held && held.heldBy.pid === sleeper.pid, 'held by the live process');
    } finally {
      sleeper.kill('SIGKILL');
      await new Promise((r) => sleeper.once('exit', r));
    }
    const taken = await acquireLock(dir);
    assert.ok(!('heldBy' in taken), 'taken over from the dead process');
    await taken.release();
  });

  it('of 8 processes racing for a fresh lock exactly one gets it', async () => {
    const dir = join(work, 'race');
    const script = `import { acquireLock } from ${JSON.stringify(join(REPO_ROOT, 'src/metadata/lock.ts'))};
const l = await acquireLock(${JSON.stringify(dir)});
console.log('heldBy' in l ? 'held' : 'got');
setTimeout(() => process.exit(0), 1500);`;
    const file = join(work, 'race.mts');
    await writeFile(file, script);
    const runs = await Promise.all(
      Array.from({ length: 8 }, () => promisify(execFile)(process.execPath, ['--import', TSX_LOADER, file], { timeout: 30_000 })),
    );
    const outcomes = runs.map((r) => r.stdout.trim()).sort();
    assert.deepEqual(outcomes, ['got', ...Array(7).fill('held')]);
  });
});

describe('two servers, each pid 1 of its own pid namespace, on one storage', { skip: skipUnless(isRoot, 'root', 'unshare --pid needs root') }, () => {
  let upstream: RunningRegistry;
  let work: string;
  const servers: ManagedProcess[] = [];

  before(async () => {
    work = await makeTempDir('lock-ns-');
    upstream = await startRegistry();
  });
  after(async () => {
    for (const s of servers) await s.stop();
    await upstream?.stop();
    await removeDir(work);
  });

  async function serveAsPid1(name: string): Promise<{ proc: ManagedProcess; log: () => Promise<string> }> {
    const port = await freePort();
    const config = join(work, `${name}.yml`);
    await writeFile(
      config,
      stringify({
        version: 0.1,
        log: { level: 'info', formatter: 'json' },
        storage: { filesystem: { rootdirectory: join(work, 'data') } },
        http: { addr: `127.0.0.1:${port}` },
        proxy: { remoteurl: upstream.url },
      }),
    );
    const args = ['--pid', '--fork', '--kill-child', process.execPath, '--import', TSX_LOADER, join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', config];
    const proc = await startProcess('unshare', args, { logFile: join(work, `${name}.log`), cwd: work });
    servers.push(proc);
    await waitForHttp(`http://127.0.0.1:${port}/v2/`, 30_000);
    return { proc, log: () => proc.logTail(256 * 1024) };
  }

  it('the second one serves only; it takes the lifecycle over when the first is killed', async () => {
    const a = await serveAsPid1('a');
    const b = await serveAsPid1('b');
    assert.doesNotMatch(await a.log(), /another regcache process manages this storage/);
    assert.match(await b.log(), /another regcache process manages this storage/, 'b sees a as alive although both are pid 1');
    process.kill(a.proc.pid, 'SIGKILL'); // unshare --kill-child takes pid 1 of its namespace with it
    await a.proc.exited;
    await waitFor(async () => /this one manages the cache now/.test(await b.log()), {
      timeoutMs: LOCK_STALE_MS + 30_000,
      intervalMs: 500,
      what: 'b takes over once the lock of a is stale',
    });
  });
});
