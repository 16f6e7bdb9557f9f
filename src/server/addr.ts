/** distribution's `http.addr`: `:5000`, `host:5000`, `[::1]:5000`. An empty host means all interfaces. */
export function parseAddr(addr: string): { host?: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr.trim());
  if (!m) throw new Error(`invalid listen address ${JSON.stringify(addr)} (expected host:port or :port)`);
  const host = m[1] ?? (m[2] || undefined);
  return { host, port: Number(m[3]) };
}
