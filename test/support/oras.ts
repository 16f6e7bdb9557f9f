// The oras CLI (built by scripts/tools.sh into .tools/bin/oras), isolated from the user's credentials and config.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './regcache.js';

const run = promisify(execFile);

export const ORAS_BIN = process.env.REGCACHE_TEST_ORAS_BIN ?? join(REPO_ROOT, '.tools/bin/oras');

export const haveOras = (): boolean => existsSync(ORAS_BIN);

let home: string | undefined;

/** Runs `oras ARGS` (with an empty HOME and DOCKER_CONFIG: no stored credentials); throws with stderr on failure. */
export async function oras(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> {
  if (!home) {
    const dir = mkdtempSync(join(tmpdir(), 'regcache-oras-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    home = dir;
  }
  try {
    return await run(ORAS_BIN, args, {
      cwd: opts.cwd,
      timeout: opts.timeoutMs ?? 120_000,
      env: { ...process.env, HOME: home, DOCKER_CONFIG: join(home, 'docker'), XDG_CONFIG_HOME: join(home, 'config') },
      maxBuffer: 16 << 20,
    });
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    throw new Error(`oras ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}`);
  }
}
