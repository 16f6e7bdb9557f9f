import type { Upstream } from '../upstream/types.js';

const OPS = new Set(['headManifest', 'getManifest', 'headBlob', 'getBlob', 'listTags']);

export type UpstreamCallListener = (upstream: string, op: string, outcome: { code?: string; status?: number; bytes?: number; ms?: number }) => void;

/**
 * The same upstream client, reporting every registry request (operation, outcome, manifest bytes) to `listener`.
 * Methods other than the registry operations pass through untouched.
 */
export function instrumentUpstream(client: Upstream, listener: UpstreamCallListener): Upstream {
  return new Proxy(client, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      if (typeof prop !== 'string' || !OPS.has(prop)) return (value as (...a: unknown[]) => unknown).bind(target);
      return async (...args: unknown[]) => {
        const start = performance.now();
        const ms = (): number => performance.now() - start;
        try {
          const result = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          const bytes = prop === 'getManifest' ? (result as { bytes?: Buffer }).bytes?.length : undefined;
          listener(target.name, prop, { bytes, ms: ms() });
          return result;
        } catch (e) {
          const err = e as { code?: unknown; status?: unknown };
          listener(target.name, prop, {
            code: typeof err.code === 'string' ? err.code : 'error',
            status: typeof err.status === 'number' ? err.status : undefined,
            ms: ms(),
          });
          throw e;
        }
      };
    },
  });
}
