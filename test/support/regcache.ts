// Starts regcache for tests: in-process (startRegcache) or as the real CLI process (startRegcacheProcess).
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { createLogger } from '../../src/log.js';
import { startApp, type RunningApp } from '../../src/server/app.js';
import { startCluster, type RunningCluster } from '../../src/server/cluster.js';
import { openStorage } from '../../src/storage/index.js';
import { deepMerge } from './registry.js';
import { freePort } from './ports.js';
import { startProcess, waitForHttp, type ManagedProcess } from './process.js';
import { makeTempDir, removeDir } from './tmp.js';

export const REPO_ROOT = new URL('../../', import.meta.url).pathname;
/** tsx's loader as a file URL, so a child started in any directory can run TypeScript. */
export const TSX_LOADER = import.meta.resolve('tsx');

export interface RunningRegcache {
  url: string;
  /** host:port, for skopeo/docker references */
  host: string;
  root: string;
  config: Config;
  app: RunningApp;
  /** Every log line (JSON records) the server wrote. */
  logs: Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

function hasDriver(storage: unknown): boolean {
  return typeof storage === 'object' && storage !== null && ['filesystem', 'inmemory', 's3'].some((d) => d in storage);
}

/**
 * REGCACHE_TEST_WORKERS=N: every startRegcache runs N worker processes (regcache.workers) instead of one
 * in-process app, so that the same tests check that workers behave as one process (see test/workers/).
 */
export const TEST_WORKERS = Number(process.env.REGCACHE_TEST_WORKERS ?? 1);

/**
 * A cluster as RunningApp: `storage` is the same storage opened in the test process; the other in-process parts
 * (proxy, lifecycle, ...) live in the workers and are not reachable.
 */
async function clusterApp(c: RunningCluster, config: Config): Promise<RunningApp> {
  const storage = await openStorage(config.storage, { redirect: false });
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => (closed ??= c.close().then(() => storage.close()));
  const app = { urls: c.urls, debugUrl: c.debugUrl, storage, close, pids: () => c.pids() };
  return new Proxy(app, {
    get(target, prop) {
      if (prop in target || typeof prop === 'symbol' || prop === 'then') return (target as Record<string | symbol, unknown>)[prop];
      throw new Error(`app.${String(prop)} is in the worker processes (REGCACHE_TEST_WORKERS=${TEST_WORKERS}): this test cannot run with workers`);
    },
  }) as unknown as RunningApp;
}

/** In-process regcache on a free loopback port, filesystem storage in a temp dir (or `root`). */
export async function startRegcache(opts: {
  /** distribution's proxy.remoteurl; omit to configure upstreams only through regcache.upstreams. */
  upstreamUrl?: string;
  /** Extra distribution-style config, deep-merged (e.g. { regcache: { freshness: '0s' } }). */
  config?: Record<string, unknown>;
  root?: string;
}): Promise<RunningRegcache> {
  const work = await makeTempDir('regcache-app-');
  const root = opts.root ?? join(work, 'data');
  const port = await freePort();
  const base = {
    version: 0.1,
    log: { level: 'debug', formatter: 'json' },
    // A driver given in opts.config (e.g. storage.s3) replaces the default filesystem one.
    storage: hasDriver(opts.config?.storage) ? {} : { filesystem: { rootdirectory: root } },
    http: { addr: `127.0.0.1:${port}`, draintimeout: '5s' },
    ...(opts.upstreamUrl !== undefined && { proxy: { remoteurl: opts.upstreamUrl } }),
    regcache: { timeouts: { connect: '2s', headers: '5s', idle: '5s' } },
  };
  const ownWorkers = (opts.config?.regcache as { workers?: unknown } | undefined)?.workers;
  const workers = TEST_WORKERS > 1 && ownWorkers === undefined ? { regcache: { workers: TEST_WORKERS } } : {};
  const { config } = parseConfig(stringify(deepMerge(deepMerge(base, opts.config ?? {}), workers)), {}, 'test');
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        try {
          logs.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          process.stderr.write(`${line}\n`); // a worker's non-log output (a Node warning)
        }
      }
      cb();
    },
  });
  const logger = createLogger(config.log, sink);
  const app = config.regcache.workers > 1 ? await clusterApp(await startCluster(config, logger, { output: sink }), config) : await startApp(config, logger);
  const url = app.urls[0]!;
  return {
    url,
    host: url.replace(/^https?:\/\//, ''),
    root,
    config,
    app,
    logs,
    async stop() {
      await app.close();
      await removeDir(work);
    },
  };
}

/** The real CLI (`node --import tsx src/cli/main.ts serve ...`) as a child process. */
export async function startRegcacheProcess(opts: {
  configYaml?: string;
  env?: NodeJS.ProcessEnv;
  args?: string[];
  /** Port the config/env makes it listen on (waited for). */
  port: number;
  /** Working directory (default: a fresh temp dir). */
  cwd?: string;
}): Promise<{ proc: ManagedProcess; url: string; work: string; stop(): Promise<void> }> {
  const work = await makeTempDir('regcache-cli-');
  const args = ['--import', TSX_LOADER, join(REPO_ROOT, 'src/cli/main.ts'), 'serve', ...(opts.args ?? [])];
  if (opts.configYaml !== undefined) {
    const file = join(work, 'config.yml');
    await writeFile(file, opts.configYaml);
    args.push('--config', file);
  }
  const proc = await startProcess(process.execPath, args, {
    logFile: join(work, 'regcache.log'),
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd ?? work,
  });
  const url = `http://127.0.0.1:${opts.port}`;
  try {
    await waitForHttp(`${url}/v2/`, 30_000);
  } catch (e) {
    await proc.stop();
    throw new Error(`regcache did not start: ${(e as Error).message}\n${await proc.logTail()}`);
  }
  return {
    proc,
    url,
    work,
    async stop() {
      await proc.stop();
      await removeDir(work);
    },
  };
}

export { freePort };

/** Runs the CLI (`regcache ARGS`) to completion; never throws for a non-zero exit. */
export async function runCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await promisify(execFile)(process.execPath, ['--import', TSX_LOADER, join(REPO_ROOT, 'src/cli/main.ts'), ...args], {
      env: { ...process.env, ...opts.env },
      cwd: opts.cwd ?? REPO_ROOT,
      timeout: 60_000,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}
