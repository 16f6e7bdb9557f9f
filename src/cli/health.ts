import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { loadConfig } from '../config/load.js';
import { parseAddr } from '../net/listen.js';

/**
 * `regcache health`: probes /healthz on the listener the config (and REGISTRY_HTTP_ADDR) says, so a
 * container HEALTHCHECK follows the configured port and scheme instead of hard-coding :5000.
 * Exit 0 healthy, 1 not. The certificate is not verified: this checks liveness of the local process.
 */
export async function runHealth(opts: { config?: string; timeoutMs?: number }): Promise<void> {
  const { config } = await loadConfig({ file: opts.config });
  const { host, port } = parseAddr(config.http.addr);
  const h = !host || host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const tls = config.http.tls !== undefined;
  const url = `${tls ? 'https' : 'http'}://${h.includes(':') ? `[${h}]` : h}:${port}/healthz`;
  const status = await new Promise<number>((resolve, reject) => {
    const req = (tls ? httpsGet : httpGet)(url, { timeout: opts.timeoutMs ?? 4000, rejectUnauthorized: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  }).catch((e: Error) => {
    process.stderr.write(`regcache health: ${url}: ${e.message}\n`);
    return 0;
  });
  if (status !== 200) {
    if (status) process.stderr.write(`regcache health: ${url}: HTTP ${status}\n`);
    process.exit(1);
  }
  process.stdout.write(`ok ${url}\n`);
}
