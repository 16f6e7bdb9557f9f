/**
 * Byte sizes: a plain number is bytes; suffixes follow Kubernetes: K/KB, M/MB, G/GB, T/TB, P/PB are
 * powers of 1000, Ki/KiB, Mi/MiB, Gi/GiB, Ti/TiB, Pi/PiB powers of 1024 (case-insensitive, `B` alone = bytes).
 */
const UNITS: Record<string, number> = { '': 1, b: 1 };
for (const [i, p] of ['k', 'm', 'g', 't', 'p'].entries()) {
  UNITS[p] = UNITS[`${p}b`] = 1000 ** (i + 1);
  UNITS[`${p}i`] = UNITS[`${p}ib`] = 1024 ** (i + 1);
}

/** Bytes (integer), or undefined when not a valid size. */
export function parseSize(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isSafeInteger(input) && input >= 0 ? input : undefined;
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(input.trim());
  const mult = m && UNITS[m[2]!.toLowerCase()];
  if (!m || !mult) return undefined;
  const bytes = Math.floor(Number(m[1]) * mult);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** A fraction in (0, 1]: `90%` or `0.9`. Undefined when out of range or malformed. */
export function parseRatio(input: string | number): number | undefined {
  let r: number;
  if (typeof input === 'number') r = input;
  else {
    const m = /^(\d+(?:\.\d+)?)\s*(%?)$/.exec(input.trim());
    if (!m) return undefined;
    r = m[2] ? Number(m[1]) / 100 : Number(m[1]);
  }
  return Number.isFinite(r) && r > 0 && r <= 1 ? r : undefined;
}
