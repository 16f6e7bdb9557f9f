import type http from 'node:http';

/** How often idle keep-alive connections are closed while draining: they would otherwise hold the drain open. */
const IDLE_SWEEP_MS = 100;
/**
 * After the drain deadline the remaining downloads were cut off with their clients; they fail within this
 * long and remove their temp files, unless something hangs.
 */
export const ABORTED_DOWNLOADS_GRACE_MS = 2000;

export function delay(ms: number): Promise<void> {
  return new Promise<void>((r) => setTimeout(r, ms).unref());
}

/**
 * Graceful stop of the listeners (distribution's http.draintimeout): stop accepting, let requests in flight
 * finish until the deadline, then cut the connections that remain.
 */
export async function drainServers(servers: http.Server[], deadline: Promise<void>): Promise<void> {
  const drained = Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  const closeIdle = (): void => servers.forEach((s) => s.closeIdleConnections());
  closeIdle();
  const sweep = setInterval(closeIdle, IDLE_SWEEP_MS);
  try {
    await Promise.race([drained, deadline]);
  } finally {
    clearInterval(sweep);
  }
  for (const s of servers) s.closeAllConnections();
}
