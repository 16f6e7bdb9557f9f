import { RegistryError } from '../errors.js';

export type Route =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'upload'; name: string }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string };

/**
 * Maps a request path to an API route. The name is everything between /v2/ and the last
 * /manifests/, /blobs/, /tags/list or /referrers/ (names may contain slashes). Returns undefined
 * for paths outside the API; throws NAME_INVALID for undecodable paths.
 */
export function parseRoute(pathname: string): Route | undefined {
  if (pathname === '/v2' || pathname === '/v2/') return { kind: 'base' };
  if (!pathname.startsWith('/v2/')) return undefined;
  let rest: string;
  try {
    rest = decodeURIComponent(pathname.slice(4));
  } catch {
    throw new RegistryError('NAME_INVALID', 'invalid repository name encoding');
  }
  if (rest.includes('\0')) throw new RegistryError('NAME_INVALID', 'invalid repository name');
  if (rest === '_catalog') return { kind: 'catalog' };
  let m = /^(.+)\/manifests\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'manifest', name: m[1]!, reference: m[2]! };
  m = /^(.+)\/blobs\/uploads(?:\/.*)?$/.exec(rest);
  if (m) return { kind: 'upload', name: m[1]! };
  m = /^(.+)\/blobs\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'blob', name: m[1]!, digest: m[2]! };
  m = /^(.+)\/tags\/list$/.exec(rest);
  if (m) return { kind: 'tags', name: m[1]! };
  m = /^(.+)\/referrers\/([^/]+)$/.exec(rest);
  if (m) return { kind: 'referrers', name: m[1]!, digest: m[2]! };
  return undefined;
}
