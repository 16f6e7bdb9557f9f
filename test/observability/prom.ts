// Reads values out of a Prometheus text exposition, for assertions.

export type Samples = Array<{ name: string; labels: Record<string, string>; value: number }> & {
  /** Metric families the exposition declares (`# TYPE name ...`), with or without samples yet. */
  families?: Set<string>;
};

export function parseProm(text: string): Samples {
  const out: Samples = [];
  out.families = new Set();
  for (const line of text.split('\n')) {
    const type = /^# TYPE ([a-zA-Z_:][\w:]*) /.exec(line);
    if (type) out.families.add(type[1]!);
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/**
 * Sum of the samples named `name` whose labels include `labels`. A metric that is not exported at all throws:
 * 0 is only the answer for a declared metric without matching samples (a counter not yet incremented), never
 * for a misspelt or removed one.
 */
export function value(samples: Samples, name: string, labels: Record<string, string> = {}): number {
  const family = name.replace(/_(bucket|count|sum)$/, '');
  if (samples.families && !samples.families.has(name) && !samples.families.has(family) && !samples.some((s) => s.name === name)) {
    throw new Error(`metric ${name} is not exported`);
  }
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

export async function scrape(url: string): Promise<Samples> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`scrape ${url}: HTTP ${res.status}`);
  return parseProm(await res.text());
}
