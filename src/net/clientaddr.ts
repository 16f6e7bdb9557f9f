import type { IncomingMessage } from 'node:http';
import { BlockList, isIP } from 'node:net';

function plain(addr: string): string {
  const a = addr.trim().replace(/^\[|\]$/g, '');
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

/** `10.0.0.0/8`, `fd00::/8` or a single address into a BlockList; false when malformed. */
export function addTrusted(list: BlockList, entry: string): boolean {
  const [addr, bits] = entry.trim().split('/');
  const ip = plain(addr ?? '');
  const family = isIP(ip);
  if (!family) return false;
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (bits === undefined) {
    list.addAddress(ip, type);
    return true;
  }
  const prefix = Number(bits);
  if (!/^\d+$/.test(bits) || prefix > (family === 4 ? 32 : 128)) return false;
  list.addSubnet(ip, prefix, type);
  return true;
}

/**
 * The client address, per `regcache.trustproxy`, for the access log and the failed-login throttle (src/auth):
 * false (default) → the peer address; true → the first X-Forwarded-For entry (every hop trusted); a list of
 * addresses/CIDRs → X-Forwarded-For walked from the right, skipping trusted proxies, and only when the peer
 * itself is one of them.
 */
export function clientAddressResolver(trust: boolean | string[] | undefined): (req: IncomingMessage) => string | undefined {
  const peer = (req: IncomingMessage): string | undefined =>
    req.socket.remoteAddress ? plain(req.socket.remoteAddress) : undefined;
  if (!trust || (Array.isArray(trust) && trust.length === 0)) return peer;
  const forwarded = (req: IncomingMessage): string[] => {
    const h = req.headers['x-forwarded-for'];
    const raw = Array.isArray(h) ? h.join(',') : (h ?? '');
    return raw
      .split(',')
      .map((s) => plain(s))
      .filter((s) => isIP(s));
  };
  if (trust === true) return (req) => forwarded(req)[0] ?? peer(req);
  const list = new BlockList();
  for (const entry of trust) addTrusted(list, entry);
  const trusted = (a: string): boolean => list.check(a, isIP(a) === 6 ? 'ipv6' : 'ipv4');
  return (req) => {
    let addr = peer(req);
    if (!addr || !trusted(addr)) return addr;
    for (const hop of forwarded(req).reverse()) {
      addr = hop;
      if (!trusted(hop)) return hop;
    }
    return addr;
  };
}
