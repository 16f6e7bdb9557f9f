// The benchmark works (a smoke run with --quick sizes against regcache, distribution v3 and 2.8): every row is
// measured for every server, and the JSON and the chart are written. No timing is asserted.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { REPO_ROOT } from '../support/regcache.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

let dir: string;
before(async () => {
  dir = await makeTempDir('bench-smoke-');
});
after(async () => {
  await removeDir(dir);
});

it('npm run bench -- --quick measures every row for regcache and both anchors', async () => {
  const out = join(dir, 'quick.json');
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', join(REPO_ROOT, 'bench/run.ts'), '--quick', '--tsx', '--out', out, '--tmp', dir],
    { cwd: REPO_ROOT, timeout: 600_000, maxBuffer: 16 * 1024 * 1024 },
  );
  assert.match(stdout, /\| # \| measurement \| regcache \| distribution-v3 \| distribution \|/);
  const json = JSON.parse(await readFile(out, 'utf8')) as {
    results: Array<{ server: string; metrics: Record<string, { value: number; ideal?: number }>; warnings: string[] }>;
  };
  assert.deepEqual(json.results.map((r) => r.server), ['regcache', 'distribution-v3', 'distribution']);
  const ids = Object.keys(json.results[0]!.metrics).sort();
  for (const id of ['startup_ms', 'idle_rss_mb', 'cold_pull_s', 'blob_cold_mbps', 'blob_warm_mbps', 'manifest_get_digest_rps', 'slow_clients_s', 'slow_clients_peak_rss_mb', 'peak_rss_mb']) {
    assert.ok(ids.includes(id), `row ${id} measured`);
  }
  for (const r of json.results) assert.deepEqual(Object.keys(r.metrics).sort(), ids, `${r.server} measured every row`);
  const regcache = json.results[0]!;
  const herd = regcache.metrics.cold_concurrent_upstream_blob_gets!;
  assert.equal(herd.value, herd.ideal, 'concurrent cold pulls: exactly one upstream GET per blob');
  const svg = await readFile(out.replace(/\.json$/, '.svg'), 'utf8');
  assert.match(svg, /^<svg /);
});
