import { loadConfig } from '../config/load.js';
import { createLogger } from '../log.js';

export async function runServe(opts: { config?: string }): Promise<void> {
  const loaded = await loadConfig({ file: opts.config });
  const { config } = loaded;
  const logger = createLogger(config.log);
  for (const w of loaded.warnings) logger.warn(`config: ${w}`);
  logger.info(
    {
      config: loaded.source,
      storage: config.storage.driver === 'filesystem' ? config.storage.rootdirectory : config.storage.driver,
      upstreams: config.upstreams.map((u) => `${u.name}=${u.remoteurl}`),
      ...(config.regcache.workers > 1 && { workers: config.regcache.workers }),
    },
    'starting regcache',
  );
  // The primary of several workers only forks and coordinates them: it never loads the server's module tree.
  const app =
    config.regcache.workers > 1
      ? await (await import('../server/cluster.js')).startCluster(config, logger, { onFatal: () => process.exit(1) })
      : await (await import('../server/app.js')).startApp(config, logger);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal, draintimeoutMs: config.http.draintimeoutMs }, 'shutting down: draining in-flight requests');
    app.close().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (e: unknown) => {
        logger.error({ err: (e as Error).message }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
