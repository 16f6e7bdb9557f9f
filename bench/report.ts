// Rows, ratios and targets of the bench report; the markdown table.
import type { ServerResult } from './workload.js';
import type { Sizes } from './options.js';

interface Row {
  id: string;
  step: string;
  label: string;
  digits: number;
  /** which way is better for regcache (for the chart); absent: a count to compare with its ideal */
  better?: 'lower' | 'higher';
}

const bytesLabel = (n: number) =>
  n >= 2 ** 30 ? `${+(n / 2 ** 30).toFixed(1)} GiB` : n >= 2 ** 20 ? `${+(n / 2 ** 20).toFixed(0)} MiB` : `${n} B`;

export function rows(s: Sizes): Row[] {
  const five = `${s.fiveLayers.length} layers ~${Math.round(s.fiveLayers.reduce((a, b) => a + b, 0) / 1e6)} MB`;
  const big = bytesLabel(s.bigBlob);
  const conns = `${s.manifestConnections} conns`;
  const slow = `${s.slowClients.toLocaleString('en')} slow clients of a ${bytesLabel(s.slowBlob)} blob`;
  return [
    { id: 'startup_ms', step: '0', label: 'startup to first 200 on /v2/ (ms)', digits: 0, better: 'lower' },
    { id: 'idle_rss_mb', step: '0', label: 'idle RSS after start (MB)', digits: 0, better: 'lower' },
    { id: 'cold_pull_s', step: '1', label: `cold pull, ${five} (s)`, digits: 2, better: 'lower' },
    { id: 'cold_pull_upstream_blob_gets', step: '1', label: 'upstream blob GETs per cold pull', digits: 0 },
    { id: 'warm_pull_s', step: '2', label: 'warm pull, same image (s)', digits: 2, better: 'lower' },
    { id: 'warm_concurrent_s', step: '3', label: `${s.concurrentWarmClients} concurrent warm pulls (s)`, digits: 2, better: 'lower' },
    { id: 'warm_concurrent_mbps', step: '3', label: `${s.concurrentWarmClients} concurrent warm pulls (MB/s)`, digits: 0, better: 'higher' },
    { id: 'cold_concurrent_s', step: '4', label: `${s.concurrentColdClients} concurrent cold pulls of one image (s)`, digits: 2, better: 'lower' },
    { id: 'cold_concurrent_upstream_blob_gets', step: '4', label: `upstream blob GETs for those ${s.concurrentColdClients} pulls`, digits: 0 },
    { id: 'small_cold_s', step: '4b', label: `${s.smallImages} small images sharing a base, cold, ${s.smallConcurrency} at a time (s)`, digits: 2, better: 'lower' },
    { id: 'small_cold_upstream_blob_gets', step: '4b', label: `upstream blob GETs for those ${s.smallImages} pulls`, digits: 0 },
    { id: 'blob_cold_mbps', step: '5', label: `cold ${big} blob GET, 1 client (MB/s)`, digits: 0, better: 'higher' },
    { id: 'blob_warm_mbps', step: '5', label: `warm ${big} blob GET, 1 client (MB/s)`, digits: 0, better: 'higher' },
    { id: 'blob_warm_concurrent_mbps', step: '5', label: `warm ${big} blob GET, ${s.bigConcurrentClients} clients (aggregate MB/s)`, digits: 0, better: 'higher' },
    { id: 'manifest_head_rps', step: '6', label: `manifest HEAD by tag, ${conns} (req/s)`, digits: 0, better: 'higher' },
    { id: 'manifest_head_upstream', step: '6', label: `upstream manifest requests during one ${s.manifestSeconds}-s HEAD run`, digits: 0 },
    { id: 'manifest_get_tag_rps', step: '6', label: `manifest GET by tag, ${conns} (req/s)`, digits: 0, better: 'higher' },
    { id: 'manifest_get_tag_upstream', step: '6', label: `upstream manifest requests during one ${s.manifestSeconds}-s by-tag run`, digits: 0 },
    { id: 'manifest_get_digest_rps', step: '6', label: `manifest GET by digest, ${conns} (req/s)`, digits: 0, better: 'higher' },
    { id: 'slow_clients_s', step: '8', label: `${slow}: all done (s)`, digits: 1, better: 'lower' },
    { id: 'slow_clients_completed', step: '8', label: `${slow}: complete bodies`, digits: 0 },
    { id: 'slow_clients_peak_rss_mb', step: '8', label: `${slow}: peak RSS (MB)`, digits: 0, better: 'lower' },
    { id: 'peak_rss_mb', step: '7', label: 'peak RSS of the server process over the workload (MB)', digits: 0, better: 'lower' },
    { id: 'cpu_s', step: '7', label: 'server CPU time over the whole workload (s)', digits: 1, better: 'lower' },
  ];
}

export interface Target {
  id: string;
  text: string;
  met(regcache: number, anchor: number, ideal?: number): boolean;
}

/** Targets of regcache against distribution v3 (`registry:3`), the anchor users run today. */
export const TARGETS: Target[] = [
  { id: 'cold_pull_s', text: '≤ 0.9×', met: (r, a) => r <= 0.9 * a },
  { id: 'cold_concurrent_upstream_blob_gets', text: '= 1 per blob', met: (r, _a, ideal) => r === ideal },
  { id: 'blob_cold_mbps', text: '≥ 1.0×', met: (r, a) => r >= a },
  { id: 'blob_warm_mbps', text: '≥ 1.5×', met: (r, a) => r >= 1.5 * a },
  { id: 'blob_warm_concurrent_mbps', text: '≥ 1.5×', met: (r, a) => r >= 1.5 * a },
  { id: 'manifest_get_tag_rps', text: '≥ 10×', met: (r, a) => r >= 10 * a },
  { id: 'manifest_get_digest_rps', text: '≥ 10×', met: (r, a) => r >= 10 * a },
  { id: 'peak_rss_mb', text: '≤ 1.0×', met: (r, a) => r <= a },
  { id: 'idle_rss_mb', text: '≤ 1.0×', met: (r, a) => r <= a },
];

export interface TargetOutcome {
  id: string;
  label: string;
  target: string;
  ratio: number;
  met: boolean;
}

const find = (results: ServerResult[], server: string) => results.find((r) => r.server === server);

/** The anchors present in a run, v3 first: ratios are reported against each, targets against the first. */
export function anchors(results: ServerResult[]): string[] {
  return ['distribution-v3', 'distribution'].filter((a) => find(results, a));
}

/** regcache / anchor for every row both measured. */
export function ratios(results: ServerResult[], sizes: Sizes, anchor: string): Record<string, number> {
  const r = find(results, 'regcache');
  const d = find(results, anchor);
  if (!r || !d) return {};
  const out: Record<string, number> = {};
  for (const row of rows(sizes)) {
    const a = r.metrics[row.id]?.value;
    const b = d.metrics[row.id]?.value;
    if (a !== undefined && b !== undefined && b !== 0) out[row.id] = a / b;
  }
  return out;
}

export function targetOutcomes(results: ServerResult[], sizes: Sizes): TargetOutcome[] {
  const r = find(results, 'regcache');
  const anchor = anchors(results)[0];
  const d = anchor ? find(results, anchor) : undefined;
  if (!r || !d) return [];
  return TARGETS.flatMap((t) => {
    const a = r.metrics[t.id];
    const b = d.metrics[t.id];
    if (!a || !b) return [];
    const label = rows(sizes).find((row) => row.id === t.id)!.label;
    return [{ id: t.id, label, target: t.text, ratio: a.value / b.value, met: t.met(a.value, b.value, a.ideal) }];
  });
}

const SHORT: Record<string, string> = { 'distribution-v3': 'v3', distribution: '2.8' };

export function markdownTable(results: ServerResult[], sizes: Sizes): string {
  const servers = results.map((r) => r.server);
  const withRegcache = servers.includes('regcache');
  const anchorNames = withRegcache ? anchors(results) : [];
  const rs = anchorNames.map((a) => ratios(results, sizes, a));
  const outcomes = new Map(targetOutcomes(results, sizes).map((o) => [o.id, o]));
  const head = ['#', 'measurement', ...servers, ...anchorNames.map((a) => `regcache / ${SHORT[a] ?? a}`), ...(anchorNames.length ? [`target (vs ${SHORT[anchorNames[0]!]})`] : [])];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`];
  for (const row of rows(sizes)) {
    const cells = results.map((res) => {
      const m = res.metrics[row.id];
      if (!m) return '—';
      const ideal = m.ideal !== undefined ? ` (ideal ${m.ideal})` : '';
      return `${m.value.toFixed(row.digits)}${ideal}`;
    });
    if (cells.every((c) => c === '—')) continue;
    const extra = rs.map((r) => (r[row.id] === undefined ? '—' : `${r[row.id]!.toFixed(2)}×`));
    if (anchorNames.length) {
      const o = outcomes.get(row.id);
      extra.push(o ? `${o.target} ${o.met ? 'met' : '**MISSED**'}` : '');
    }
    lines.push(`| ${row.step} | ${row.label} | ${[...cells, ...extra].join(' | ')} |`);
  }
  return lines.join('\n');
}

/** Per step: each server's CPU seconds (system part in brackets) and peak RSS so far: where the CPU goes. */
export function stepTable(results: ServerResult[]): string {
  const head = ['step', ...results.map((r) => `${r.server} CPU s (sys)`), ...results.map((r) => `${r.server} peak RSS MB`)];
  const lines = [`| ${head.join(' | ')} |`, `|---|${head.slice(1).map(() => '---:').join('|')}|`];
  for (const step of Object.keys(results[0]?.steps ?? {})) {
    const cpu = results.map((r) => {
      const s = r.steps[step];
      return s ? `${s.serverCpuSeconds.toFixed(1)} (${s.serverSystemCpuSeconds.toFixed(1)})` : '—';
    });
    const rss = results.map((r) => r.steps[step]?.peakRssMbSoFar.toFixed(0) ?? '—');
    lines.push(`| ${step} | ${[...cpu, ...rss].join(' | ')} |`);
  }
  return lines.join('\n');
}
