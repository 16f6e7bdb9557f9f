// Serve-stale matrix: what a client gets for cached and uncached content while the upstream is down, failing,
// rate limiting or hanging. docs/reliability.md carries the same table; keep both in step.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startFaultProxy, type FaultProxy, type FaultRule } from '../support/faultproxy.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { waitFor } from '../support/process.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { ociErrorCode, request, SHORT_TIMEOUTS, startSwitch, type Outcome, type Switch } from './support.js';

type Fault = 'down' | '500' | '503' | '429' | 'timeout';
type Row =
  | 'tag, cached'
  | 'digest, cached'
  | 'blob, cached'
  | 'tag list, fetched before'
  | 'tag, uncached'
  | 'digest, uncached'
  | 'blob, uncached';

/** Expected answer: `200` (served from cache) or `status CODE`. */
const MATRIX: Record<Row, Record<Fault, string>> = {
  'tag, cached': { down: '200', '500': '200', '503': '200', '429': '200', timeout: '200' },
  'digest, cached': { down: '200', '500': '200', '503': '200', '429': '200', timeout: '200' },
  'blob, cached': { down: '200', '500': '200', '503': '200', '429': '200', timeout: '200' },
  'tag list, fetched before': { down: '200', '500': '200', '503': '200', '429': '200', timeout: '200' },
  'tag, uncached': {
    down: '503 UNAVAILABLE',
    '500': '502 UPSTREAM_ERROR',
    '503': '503 UNAVAILABLE',
    '429': '429 TOOMANYREQUESTS',
    timeout: '503 UNAVAILABLE',
  },
  'digest, uncached': {
    down: '503 UNAVAILABLE',
    '500': '502 UPSTREAM_ERROR',
    '503': '503 UNAVAILABLE',
    '429': '429 TOOMANYREQUESTS',
    timeout: '503 UNAVAILABLE',
  },
  'blob, uncached': {
    down: '503 UNAVAILABLE',
    '500': '502 UPSTREAM_ERROR',
    '503': '503 UNAVAILABLE',
    '429': '429 TOOMANYREQUESTS',
    timeout: '503 UNAVAILABLE',
  },
};

const FAULTS: Fault[] = ['down', '500', '503', '429', 'timeout'];

const FAULT_RULES: Record<Exclude<Fault, 'down'>, FaultRule[]> = {
  '500': [{ fault: { kind: 'status', status: 500 } }],
  '503': [{ fault: { kind: 'status', status: 503 } }],
  '429': [{ fault: { kind: 'status', status: 429, headers: { 'retry-after': '30' } } }],
  timeout: [{ fault: { kind: 'stall' } }],
};

describe('serve-stale matrix (freshness 0s: every tag request revalidates)', () => {
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let sw: Switch;
  let cache: RunningRegcache;
  let work: string;
  let app: BuiltImage;
  let pinned: BuiltImage;
  /** a never-fetched image per fault, so that every column starts uncached */
  const cold = {} as Record<Fault, BuiltImage>;
  const paths = {} as Record<Row, string>;
  const coldPaths = (f: Fault): Partial<Record<Row, string>> => ({
    'tag, uncached': `/v2/team/cold-${f}/manifests/1`,
    'digest, uncached': `/v2/team/cold-${f}/manifests/${cold[f].manifestDigest}`,
    'blob, uncached': `/v2/team/cold-${f}/blobs/${cold[f].manifests[0]!.layers[0]!.digest}`,
  });
  const expectedDigest = {} as Record<Row, string>;

  before(async () => {
    work = await makeTempDir('reliability-stale-');
    upstream = await startRegistry();
    app = await buildImage({ dir: join(work, 'app'), layers: [50_000], seed: 'stale-app' });
    pinned = await buildImage({ dir: join(work, 'pinned'), layers: [40_000], seed: 'stale-pinned' });
    await pushImage(app, upstream.host, 'team/app:1');
    await pushImage(pinned, upstream.host, 'team/pinned:1');
    for (const f of FAULTS) {
      cold[f] = await buildImage({ dir: join(work, `cold-${f}`), layers: [30_000], seed: `stale-cold-${f}` });
      await pushImage(cold[f], upstream.host, `team/cold-${f}:1`);
    }
    proxy = await startFaultProxy(upstream.url);
    sw = await startSwitch(proxy.port); // regcache → switch (can go down) → fault proxy → registry
    cache = await startRegcache({ upstreamUrl: sw.url, config: { ...SHORT_TIMEOUTS, regcache: { ...SHORT_TIMEOUTS.regcache, freshness: '0s' } } });

    const appLayer = app.manifests[0]!.layers[0]!;
    Object.assign(paths, {
      'tag, cached': '/v2/team/app/manifests/1',
      'digest, cached': `/v2/team/pinned/manifests/${pinned.manifestDigest}`,
      'blob, cached': `/v2/team/app/blobs/${appLayer.digest}`,
      'tag list, fetched before': '/v2/team/app/tags/list',
    });
    Object.assign(expectedDigest, {
      'tag, cached': app.manifestDigest,
      'digest, cached': pinned.manifestDigest,
      'blob, cached': appLayer.digest,
    });
    // warm the cached rows
    for (const row of ['tag, cached', 'digest, cached', 'blob, cached', 'tag list, fetched before'] as Row[]) {
      const o = await request(cache.url + paths[row]);
      assert.equal(o.status, 200, `warming ${row}`);
    }
  });

  after(async () => {
    await cache?.stop();
    await sw?.stop();
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  function checkCell(row: Row, fault: Fault, o: Outcome): void {
    const want = MATRIX[row][fault];
    const cell = `${row} × ${fault}`;
    assert.equal(o.error, undefined, `${cell}: ${o.error}`);
    if (want === '200') {
      assert.equal(o.status, 200, `${cell}: ${o.body.toString().slice(0, 300)}`);
      if (expectedDigest[row]) assert.equal(o.headers['docker-content-digest'], expectedDigest[row], cell);
      if (row === 'tag list, fetched before') assert.deepEqual(JSON.parse(o.body.toString()).tags, ['1'], cell);
      return;
    }
    const [status, code] = want.split(' ');
    assert.equal(o.status, Number(status), `${cell}: ${o.body.toString().slice(0, 300)}`);
    assert.equal(ociErrorCode(o, cell), code, cell);
    if (fault === '429') assert.equal(o.headers['retry-after'], '30', `${cell}: Retry-After`);
  }

  for (const fault of FAULTS) {
    it(`upstream ${fault}`, async () => {
      proxy.reset();
      if (fault === 'down') await sw.down();
      else proxy.setRules(FAULT_RULES[fault]);
      const logMark = cache.logs.length;
      const all = { ...paths, ...coldPaths(fault) } as Record<Row, string>;
      try {
        const rows = Object.keys(MATRIX) as Row[];
        const outcomes = await Promise.all(rows.map((row) => request(cache.url + all[row])));
        rows.forEach((row, i) => checkCell(row, fault, outcomes[i]!));
        // content addressed and cached: answered without asking upstream at all
        const asked = proxy.requests.map((r) => r.path).join('\n');
        assert.ok(!asked.includes(pinned.manifestDigest), 'upstream was asked for a cached digest');
        assert.ok(!asked.includes(app.manifests[0]!.layers[0]!.digest), 'upstream was asked for a cached blob');
        const stale = cache.logs.slice(logMark).filter((l) => /stale|serving cached/.test(String(l.msg)));
        assert.ok(stale.length >= 2, 'serving stale is logged (tag and tag list)');
      } finally {
        await sw.up();
        proxy.clearRules();
      }
      // once the fault clears, the uncached rows are fetched: at once, or — when the fault opened the upstream's
      // circuit breaker (down, 503, timeout) — with the first probe after its back-off window (5 s)
      for (const row of ['tag, uncached', 'blob, uncached'] as Row[]) {
        await waitFor(async () => (await request(cache.url + all[row])).status === 200, {
          timeoutMs: 15_000,
          intervalMs: 200,
          what: `${row} after the fault cleared`,
        });
      }
    });
  }

  it('the table in docs/reliability.md matches this test', async () => {
    const doc = await readFile(new URL('../../docs/reliability.md', import.meta.url), 'utf8');
    const header = doc.split('\n').find((l) => l.startsWith('| Request |'));
    assert.deepEqual(header?.split('|').slice(2, -1).map((c) => c.trim()), FAULTS, 'column order');
    for (const [row, cells] of Object.entries(MATRIX)) {
      const line = doc.split('\n').find((l) => l.startsWith(`| ${row} |`));
      assert.ok(line, `docs/reliability.md has no row "${row}"`);
      const docCells = line.split('|').slice(2, -1).map((c) => c.trim().replace(/`/g, ''));
      assert.deepEqual(docCells, FAULTS.map((f) => cells[f]), `row "${row}" differs`);
    }
  });
});
