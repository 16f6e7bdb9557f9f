import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { RegistryError } from '../errors.js';

/** The one place errors become HTTP: status, headers and the OCI JSON body. */
export function toRegistryError(e: unknown): RegistryError {
  if (e instanceof RegistryError) return e;
  return new RegistryError('INTERNAL', 'internal server error', { cause: e });
}

export function sendError(res: ServerResponse, err: RegistryError, isHead: boolean, logger: Logger): void {
  if (err.status >= 500) {
    const cause = (err.cause as Error | undefined)?.message;
    logger.error({ code: err.code, err: err.message, cause }, 'request failed');
  }
  if (res.headersSent) {
    // Mid-body failure: the only honest signal left is an aborted connection.
    res.destroy(err);
    return;
  }
  const body = Buffer.from(JSON.stringify(err.toJSON()));
  res.statusCode = err.status;
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
  for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
  res.setHeader('Content-Length', body.length);
  res.end(isHead ? undefined : body);
}
