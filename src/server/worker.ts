/**
 * A worker process of `regcache serve` with regcache.workers > 1 (started by src/server/cluster.ts through
 * node:cluster). It waits for the primary's start message, runs the whole app with coordination over IPC,
 * reports ready (or why it could not start), drains on SIGTERM/SIGINT and exits when the primary is gone.
 */
import type { Config } from '../config/types.js';
import { IpcCoordination } from '../coordination/ipc.js';
import { createLogger } from '../log.js';
import { startApp, type RunningApp } from './app.js';
import { WORKER_TAG, type FromPrimary, type FromWorker } from './workerprotocol.js';

function tell(m: FromWorker): void {
  if (process.connected) process.send!({ ...m, [WORKER_TAG]: true });
}

async function run(config: Config, index: number): Promise<void> {
  const logger = createLogger(config.log).child({ worker: index });
  let app: RunningApp;
  try {
    app = await startApp(config, logger, { workers: new IpcCoordination(), worker: index });
  } catch (e) {
    tell({ op: 'failed', message: (e as Error).message });
    process.exitCode = 1;
    process.disconnect();
    return;
  }
  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ why }, 'worker shutting down: draining in-flight requests');
    app.close().then(
      () => process.exit(0),
      (e: unknown) => {
        logger.error({ err: (e as Error).message }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // The primary is gone (crashed or killed): nobody coordinates this worker any more.
  process.on('disconnect', () => stop('primary exited'));
  tell({ op: 'ready', urls: app.urls, debugUrl: app.debugUrl });
}

process.on('message', (m: unknown) => {
  const msg = m as (FromPrimary & Record<string, unknown>) | null;
  if (msg?.[WORKER_TAG] === true && msg.op === 'start') void run(msg.config, msg.index);
});
tell({ op: 'hello' });
