// An SVG chart of a bench run: for every row that has a "better" direction, how many times better (or worse)
// regcache did than each anchor, on a log scale. Made from the run's JSON, no dependencies.
import type { Sizes } from './options.js';
import { anchors, ratios, rows } from './report.js';
import type { ServerResult } from './workload.js';

const COLORS: Record<string, string> = { 'distribution-v3': '#1f6feb', distribution: '#8b949e' };
const NAMES: Record<string, string> = { 'distribution-v3': 'vs distribution v3', distribution: 'vs distribution 2.8' };
const esc = (s: string) => s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);

export function ratioChart(results: ServerResult[], sizes: Sizes, title: string): string {
  const names = anchors(results);
  const perAnchor = names.map((a) => ratios(results, sizes, a));
  const shown = rows(sizes).filter((row) => row.better && perAnchor.some((r) => r[row.id] !== undefined));
  const labelW = 430;
  const plotW = 420;
  const barH = 9;
  const rowH = names.length * (barH + 2) + 10;
  const top = 56;
  const height = top + shown.length * rowH + 40;
  const width = labelW + plotW + 60;
  const [lo, hi] = [0.1, 100];
  const x = (v: number) => labelW + ((Math.log10(Math.min(hi, Math.max(lo, v))) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotW;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="12" y="20" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="12" y="38" fill="#444">× better for regcache (right of 1×) or worse (left), log scale; time and memory rows inverted so that right is always better</text>`,
  ];
  for (const t of [0.1, 0.5, 1, 2, 10, 100]) {
    out.push(`<line x1="${x(t)}" y1="${top - 6}" x2="${x(t)}" y2="${height - 34}" stroke="${t === 1 ? '#000' : '#ddd'}"/>`);
    out.push(`<text x="${x(t)}" y="${height - 20}" text-anchor="middle" fill="#444">${t}×</text>`);
  }
  shown.forEach((row, i) => {
    const y0 = top + i * rowH;
    out.push(`<text x="${labelW - 8}" y="${y0 + rowH / 2}" text-anchor="end" dominant-baseline="middle">${esc(row.label)}</text>`);
    names.forEach((a, j) => {
      const ratio = perAnchor[j]![row.id];
      if (ratio === undefined) return;
      const adv = row.better === 'higher' ? ratio : 1 / ratio;
      const y = y0 + 5 + j * (barH + 2);
      const [x1, x2] = [x(1), x(adv)].sort((p, q) => p - q) as [number, number];
      out.push(`<rect x="${x1}" y="${y}" width="${Math.max(1, x2 - x1)}" height="${barH}" fill="${COLORS[a] ?? '#999'}"><title>${esc(`${row.label} ${NAMES[a] ?? a}: ${adv.toFixed(2)}×`)}</title></rect>`);
      out.push(`<text x="${x2 + (adv >= 1 ? 4 : -4)}" y="${y + barH - 1}" text-anchor="${adv >= 1 ? 'start' : 'end'}" font-size="10" fill="#333">${adv.toFixed(2)}×</text>`);
    });
  });
  names.forEach((a, j) => {
    out.push(`<rect x="${12 + j * 170}" y="${height - 14}" width="10" height="10" fill="${COLORS[a] ?? '#999'}"/>`);
    out.push(`<text x="${26 + j * 170}" y="${height - 5}">${esc(NAMES[a] ?? a)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
