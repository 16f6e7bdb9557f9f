/**
 * `regcache serve` with regcache.workers > 1: this (primary) process forks that many workers through
 * node:cluster; they share the listeners (the primary hands out connections round-robin) and coordinate over
 * IPC through the CoordinationHub kept here, so that together they behave as one process: one upstream fetch
 * per blob or manifest, one metadata writer (the worker holding the metadata lock), one sweeper (the leader
 * among lock holders). Worker 0 alone has the debug listener (metrics, health, admin API, dashboard). A worker
 * that dies is replaced; one that keeps dying stops the server.
 */
import cluster, { type Worker } from 'node:cluster';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Config } from '../config/types.js';
import { CoordinationHub, isCoordinationMessage, type ToHub } from '../coordination/ipc.js';
import { WORKER_TAG, type FromPrimary, type FromWorker } from './workerprotocol.js';

/** A replaced worker starts again after this long. */
const RESTART_DELAY_MS = 1_000;
/** This many worker deaths within CRASH_WINDOW_MS is a crash loop: the server stops instead of restarting. */
const CRASH_LIMIT = 5;
const CRASH_WINDOW_MS = 60_000;
/** After the drain timeout, workers still running get this long before SIGKILL. */
const KILL_GRACE_MS = 10_000;

export interface RunningCluster {
  /** Worker 0's bound addresses: main listener first, then per-upstream listeners. */
  urls: string[];
  debugUrl?: string;
  /** Process ids of the live workers. */
  pids(): number[];
  /** SIGTERM to every worker (each drains), resolves when all exited. */
  close(): Promise<void>;
}

export interface ClusterOptions {
  /** Where workers' stdout and stderr go (default: this process's, inherited). */
  output?: NodeJS.WritableStream;
  /** Workers keep crashing: called once after they were stopped. */
  onFatal?(): void;
}

/** This module's sibling worker.ts (or .js when compiled): the workers' entry point. */
function workerEntry(): string {
  return fileURLToPath(import.meta.url).replace(/cluster\.(ts|js)$/, 'worker.$1');
}

export async function startCluster(config: Config, logger: Logger, opts: ClusterOptions = {}): Promise<RunningCluster> {
  const count = config.regcache.workers;
  const hub = new CoordinationHub();
  cluster.setupPrimary({ exec: workerEntry(), args: [], execArgv: process.execArgv, serialization: 'advanced', silent: opts.output !== undefined });
  const slots: Array<Worker | undefined> = new Array(count).fill(undefined);
  const deaths: number[] = [];
  let closing: Promise<void> | undefined;

  const fork = (index: number): Promise<Extract<FromWorker, { op: 'ready' }>> => {
    const w = cluster.fork({ REGCACHE_WORKER: String(index) });
    slots[index] = w;
    const output = opts.output;
    if (output) {
      // Whole lines, so that two workers' log records never interleave within a line.
      for (const stream of [w.process.stdout, w.process.stderr]) {
        if (stream) createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => output.write(`${line}\n`));
      }
    }
    hub.attach(w.id, (m) => {
      if (w.isConnected()) w.send(m);
    });
    // Only worker 0 serves the debug listener: one place for metrics, health, the admin API and the dashboard.
    const workerConfig: Config = index === 0 ? config : { ...config, http: { ...config.http, debug: undefined } };
    return new Promise((resolve, reject) => {
      let ready = false;
      w.on('message', (m: unknown) => {
        if (isCoordinationMessage(m)) return hub.receive(w.id, m as unknown as ToHub);
        const msg = m as (FromWorker & Record<string, unknown>) | null;
        if (msg?.[WORKER_TAG] !== true) return;
        if (msg.op === 'hello') w.send({ op: 'start', config: workerConfig, index, [WORKER_TAG]: true } satisfies FromPrimary & Record<string, unknown>);
        else if (msg.op === 'ready') {
          ready = true;
          logger.info({ worker: index, pid: w.process.pid }, 'worker ready');
          resolve(msg);
        } else reject(new Error(msg.message));
      });
      w.once('exit', (code, signal) => {
        hub.detach(w.id);
        if (slots[index] === w) slots[index] = undefined;
        if (!ready) reject(new Error(`worker ${index} exited (${signal ?? `code ${code}`}) before it was ready`));
        else if (!closing) replace(index, code, signal);
      });
    });
  };

  const replace = (index: number, code: number | null, signal: string | null): void => {
    const now = Date.now();
    deaths.push(now);
    while (deaths.length && deaths[0]! < now - CRASH_WINDOW_MS) deaths.shift();
    if (deaths.length >= CRASH_LIMIT) {
      logger.fatal({ worker: index, deaths: deaths.length, windowMs: CRASH_WINDOW_MS }, 'workers keep dying: stopping the server');
      void close().then(() => opts.onFatal?.());
      return;
    }
    logger.error({ worker: index, code, signal }, 'worker exited unexpectedly: starting a new one');
    const timer = setTimeout(() => {
      if (closing) return;
      fork(index).catch((e: unknown) => logger.error({ worker: index, err: (e as Error).message }, 'replacement worker failed to start'));
    }, RESTART_DELAY_MS);
    timer.unref();
  };

  const live = (): Worker[] => slots.filter((w): w is Worker => w !== undefined && !w.isDead());
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      const workers = live();
      const exited = workers.map((w) => new Promise<void>((r) => (w.isDead() ? r() : w.once('exit', () => r()))));
      for (const w of workers) w.process.kill('SIGTERM');
      const kill = setTimeout(() => {
        for (const w of live()) w.process.kill('SIGKILL');
      }, config.http.draintimeoutMs + KILL_GRACE_MS);
      kill.unref();
      await Promise.all(exited);
      clearTimeout(kill);
    })());

  try {
    // Worker 0 first: it takes the metadata lock and so owns the index, the sweeper and the admin API.
    const first = await fork(0);
    await Promise.all(Array.from({ length: count - 1 }, (_, i) => fork(i + 1)));
    logger.info({ workers: count, urls: first.urls }, 'all workers ready');
    return { urls: first.urls, debugUrl: first.debugUrl, pids: () => live().map((w) => w.process.pid!), close };
  } catch (e) {
    await close();
    throw e;
  }
}
