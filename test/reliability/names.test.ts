// Nothing grows with the number of distinct names clients invent, and a name scanner cannot spend the
// upstream's request budget: 10,000 invented names against a cached blob and against the upstream, twice.
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { freePort, startRegcacheProcess } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { copyToDir } from '../support/skopeo.js';
import { rssMb, waitFor } from '../support/process.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const NAMES = 10_000;
const CONCURRENCY = 32;

/** GETs every path, CONCURRENCY at a time; returns how many answered each status. */
async function sweep(base: string, paths: string[], dispatcher: Agent): Promise<Map<number, number>> {
  const counts = new Map<number, number>();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < paths.length) {
        const res = await request(base + paths[next++]!, { dispatcher });
        await res.body.dump();
        counts.set(res.statusCode, (counts.get(res.statusCode) ?? 0) + 1);
      }
    }),
  );
  return counts;
}

describe('10,000 invented names', () => {
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let work: string;
  let img: BuiltImage;

  before(async () => {
    work = await makeTempDir('names-');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [100_000], seed: 'names' });
    await pushImage(img, upstream.host, 'team/app:1');
    proxy = await startFaultProxy(upstream.url);
  });

  after(async () => {
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  it('cost one upstream request per name and window, and no lasting memory or journal growth', async (t) => {
    const root = join(work, 'data');
    const port = await freePort();
    const server = await startRegcacheProcess({
      port,
      configYaml: [
        'version: 0.1',
        'log: { level: warn, accesslog: { disabled: true } }',
        `storage: { filesystem: { rootdirectory: ${root} } }`,
        `http: { addr: 127.0.0.1:${port} }`,
        `proxy: { remoteurl: ${proxy.url} }`,
        'regcache: { negativettl: 10m }',
      ].join('\n'),
    });
    const dispatcher = new Agent({ connections: CONCURRENCY });
    try {
      await copyToDir(`docker://127.0.0.1:${port}/team/app:1`, join(work, 'pulled'));
      const layer = img.manifests[0]!.layers[0]!.digest;
      const journal = join(root, '_metadata', 'index.jsonl');
      // The index writes the pull to its journal within its flush interval.
      await waitFor(async () => (await readFile(journal, 'utf8').catch(() => '')).includes(layer), { what: 'the pull in the journal' });
      const journalBefore = (await stat(journal)).size;
      const rssBefore = await rssMb(server.proc.pid);

      const blobPaths = Array.from({ length: NAMES }, (_, i) => `/v2/scan/b${i}/blobs/${layer}`);
      const manifestPaths = Array.from({ length: NAMES }, (_, i) => `/v2/scan/m${i}/manifests/latest`);
      const report: Record<string, unknown> = { rssBeforeMb: Math.round(rssBefore) };
      for (const round of [1, 2]) {
        proxy.reset();
        const blobs = await sweep(`http://127.0.0.1:${port}`, blobPaths, dispatcher);
        const manifests = await sweep(`http://127.0.0.1:${port}`, manifestPaths, dispatcher);
        assert.deepEqual([...blobs], [[404, NAMES]], `round ${round}: the cached blob is not served under invented names`);
        assert.deepEqual([...manifests], [[404, NAMES]], `round ${round}: unknown manifests are 404`);
        const upstreamRequests = proxy.requests.length;
        report[`round${round}UpstreamRequests`] = upstreamRequests;
        report[`round${round}RssMb`] = Math.round(await rssMb(server.proc.pid));
        if (round === 1) assert.ok(upstreamRequests <= 2 * NAMES + 10, `round 1: at most one upstream request per name (${upstreamRequests})`);
        else assert.equal(upstreamRequests, 0, 'round 2: every 404 answered from the negative cache');
      }
      await server.stop(); // a graceful stop flushes the index
      const journalAfter = (await stat(journal)).size;
      report.journalBytesBefore = journalBefore;
      report.journalBytesAfter = journalAfter;
      t.diagnostic(JSON.stringify(report));
      assert.ok(journalAfter - journalBefore < 4096, `the journal did not grow with the names (${journalBefore} → ${journalAfter})`);
      assert.ok((report.round2RssMb as number) - rssBefore < 64, `RSS bounded: ${JSON.stringify(report)}`);
    } finally {
      await dispatcher.close();
      await server.stop();
    }
  });
});
