// Temp dirs of the bench, under --tmp DIR or the OS temp dir.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let base = tmpdir();

export function setTempBase(dir: string | undefined): void {
  if (dir) base = dir;
}

/** A fresh directory; the caller removes it (removeDir from test/support/tmp). */
export function makeBenchDir(prefix: string): Promise<string> {
  return mkdtemp(join(base, `regcache-bench-${prefix}-`));
}
