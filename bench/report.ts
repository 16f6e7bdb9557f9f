// Rows, ratios and targets of the bench report; the markdown table.
import type { ServerResult } from './workload.js';
import type { Sizes } from './options.js';

interface Row {
  id: string;
  step: string;
  label: string;
  digits: number;
}

const bytesLabel = (n: number) =>
  n >= 2 ** 30 ? `${+(n / 2 ** 30).toFixed(1)} GiB` : n >= 2 ** 20 ? `${+(n / 2 ** 20).toFixed(0)} MiB` : `${n} B`;

export function rows(s: Sizes): Row[] {
  const five = `${s.fiveLayers.length} layers ~${Math.round(s.fiveLayers.reduce((a, b) => a + b, 0) / 1e6)} MB`;
  const big = bytesLabel(s.bigBlob);
  const conns = `${s.manifestConnections} conns`;
  return [
    { id: 'cold_pull_s', step: '1', label: `cold pull, ${five} (s)`, digits: 2 },
    { id: 'cold_pull_upstream_blob_gets', step: '1', label: 'upstream blob GETs per cold pull', digits: 0 },
    { id: 'warm_pull_s', step: '2', label: 'warm pull, same image (s)', digits: 2 },
    { id: 'warm_concurrent_s', step: '3', label: `${s.concurrentWarmClients} concurrent warm pulls (s)`, digits: 2 },
    { id: 'warm_concurrent_mbps', step: '3', label: `${s.concurrentWarmClients} concurrent warm pulls (MB/s)`, digits: 0 },
    { id: 'cold_concurrent_s', step: '4', label: `${s.concurrentColdClients} concurrent cold pulls of one image (s)`, digits: 2 },
    { id: 'cold_concurrent_upstream_blob_gets', step: '4', label: `upstream blob GETs for those ${s.concurrentColdClients} pulls`, digits: 0 },
    { id: 'small_cold_s', step: '4b', label: `${s.smallImages} small images sharing a base, cold, ${s.smallConcurrency} at a time (s)`, digits: 2 },
    { id: 'small_cold_upstream_blob_gets', step: '4b', label: `upstream blob GETs for those ${s.smallImages} pulls`, digits: 0 },
    { id: 'blob_cold_mbps', step: '5', label: `cold ${big} blob GET, 1 client (MB/s)`, digits: 0 },
    { id: 'blob_warm_mbps', step: '5', label: `warm ${big} blob GET, 1 client (MB/s)`, digits: 0 },
    { id: 'blob_warm_concurrent_mbps', step: '5', label: `warm ${big} blob GET, ${s.bigConcurrentClients} clients (aggregate MB/s)`, digits: 0 },
    { id: 'manifest_head_rps', step: '6', label: `manifest HEAD by tag, ${conns} (req/s)`, digits: 0 },
    { id: 'manifest_head_upstream', step: '6', label: `upstream manifest requests during one ${s.manifestSeconds}-s HEAD run`, digits: 0 },
    { id: 'manifest_get_tag_rps', step: '6', label: `manifest GET by tag, ${conns} (req/s)`, digits: 0 },
    { id: 'manifest_get_tag_upstream', step: '6', label: `upstream manifest requests during one ${s.manifestSeconds}-s by-tag run`, digits: 0 },
    { id: 'manifest_get_digest_rps', step: '6', label: `manifest GET by digest, ${conns} (req/s)`, digits: 0 },
    { id: 'peak_rss_mb', step: '7', label: 'peak RSS of the server process (MB)', digits: 0 },
    { id: 'cpu_s', step: '7', label: 'server CPU time over the whole workload (s)', digits: 1 },
  ];
}

export interface Target {
  id: string;
  text: string;
  met(regcache: number, distribution: number, ideal?: number): boolean;
}

export const TARGETS: Target[] = [
  { id: 'cold_pull_s', text: '≤ 1.0×', met: (r, d) => r <= d },
  { id: 'cold_concurrent_upstream_blob_gets', text: '= 1 per blob', met: (r, _d, ideal) => r === ideal },
  { id: 'blob_warm_mbps', text: '≥ 1.5×', met: (r, d) => r >= 1.5 * d },
  { id: 'blob_warm_concurrent_mbps', text: '≥ 1.5×', met: (r, d) => r >= 1.5 * d },
  { id: 'manifest_head_rps', text: '≥ 2×', met: (r, d) => r >= 2 * d },
  { id: 'peak_rss_mb', text: '≤ 1.0×', met: (r, d) => r <= d },
];

export interface TargetOutcome {
  id: string;
  label: string;
  target: string;
  ratio: number;
  met: boolean;
}

const find = (results: ServerResult[], server: string) => results.find((r) => r.server === server);

export function ratios(results: ServerResult[], sizes: Sizes): Record<string, number> {
  const r = find(results, 'regcache');
  const d = find(results, 'distribution');
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
  const d = find(results, 'distribution');
  if (!r || !d) return [];
  return TARGETS.flatMap((t) => {
    const a = r.metrics[t.id];
    const b = d.metrics[t.id];
    if (!a || !b) return [];
    const label = rows(sizes).find((row) => row.id === t.id)!.label;
    return [{ id: t.id, label, target: t.text, ratio: a.value / b.value, met: t.met(a.value, b.value, a.ideal) }];
  });
}

export function markdownTable(results: ServerResult[], sizes: Sizes): string {
  const servers = results.map((r) => r.server);
  const both = servers.length === 2;
  const rs = ratios(results, sizes);
  const outcomes = new Map(targetOutcomes(results, sizes).map((o) => [o.id, o]));
  const head = ['#', 'measurement', ...servers, ...(both ? ['ratio r/d', 'target'] : [])];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`];
  for (const row of rows(sizes)) {
    const cells = results.map((res) => {
      const m = res.metrics[row.id];
      if (!m) return '—';
      const ideal = m.ideal !== undefined ? ` (ideal ${m.ideal})` : '';
      return `${m.value.toFixed(row.digits)}${ideal}`;
    });
    if (cells.every((c) => c === '—')) continue;
    const extra: string[] = [];
    if (both) {
      const ratio = rs[row.id];
      extra.push(ratio === undefined ? '—' : `${ratio.toFixed(2)}×`);
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
