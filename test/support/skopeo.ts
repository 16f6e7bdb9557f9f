// Runs skopeo against plain-HTTP loopback registries, isolated from the user's and the system's container config.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileDigest } from './digest.js';

let isolated: { env: NodeJS.ProcessEnv; policy: string } | undefined;

/**
 * Env pointing skopeo at empty registries.conf / containers.conf and a private auth file, plus a permissive
 * policy.json path to pass as --policy (so /etc/containers/policy.json is not needed). Created once per process.
 */
export function skopeoConfig(): { env: NodeJS.ProcessEnv; policy: string } {
  if (!isolated) {
    const dir = mkdtempSync(join(tmpdir(), 'regcache-skopeo-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'registries.conf'), 'unqualified-search-registries = []\n');
    writeFileSync(join(dir, 'containers.conf'), '');
    writeFileSync(join(dir, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    isolated = {
      env: {
        CONTAINERS_REGISTRIES_CONF: join(dir, 'registries.conf'),
        CONTAINERS_CONF: join(dir, 'containers.conf'),
        REGISTRY_AUTH_FILE: join(dir, 'auth.json'), // never created: no stored credentials
        DOCKER_CONFIG: join(dir, 'docker'),
      },
      policy: join(dir, 'policy.json'),
    };
  }
  return isolated;
}

interface RunResult {
  stdout: Buffer;
  stderr: string;
}

async function run(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv }): Promise<RunResult> {
  const { timeoutMs = 120_000 } = opts;
  const config = skopeoConfig();
  const fullArgs = ['--policy', config.policy, ...args];
  const child = spawn('skopeo', fullArgs, {
    env: { ...process.env, ...config.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c, s) => resolve([c, s]));
  }).finally(() => clearTimeout(timer));
  const stderr = Buffer.concat(err).toString('utf8');
  if (code !== 0) {
    const why = timedOut ? `timed out after ${timeoutMs} ms` : `exited with ${code ?? signal}`;
    throw new Error(`skopeo ${fullArgs.join(' ')} ${why}:\n${stderr}`);
  }
  return { stdout: Buffer.concat(out), stderr };
}

/** Runs skopeo with the isolated config; throws with stderr on non-zero exit. */
export async function skopeo(
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<{ stdout: string; stderr: string }> {
  const { stdout, stderr } = await run(args, opts);
  return { stdout: stdout.toString('utf8'), stderr };
}

/** skopeo copy --src-tls-verify=false SRC dir:DEST */
export async function copyToDir(
  src: string,
  destDir: string,
  opts: { all?: boolean; creds?: string; timeoutMs?: number } = {},
): Promise<void> {
  const args = ['copy', '--quiet', '--src-tls-verify=false'];
  if (opts.all) args.push('--all');
  if (opts.creds) args.push('--src-creds', opts.creds);
  args.push(src, `dir:${destDir}`);
  await run(args, { timeoutMs: opts.timeoutMs ?? 600_000 });
}

/** The exact manifest bytes: skopeo inspect --raw --tls-verify=false REF */
export async function inspectRaw(ref: string, opts: { creds?: string } = {}): Promise<Buffer> {
  const args = ['inspect', '--raw', '--tls-verify=false'];
  if (opts.creds) args.push('--creds', opts.creds);
  args.push(ref);
  return (await run(args, {})).stdout;
}

/** Relative file name → `sha256:<hex>` for every file under a `dir:` copy, to compare two pulls. */
export async function dirDigests(dir: string): Promise<Map<string, string>> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const files = entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath ?? e.path, e.name))
    .sort();
  const digests = new Map<string, string>();
  for (const file of files) digests.set(relative(dir, file), await fileDigest(file));
  return digests;
}
