// Debian haproxy round-robining HTTP over a set of backends on loopback, with fast health checks.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '../../support/ports.js';
import { startProcess, waitForPort, type ManagedProcess } from '../../support/process.js';
import { makeTempDir, removeDir } from '../../support/tmp.js';

export interface RunningHaproxy {
  url: string;
  host: string;
  proc: ManagedProcess;
  stop(): Promise<void>;
}

export interface HaproxyOptions {
  /** `option forwardfor`: haproxy appends the client's address to X-Forwarded-For. */
  forwardFor?: boolean;
  /** Health check path (expects 200); default /v2/. An authenticated mirror answers /v2/ with 401: use /healthz. */
  checkPath?: string;
  /**
   * Each backend also as a `backup` server without health check (docs/scale-out.md): while a replica fails
   * /readyz it gets no traffic, but when all do (Redis lost by the whole cluster) they keep serving.
   */
  backups?: boolean;
}

export function haproxyConfig(listenPort: number, backends: number[], opts: HaproxyOptions = {}): string {
  return `global
  maxconn 1000

defaults
  mode http
  timeout connect 2s
  timeout client 120s
  timeout server 120s
  retries 2
  option redispatch
  # A request sent on a keep-alive connection that a draining replica closes at that moment is retried on
  # another replica (GET and HEAD are idempotent): what a rolling restart needs.
  retry-on all-retryable-errors

frontend regcache
  bind 127.0.0.1:${listenPort}
  default_backend replicas${opts.forwardFor ? '\n  option forwardfor' : ''}

backend replicas
  balance roundrobin${opts.backups ? '\n  option allbackups' : ''}
  option httpchk GET ${opts.checkPath ?? '/v2/'}
  http-check expect status 200
${backends.map((p, i) => `  server r${i} 127.0.0.1:${p} check inter 300ms fall 1 rise 1`).join('\n')}
${opts.backups ? backends.map((p, i) => `  server b${i} 127.0.0.1:${p} backup`).join('\n') : ''}
`;
}

export async function startHaproxy(backends: number[], opts: HaproxyOptions = {}): Promise<RunningHaproxy> {
  const dir = await makeTempDir('regcache-haproxy-');
  const port = await freePort();
  const cfg = join(dir, 'haproxy.cfg');
  await writeFile(cfg, haproxyConfig(port, backends, opts));
  const proc = await startProcess('haproxy', ['-f', cfg, '-db'], { logFile: join(dir, 'haproxy.log'), removeOnOrphan: [dir] });
  try {
    await waitForPort(port, '127.0.0.1', 10_000);
  } catch (e) {
    await proc.stop();
    const tail = await proc.logTail();
    await removeDir(dir);
    throw new Error(`haproxy did not start: ${(e as Error).message}\n${tail}`);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    proc,
    async stop() {
      await proc.stop();
      await removeDir(dir);
    },
  };
}
