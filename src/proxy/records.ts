/**
 * A small JSON record read back from storage (tag, manifest link, tag list), or undefined when it is torn,
 * empty or not what we wrote (a crash on a filesystem without the rename guarantee, a disk error, a hand
 * edit): the caller treats that as a cache miss and refetches, never as a permanent error.
 */
export function parseRecord<T>(buf: Buffer | null, valid: (v: Partial<T>) => boolean): T | undefined {
  if (!buf) return undefined;
  try {
    const v = JSON.parse(buf.toString('utf8')) as Partial<T> | null;
    return v !== null && typeof v === 'object' && valid(v) ? (v as T) : undefined;
  } catch {
    return undefined;
  }
}
