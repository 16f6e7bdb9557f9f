// Debian redis-server on a free loopback port, no persistence, for the coordination tests.
import { join } from 'node:path';
import { freePort } from '../../support/ports.js';
import { startProcess, waitForPort, type ManagedProcess } from '../../support/process.js';
import { makeTempDir, removeDir } from '../../support/tmp.js';

export interface RunningRedis {
  port: number;
  /** host:port for regcache's `redis.addr` */
  addr: string;
  proc: ManagedProcess;
  stop(): Promise<void>;
}

/** `port`: listen there (e.g. to restart a stopped server on its old address); default a free one. */
export async function startRedis(opts: { port?: number } = {}): Promise<RunningRedis> {
  const dir = await makeTempDir('regcache-redis-');
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const proc = await startProcess(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
      { logFile: join(dir, `redis-${attempt}.log`), removeOnOrphan: [dir] },
    );
    try {
      await waitForPort(port, '127.0.0.1', 10_000);
      if (proc.hasExited()) throw new Error(`redis-server exited: ${await proc.logTail()}`);
      return {
        port,
        addr: `127.0.0.1:${port}`,
        proc,
        async stop() {
          await proc.stop();
          await removeDir(dir);
        },
      };
    } catch (e) {
      await proc.stop();
      if (attempt >= 3) {
        await removeDir(dir);
        throw e;
      }
    }
  }
}
