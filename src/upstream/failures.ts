import { RegistryError, type ErrorCode } from '../errors.js';
import { parseRetryAfter } from './ratelimit.js';

/** What was asked of the upstream; decides which "unknown" code a 404 becomes. */
export type Resource = 'manifest' | 'blob' | 'tags';

const NOT_FOUND: Record<Resource, ErrorCode> = {
  manifest: 'MANIFEST_UNKNOWN',
  blob: 'BLOB_UNKNOWN',
  tags: 'NAME_UNKNOWN',
};

/**
 * A non-success upstream status as a RegistryError. `what` names the request (e.g.
 * `GET manifest library/alpine:3`) and must never contain credentials or signed URLs.
 */
export function statusError(
  upstream: string,
  what: string,
  resource: Resource,
  status: number,
  retryAfter?: string,
): RegistryError {
  const message = `upstream ${upstream}: ${what} returned ${status}`;
  if (status === 404) return new RegistryError(NOT_FOUND[resource], message, { detail: { upstream, status } });
  if (status === 401) return new RegistryError('UNAUTHORIZED', message, { detail: { upstream, status } });
  if (status === 403) return new RegistryError('DENIED', message, { detail: { upstream, status } });
  if (status === 429) {
    const seconds = parseRetryAfter(retryAfter);
    return new RegistryError('TOOMANYREQUESTS', message, {
      detail: { upstream, status },
      headers: seconds === undefined ? {} : { 'Retry-After': String(seconds) },
    });
  }
  if (status === 503) return new RegistryError('UNAVAILABLE', message, { detail: { upstream, status } });
  return new RegistryError('UPSTREAM_ERROR', message, { detail: { upstream, status } });
}

/** A failure below HTTP (connect, TLS, reset, timeout) as UNAVAILABLE. */
export function networkError(upstream: string, what: string, err: unknown): RegistryError {
  if (err instanceof RegistryError) return err;
  return new RegistryError('UNAVAILABLE', `upstream ${upstream}: ${what} failed: ${describe(err)}`, {
    detail: { upstream },
    cause: err,
  });
}

/** A short, secret-free description of a low-level error (undici/node errors carry no headers). */
export function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connect timeout';
    case 'UND_ERR_HEADERS_TIMEOUT':
      return 'timed out waiting for response headers';
    case 'UND_ERR_BODY_TIMEOUT':
      return 'timed out waiting for response body';
  }
  return typeof code === 'string' ? `${err.message} (${code})` : err.message;
}

export function isAbort(err: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return true;
  return err instanceof Error && (err.name === 'AbortError' || (err as { code?: unknown }).code === 'UND_ERR_ABORTED');
}
