import type { AddressInfo, Server } from 'node:net';

/** distribution's `http.addr`: `:5000`, `host:5000`, `[::1]:5000`. An empty host means all interfaces. */
export function parseAddr(addr: string): { host?: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr.trim());
  if (!m) throw new Error(`invalid listen address ${JSON.stringify(addr)} (expected host:port or :port)`);
  const host = m[1] ?? (m[2] || undefined);
  return { host, port: Number(m[3]) };
}

/** Listens on a distribution-style address; resolves with a URL clients on this machine can use. */
export function listenOn(server: Server, addr: string, scheme: 'http' | 'https' = 'http'): Promise<string> {
  const { host, port } = parseAddr(addr);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      const a = server.address() as AddressInfo;
      const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      resolve(`${scheme}://${h === '[::]' || h === '0.0.0.0' ? '127.0.0.1' : h}:${a.port}`);
    });
  });
}
