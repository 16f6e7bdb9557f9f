// The upstream registry and the two servers under test, each a separate process on 127.0.0.1.
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from '../test/support/ports.js';
import { startProcess, waitForHttp, waitForLog, type ManagedProcess } from '../test/support/process.js';
import { startRegistry, type RunningRegistry } from '../test/support/registry.js';
import { removeDir } from '../test/support/tmp.js';
import type { ServerName } from './options.js';
import { makeBenchDir } from './tmp.js';

export const REPO_ROOT = new URL('../', import.meta.url).pathname;

export interface ServerUnderTest {
  name: ServerName;
  /** what exactly ran, for the report */
  describe: string;
  url: string;
  host: string;
  pid: number;
  logFile: string;
  /** from spawning the process to its first 200 on /v2/ */
  startupMs: number;
  stop(): Promise<void>;
}

/** distribution v3, built by scripts/tools.sh from the Go module proxy (pinned there). */
export const REGISTRY_V3 = join(REPO_ROOT, '.tools/bin/registry-v3');

/** distribution as the upstream, storage under the bench temp dir, no access log. */
export async function startUpstream(): Promise<RunningRegistry> {
  const rootDir = await makeBenchDir('upstream');
  try {
    const registry = await startRegistry({ rootDir, config: { log: { accesslog: { disabled: true } } } });
    return {
      ...registry,
      async stop() {
        await registry.stop();
        await removeDir(rootDir);
      },
    };
  } catch (e) {
    await removeDir(rootDir);
    throw e;
  }
}

const LOG = { level: 'info', formatter: 'json', accesslog: { disabled: true } };

export async function startServer(
  name: ServerName,
  remoteUrl: string,
  opts: { regcacheFrom: 'dist' | 'tsx'; cpuProfDir?: string; workers?: number },
): Promise<ServerUnderTest> {
  const work = await makeBenchDir(name);
  try {
    const port = await freePort();
    const storage = { filesystem: { rootdirectory: join(work, 'data') } };
    const http = { addr: `127.0.0.1:${port}` };
    let cmd: string;
    let args: string[];
    let describe: string;
    let config: Record<string, unknown>;
    if (name === 'distribution' || name === 'distribution-v3') {
      // Debian's default config.yml has the in-memory blob descriptor cache: keep the anchors as deployed
      config = {
        version: 0.1,
        log: LOG,
        storage: { ...storage, cache: { blobdescriptor: 'inmemory' }, maintenance: { uploadpurging: { enabled: false } } },
        http: { ...http, secret: 'regcache-bench' },
        proxy: { remoteurl: remoteUrl },
      };
      cmd = name === 'distribution' ? 'docker-registry' : REGISTRY_V3;
      args = ['serve', join(work, 'config.yml')];
      describe = execFileSync(cmd, ['--version'], { encoding: 'utf8' }).trim();
    } else {
      const regcache = { freshness: '30s', ...(opts.workers !== undefined && { workers: opts.workers }) };
      config = { version: 0.1, log: LOG, storage, http, proxy: { remoteurl: remoteUrl }, regcache };
      const prof = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
      const entry =
        opts.regcacheFrom === 'dist' ? [join(REPO_ROOT, 'bin/regcache.js')] : ['--import', import.meta.resolve('tsx'), join(REPO_ROOT, 'src/cli/main.ts')];
      cmd = process.execPath;
      args = [...prof, ...entry, 'serve', '--config', join(work, 'config.yml')];
      describe = `regcache ${regcacheVersion()} on node ${process.version}, ${
        opts.regcacheFrom === 'dist' ? 'compiled JS (bin/regcache.js → dist/)' : 'TypeScript through tsx (src/)'
      }${opts.workers ? `, ${opts.workers} worker${opts.workers > 1 ? 's' : ''}` : ''}${opts.cpuProfDir ? ', with --cpu-prof' : ''}`;
    }
    await writeFile(join(work, 'config.yml'), stringify(config));
    const logFile = join(work, `${name}.log`);
    // REGISTRY_* variables override either server's config: keep the caller's out
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGISTRY_')));
    const spawned = performance.now();
    const proc = await startProcess(cmd, args, { logFile, env, cwd: work });
    const url = `http://127.0.0.1:${port}`;
    await waitReady(proc, url, name);
    // Several workers: worker 0 answers first; the run starts once every worker serves (and startup counts it)
    if (name === 'regcache' && (opts.workers ?? 1) > 1) {
      await waitForLog(proc, 'all workers ready', { timeoutMs: 30_000, intervalMs: 10 });
    }
    const startupMs = performance.now() - spawned;
    return {
      name,
      describe,
      url,
      host: `127.0.0.1:${port}`,
      pid: proc.pid,
      logFile,
      startupMs,
      async stop() {
        await proc.stop(10_000);
        await removeDir(work);
      },
    };
  } catch (e) {
    await removeDir(work);
    throw e;
  }
}

async function waitReady(proc: ManagedProcess, url: string, name: string): Promise<void> {
  const abort = new AbortController();
  const exited = proc.exited.then((x) => `exited (${x.code ?? x.signal})`);
  const ready = waitForHttp(`${url}/v2/`, 30_000, { signal: abort.signal }).then(
    () => undefined,
    (e: Error) => e.message,
  );
  const problem = await Promise.race([exited, ready]);
  abort.abort();
  if (problem !== undefined) {
    await proc.stop();
    throw new Error(`${name} did not start: ${problem}\n${await proc.logTail()}`);
  }
}

function regcacheVersion(): string {
  try {
    return execFileSync('git', ['-C', REPO_ROOT, 'describe', '--always', '--dirty'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return '(no git revision)';
  }
}
