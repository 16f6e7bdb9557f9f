/**
 * Go `time.ParseDuration` syntax (`168h`, `1h30m`, `10s`, `500ms`, `1.5h`, `0`), as distribution's config uses.
 * Extension: a bare number (`60`, or a YAML number) means seconds. Negative durations are rejected.
 */
const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3, // U+00B5
  'μs': 1e-3, // U+03BC
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/** Milliseconds (sub-millisecond precision kept to the microsecond), or undefined when not a valid duration. */
export function parseDuration(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? round(input * 1000) : undefined;
  const s = input.trim().replace(/^\+/, '');
  if (s === '') return undefined;
  if (/^(\d+(\.\d*)?|\.\d+)$/.test(s)) return round(Number(s) * 1000);
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < s.length) {
    const m = PART.exec(s);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return Number.isFinite(total) ? round(total) : undefined;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
