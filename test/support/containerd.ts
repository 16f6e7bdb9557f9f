// containerd for tests: a private containerd (own root, state and socket, CRI off) and ctr pulls that use
// only generated hosts.toml files (`ctr images pull --hosts-dir`), which make containerd send `?ns=<registry>`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { generateClientConfig, type ClientConfigOptions } from '../../src/clientconfig/index.js';
import { CERTS_D } from '../../src/clientconfig/containerd.js';
import { startProcess, waitFor, type ManagedProcess } from './process.js';
import { makeTempDir, removeDir } from './tmp.js';

const run = promisify(execFile);

/** A command installed in the usual system directories. */
export function have(cmd: string): boolean {
  return ['/usr/bin', '/usr/sbin', '/bin', '/sbin', '/usr/local/bin'].some((d) => existsSync(join(d, cmd)));
}

/** containerd can run here: installed, with ctr, as root. */
export const canRunContainerd = (): boolean => have('containerd') && have('ctr') && process.getuid?.() === 0;

export interface Containerd {
  socket: string;
  dir: string;
  stop(): Promise<void>;
}

export async function startContainerd(): Promise<Containerd> {
  // Short path: the socket must fit in sun_path (108 bytes).
  const dir = await makeTempDir('rc-ctrd-');
  const socket = join(dir, 'c.sock');
  const config = [
    'version = 2',
    `root = "${join(dir, 'root')}"`,
    `state = "${join(dir, 'state')}"`,
    // Only content, images and the native snapshotter are needed; CRI would want networking and more.
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${socket}"`,
    '[ttrpc]',
    `  address = "${socket}.ttrpc"`,
    '[debug]',
    '  address = ""',
    '[metrics]',
    '  address = ""',
    '',
  ].join('\n');
  await writeFile(join(dir, 'config.toml'), config);
  let proc: ManagedProcess | undefined;
  try {
    proc = await startProcess('containerd', ['--config', join(dir, 'config.toml')], { logFile: join(dir, 'containerd.log') });
    const p = proc;
    await waitFor(async () => {
      if (p.hasExited()) throw new Error(`containerd exited:\n${await p.logTail()}`);
      return existsSync(socket) && (await run('ctr', ['-a', socket, 'version']).then(() => true, () => false));
    }, { timeoutMs: 20_000, what: 'containerd to serve its socket' });
  } catch (err) {
    await proc?.stop();
    await unmountUnder(dir);
    await removeDir(dir);
    throw err;
  }
  return {
    socket,
    dir,
    async stop() {
      await proc!.stop();
      await unmountUnder(dir);
      await removeDir(dir);
    },
  };
}

/** The native snapshotter bind-mounts only while unpacking; unmount anything left so the dir can go. */
async function unmountUnder(dir: string): Promise<void> {
  const mounts = (await readFile('/proc/self/mounts', 'utf8'))
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run('umount', ['-l', m]).catch(() => undefined);
}

/**
 * Pulls `ref` with ctr using only the generated hosts.toml files (and the CA copies next to them with
 * `extra.ca`); returns the image's manifest digest.
 */
export async function containerdPullThroughMirror(
  ctrd: Containerd,
  mirrorUrl: string,
  upstreams: string[],
  ref: string,
  extra: Partial<ClientConfigOptions> = {},
): Promise<string> {
  const hostsDir = await makeTempDir('regcache-cc-certsd-');
  try {
    for (const f of generateClientConfig('containerd', { mirror: mirrorUrl, upstreams, insecure: false, ...extra })) {
      const target = join(hostsDir, relative(CERTS_D, f.path));
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, f.content);
    }
    const ctr = ['-a', ctrd.socket, '-n', 'regcache-test'];
    await run('ctr', [...ctr, 'images', 'pull', '--hosts-dir', hostsDir, '--snapshotter', 'native', ref], { timeout: 120_000 });
    const { stdout } = await run('ctr', [...ctr, 'images', 'ls']);
    const row = stdout.split('\n').find((l) => l.split(/\s+/)[0] === ref);
    assert.ok(row, `ctr images ls has no ${ref}:\n${stdout}`);
    return row.split(/\s+/)[2]!;
  } finally {
    await removeDir(hostsDir);
  }
}
