// The workload. Every measurement runs against each server in turn (alternating which goes first), so both
// see the same background load on a shared machine; each server has its own storage and its own counting
// proxy in front of the one upstream.
import { join } from 'node:path';
import type { FaultProxy } from '../test/support/faultproxy.js';
import { removeDir } from '../test/support/tmp.js';
import type { Fixtures } from './fixtures.js';
import { cannonade, curlGet, MANIFEST_ACCEPT, median, pull, slowGet, timed, withConcurrency } from './load.js';
import type { Sizes } from './options.js';
import { sampleProcess, type ProcSampler } from './procstat.js';
import type { ServerUnderTest } from './servers.js';

export interface Measurement {
  /** the number reported: the median of the samples */
  value: number;
  samples: number[];
  /** what a perfect mirror would do (e.g. the number of distinct blobs) */
  ideal?: number;
}

export interface ServerResult {
  server: string;
  describe: string;
  metrics: Record<string, Measurement>;
  /** per step: wall time, the server's CPU time (and its system part), its peak RSS so far (which step raised it) */
  steps: Record<string, StepTotals>;
  warnings: string[];
}

export interface StepTotals {
  wallSeconds: number;
  serverCpuSeconds: number;
  serverSystemCpuSeconds: number;
  peakRssMbSoFar: number;
}

export interface Side {
  server: ServerUnderTest;
  /** the counting proxy between this server and the upstream */
  upstream: FaultProxy;
  /** empty dir for pulled copies */
  pullDir: string;
}

const BLOB_GET = { method: 'GET', path: /\/blobs\/sha256:/ };
const MANIFEST_REQ = { path: /\/manifests\// };
const mbps = (bytes: number, seconds: number) => bytes / 1e6 / seconds;

class Run {
  readonly result: ServerResult;
  readonly proc: ProcSampler;
  private pullNo = 0;

  constructor(
    readonly side: Side,
    private readonly say: (msg: string) => void,
  ) {
    this.result = { server: side.server.name, describe: side.server.describe, metrics: {}, steps: {}, warnings: [] };
    this.proc = sampleProcess(side.server.pid);
    this.record('startup_ms', side.server.startupMs);
    this.record('idle_rss_mb', this.proc.rssBytes() / 1e6);
  }

  log(msg: string) {
    this.say(`[${this.side.server.name}] ${msg}`);
  }

  record(id: string, value: number, ideal?: number) {
    const m = (this.result.metrics[id] ??= { value, samples: [], ideal });
    m.samples.push(value);
    m.value = median(m.samples);
  }

  warnIf(cond: boolean, msg: string) {
    if (!cond) return;
    this.result.warnings.push(msg);
    this.log(`WARNING: ${msg}`);
  }

  /** Runs fn, adding its wall time and the server's CPU time to the step's totals. */
  async step<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const cpu0 = this.proc.cpu();
    let out!: T;
    const wall = await timed(async () => (out = await fn()));
    const cpu1 = this.proc.cpu();
    const s = (this.result.steps[name] ??= {
      wallSeconds: 0,
      serverCpuSeconds: 0,
      serverSystemCpuSeconds: 0,
      peakRssMbSoFar: 0,
    });
    s.wallSeconds += wall;
    s.serverCpuSeconds += cpu1.user + cpu1.system - cpu0.user - cpu0.system;
    s.serverSystemCpuSeconds += cpu1.system - cpu0.system;
    s.peakRssMbSoFar = this.proc.peakRssBytes() / 1e6;
    return out;
  }

  /** skopeo copy of ref through this server into a fresh dir; returns seconds, removes the copy afterwards. */
  async pull(ref: string): Promise<number> {
    const dest = join(this.side.pullDir, String(this.pullNo++));
    try {
      return await timed(() => pull(this.side.server.host, ref, dest));
    } finally {
      await removeDir(dest);
    }
  }

  /** fn's result and how many upstream requests matching `filter` it caused. */
  async counting<T>(filter: { method?: string; path?: RegExp }, fn: () => Promise<T>): Promise<[T, number]> {
    const before = this.side.upstream.count(filter);
    const out = await fn();
    return [out, this.side.upstream.count(filter) - before];
  }
}

export async function runWorkload(
  sides: Side[],
  fx: Fixtures,
  sizes: Sizes,
  say: (msg: string) => void,
): Promise<ServerResult[]> {
  const runs = sides.map((side) => new Run(side, say));
  let turn = 0;
  /** the servers, which one goes first rotating from one measurement to the next */
  const inTurn = () => {
    const k = turn++ % runs.length;
    return [...runs.slice(k), ...runs.slice(0, k)];
  };

  try {
    for (const image of fx.five) {
      for (const r of inTurn()) {
        const [secs, gets] = await r.step('1 cold pull', () => r.counting(BLOB_GET, () => r.pull(image.ref)));
        r.record('cold_pull_s', secs);
        r.record('cold_pull_upstream_blob_gets', gets, image.blobCount);
        r.log(`1. cold pull ${image.ref}: ${secs.toFixed(2)} s, ${gets} upstream blob GETs`);
      }
    }

    const warm = fx.five[0]!;
    for (let i = 0; i < sizes.warmRepeats; i++) {
      for (const r of inTurn()) {
        const [secs, gets] = await r.step('2 warm pull', () => r.counting(BLOB_GET, () => r.pull(warm.ref)));
        r.record('warm_pull_s', secs);
        r.warnIf(gets > 0, `${gets} upstream blob GETs during a warm pull`);
        r.log(`2. warm pull: ${secs.toFixed(2)} s`);
      }
    }

    for (const r of inTurn()) {
      const n = sizes.concurrentWarmClients;
      const secs = await r.step('3 concurrent warm pulls', () =>
        timed(() => Promise.all(Array.from({ length: n }, () => r.pull(warm.ref)))),
      );
      r.record('warm_concurrent_s', secs);
      r.record('warm_concurrent_mbps', mbps(n * warm.bytes, secs));
      r.log(`3. ${n} concurrent warm pulls: ${secs.toFixed(2)} s, ${mbps(n * warm.bytes, secs).toFixed(0)} MB/s`);
    }

    for (const r of inTurn()) {
      const n = sizes.concurrentColdClients;
      const [secs, gets] = await r.step('4 concurrent cold pulls', () =>
        r.counting(BLOB_GET, () => timed(() => Promise.all(Array.from({ length: n }, () => r.pull(fx.herd.ref))))),
      );
      r.record('cold_concurrent_s', secs);
      r.record('cold_concurrent_upstream_blob_gets', gets, fx.herd.blobCount);
      r.log(`4. ${n} concurrent cold pulls: ${secs.toFixed(2)} s, ${gets} upstream blob GETs (ideal ${fx.herd.blobCount})`);
    }

    for (const r of inTurn()) {
      const [secs, gets] = await r.step('4b small images', () =>
        r.counting(BLOB_GET, () =>
          timed(() => withConcurrency(fx.small.length, sizes.smallConcurrency, (i) => r.pull(fx.small[i]!.ref).then())),
        ),
      );
      r.record('small_cold_s', secs);
      r.record('small_cold_upstream_blob_gets', gets, fx.smallDistinctBlobs);
      r.log(`4b. ${fx.small.length} small images: ${secs.toFixed(2)} s, ${gets} upstream blob GETs (ideal ${fx.smallDistinctBlobs})`);
    }

    const { size } = fx.big;
    const blobUrl = (r: Run) => `${r.side.server.url}/v2/${fx.big.repo}/blobs/${fx.big.digest}`;
    for (const r of inTurn()) {
      const dl = await r.step('5 blob cold', () => curlGet(blobUrl(r), size));
      r.record('blob_cold_mbps', mbps(dl.bytes, dl.seconds));
      r.log(`5. cold blob GET: ${mbps(dl.bytes, dl.seconds).toFixed(0)} MB/s`);
    }
    for (const r of inTurn()) await curlGet(blobUrl(r), size); // unmeasured: stored for sure, and in the page cache
    for (let i = 0; i < sizes.bigRepeats; i++) {
      for (const r of inTurn()) {
        const [dl, gets] = await r.step('5 blob warm', () => r.counting(BLOB_GET, () => curlGet(blobUrl(r), size)));
        r.warnIf(gets > 0, `${gets} upstream blob GETs during a warm blob GET`);
        r.record('blob_warm_mbps', mbps(dl.bytes, dl.seconds));
        r.log(`5. warm blob GET: ${mbps(dl.bytes, dl.seconds).toFixed(0)} MB/s`);
      }
    }
    for (const r of inTurn()) {
      const n = sizes.bigConcurrentClients;
      const [secs, gets] = await r.step('5 blob warm concurrent', () =>
        r.counting(BLOB_GET, () => timed(() => Promise.all(Array.from({ length: n }, () => curlGet(blobUrl(r), size))))),
      );
      r.warnIf(gets > 0, `${gets} upstream blob GETs during the concurrent warm blob GETs`);
      r.record('blob_warm_concurrent_mbps', mbps(n * size, secs));
      r.log(`5. warm blob GET, ${n} clients: ${mbps(n * size, secs).toFixed(0)} MB/s aggregate`);
    }

    const manifestKinds = [
      { id: 'manifest_head', label: 'HEAD by tag', method: 'HEAD', ref: 'latest' },
      { id: 'manifest_get_tag', label: 'GET by tag', method: 'GET', ref: 'latest' },
      { id: 'manifest_get_digest', label: 'GET by digest', method: 'GET', ref: warm.manifestDigest },
    ] as const;
    for (const kind of manifestKinds) {
      for (let i = 0; i < sizes.manifestRepeats; i++) {
        for (const r of inTurn()) {
          const [c, upstreamReqs] = await r.step(`6 manifest ${kind.label}`, () =>
            r.counting(MANIFEST_REQ, () =>
              cannonade(`${r.side.server.url}/v2/${warm.repo}/manifests/${kind.ref}`, {
                method: kind.method,
                headers: { Accept: MANIFEST_ACCEPT },
                connections: sizes.manifestConnections,
                seconds: sizes.manifestSeconds,
              }),
            ),
          );
          r.warnIf(c.reqPerSec === 0 || c.non2xx + c.errors > 0, `${kind.label}: ${c.reqPerSec.toFixed(0)} req/s, ${c.non2xx} non-2xx answers, ${c.errors} errors/timeouts`);
          r.record(`${kind.id}_rps`, c.reqPerSec);
          r.record(`${kind.id}_upstream`, upstreamReqs);
          r.log(`6. manifest ${kind.label}: ${c.reqPerSec.toFixed(0)} req/s (p99 ${c.p99Ms} ms), ${upstreamReqs} upstream manifest requests`);
        }
      }
    }

    const slowUrl = (r: Run) => `${r.side.server.url}/v2/${fx.slow.repo}/blobs/${fx.slow.digest}`;
    for (const r of inTurn()) {
      await curlGet(slowUrl(r), fx.slow.size); // unmeasured: the slow clients read a cached blob
      const n = sizes.slowClients;
      r.proc.stepPeakRssBytes();
      let completed = 0;
      const secs = await r.step('8 slow clients', () =>
        timed(() => Promise.all(Array.from({ length: n }, () => slowGet(slowUrl(r), fx.slow.size, sizes.slowClientRate).then((ok) => void (ok && completed++))))),
      );
      const rss = r.proc.stepPeakRssBytes() / 1e6;
      r.record('slow_clients_s', secs);
      r.record('slow_clients_completed', completed, n);
      r.record('slow_clients_peak_rss_mb', rss);
      r.warnIf(completed < n, `${n - completed} of ${n} slow clients did not get the whole blob`);
      r.log(`8. ${n} slow clients: ${completed} complete in ${secs.toFixed(1)} s, peak RSS ${rss.toFixed(0)} MB`);
    }

    for (const r of runs) {
      r.record('peak_rss_mb', r.proc.peakRssBytes() / 1e6);
      r.record('cpu_s', r.proc.cpuSeconds());
      r.log(`7. peak RSS ${(r.proc.peakRssBytes() / 1e6).toFixed(0)} MB, CPU ${r.proc.cpuSeconds().toFixed(1)} s`);
    }
    return runs.map((r) => r.result);
  } finally {
    for (const r of runs) r.proc.stop();
  }
}
