/**
 * `regcache client-config --write [ROOT]`: installs generated files where they belong (under ROOT when
 * given, for tests and images), backing up what was there and merging into an existing daemon.json.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { ClientConfigError } from './options.js';
import type { GeneratedFile } from './types.js';

export interface WrittenFile {
  /** Where it was written (ROOT included). */
  path: string;
  /** The previous file, copied aside; absent when there was none or it was identical. */
  backup?: string;
  /** Merged into an existing file rather than replacing it. */
  merged: boolean;
  unchanged: boolean;
}

/** Where a generated path lands: `~/` is the home directory, a relative path is relative to cwd; all under root. */
export function targetPath(path: string, opts: { root?: string; home: string; cwd: string }): string {
  let abs = path.startsWith('~/') ? join(opts.home, path.slice(2)) : isAbsolute(path) ? path : resolve(opts.cwd, path);
  if (opts.root) abs = join(resolve(opts.root), abs);
  return abs;
}

/** Union of list values (first-seen order), other keys of the existing file kept, ours added. */
export function mergeJsonLists(existingText: string, ours: string, where: string): string {
  let existing: unknown;
  try {
    existing = existingText.trim() === '' ? {} : JSON.parse(existingText);
  } catch (e) {
    throw new ClientConfigError(`${where} is not valid JSON (${(e as Error).message}); fix it first, nothing was written`);
  }
  if (existing === null || typeof existing !== 'object' || Array.isArray(existing)) {
    throw new ClientConfigError(`${where} is not a JSON object; fix it first, nothing was written`);
  }
  const out: Record<string, unknown> = { ...(existing as Record<string, unknown>) };
  for (const [k, v] of Object.entries(JSON.parse(ours) as Record<string, unknown>)) {
    const cur = out[k];
    if (Array.isArray(v) && (cur === undefined || Array.isArray(cur))) out[k] = [...new Set([...((cur as unknown[]) ?? []), ...v])];
    else out[k] = v;
  }
  return JSON.stringify(out, null, 2) + '\n';
}

function backupName(path: string, now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '');
  let name = `${path}.regcache-bak-${stamp}`;
  for (let i = 1; existsSync(name); i++) name = `${path}.regcache-bak-${stamp}-${i}`;
  return name;
}

/**
 * Writes every file; all contents (and merges) are computed before the first write, so a bad existing
 * daemon.json leaves everything untouched. Each file is replaced atomically (temp file + rename).
 */
export async function writeClientFiles(
  files: GeneratedFile[],
  opts: { root?: string; home: string; cwd?: string; now?: Date },
): Promise<WrittenFile[]> {
  const cwd = opts.cwd ?? process.cwd();
  const plan: Array<{ target: string; content: string; old?: string; merged: boolean }> = [];
  for (const f of files) {
    const target = targetPath(f.path, { root: opts.root, home: opts.home, cwd });
    const old = existsSync(target) ? await readFile(target, 'utf8') : undefined;
    const content = f.merge === 'json-lists' && old !== undefined ? mergeJsonLists(old, f.content, target) : f.content;
    plan.push({ target, content, old, merged: f.merge !== undefined && old !== undefined });
  }
  const now = opts.now ?? new Date();
  const written: WrittenFile[] = [];
  for (const p of plan) {
    if (p.old === p.content) {
      written.push({ path: p.target, merged: p.merged, unchanged: true });
      continue;
    }
    await mkdir(dirname(p.target), { recursive: true });
    let backup: string | undefined;
    if (p.old !== undefined) {
      backup = backupName(p.target, now);
      await copyFile(p.target, backup);
    }
    const tmp = `${p.target}.regcache-tmp-${process.pid}`;
    await writeFile(tmp, p.content, { mode: 0o644 });
    await rename(tmp, p.target);
    written.push({ path: p.target, ...(backup ? { backup } : {}), merged: p.merged, unchanged: false });
  }
  return written;
}
