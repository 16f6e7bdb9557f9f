import { createHash, timingSafeEqual } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { ADMIN_TOKENFILE_KEY, AdminTokenError, isLoopbackAddr, readAdminToken, weakTokenWarning } from '../config/admintoken.js';
import type { Config } from '../config/types.js';
import { ConfigError } from '../errors.js';

export const ADMIN_REALM = 'regcache-admin';

/** Why a state-changing admin request is refused: the answer to send. */
export interface AdminDenial {
  status: 401 | 403 | 503;
  error: string;
  headers?: Record<string, string>;
}

/** Decides whether a state-changing admin request (POST /admin/...) may run. */
export interface AdminGate {
  /** undefined: allowed. */
  check(req: IncomingMessage): Promise<AdminDenial | undefined>;
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Both sides hashed first: equal lengths for timingSafeEqual, and the comparison time says nothing about the token. */
function sameToken(presented: string, expectedHash: Buffer): boolean {
  return timingSafeEqual(sha256(presented), expectedHash);
}

/** The header the dashboard sends the token in: Authorization may carry the client's Basic credentials. */
export const ADMIN_TOKEN_HEADER = 'x-regcache-admin-token';

function bearer(req: IncomingMessage): string | undefined {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '');
  if (m) return m[1];
  const h = req.headers[ADMIN_TOKEN_HEADER];
  return typeof h === 'string' && h.trim() ? h.trim() : undefined;
}

/**
 * The admin API's rule:
 * - with regcache.admin.tokenfile: `Authorization: Bearer <token>` (401 otherwise). The file is re-read when its
 *   mtime, size or inode changes (checked on every admin request), so a rotated token applies without a restart;
 *   while the file is unreadable or empty every admin request is refused (503), never let through.
 * - without: allowed only when http.debug.addr is loopback (127.0.0.0/8, ::1, localhost); 403 otherwise.
 * Tokens are never logged or echoed.
 */
export async function createAdminGate(config: Config, logger: Logger): Promise<AdminGate> {
  const tokenfile = config.regcache.admin?.tokenfile;
  const debugAddr = config.http.debug?.addr;
  if (tokenfile === undefined) {
    if (!debugAddr || isLoopbackAddr(debugAddr)) return { check: async () => undefined };
    logger.warn(
      { addr: debugAddr, key: ADMIN_TOKENFILE_KEY },
      `http.debug.addr ${debugAddr} is not loopback and ${ADMIN_TOKENFILE_KEY} is not set: admin operations (POST /admin/..., regcache cache rm/prune/verify) are refused; set ${ADMIN_TOKENFILE_KEY} to enable them`,
    );
    const denial: AdminDenial = {
      status: 403,
      error: `admin operations are disabled: the debug listener (http.debug.addr ${debugAddr}) is reachable from other machines and no admin token is configured; set ${ADMIN_TOKENFILE_KEY} (see docs/security.md) or bind http.debug.addr to loopback`,
    };
    return { check: async () => denial };
  }

  interface Loaded {
    mtimeMs: number;
    size: number;
    ino: number;
    hash: Buffer;
  }
  /** A short token at start is reported with the config's warnings (loadConfig); a rotated one here. */
  const load = async (rotated: boolean): Promise<Loaded> => {
    const st = await stat(tokenfile);
    const token = await readAdminToken(tokenfile);
    const w = rotated && weakTokenWarning(tokenfile, token);
    if (w) logger.warn({ key: ADMIN_TOKENFILE_KEY }, w);
    return { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino, hash: sha256(token) };
  };
  let current: Loaded;
  try {
    current = await load(false);
  } catch (e) {
    const reason = e instanceof AdminTokenError ? e.message : `cannot read ${JSON.stringify(tokenfile)}: ${(e as NodeJS.ErrnoException).code ?? 'failed'}`;
    throw new ConfigError([{ path: ADMIN_TOKENFILE_KEY, message: reason }]);
  }
  let broken = false;
  let reloading: Promise<void> | undefined;
  const refresh = async (): Promise<void> => {
    try {
      const st = await stat(tokenfile);
      if (!broken && st.mtimeMs === current.mtimeMs && st.size === current.size && st.ino === current.ino) return;
      current = await load(true);
      if (broken) logger.info({ key: ADMIN_TOKENFILE_KEY, file: tokenfile }, 'admin token file readable again');
      else logger.info({ key: ADMIN_TOKENFILE_KEY, file: tokenfile }, 'admin token file changed: reloaded');
      broken = false;
    } catch (e) {
      if (!broken) {
        const reason = e instanceof AdminTokenError ? e.message : ((e as NodeJS.ErrnoException).code ?? 'failed');
        logger.error({ key: ADMIN_TOKENFILE_KEY, file: tokenfile, err: reason }, 'admin token file unusable: admin operations are refused until it is fixed');
      }
      broken = true;
    }
  };
  const challenge = { 'WWW-Authenticate': `Bearer realm="${ADMIN_REALM}"` };
  return {
    async check(req) {
      await (reloading ??= refresh().finally(() => (reloading = undefined)));
      if (broken) return { status: 503, error: `the admin token file (${ADMIN_TOKENFILE_KEY}) cannot be read; see the server log` };
      const presented = bearer(req);
      if (presented === undefined) {
        return {
          status: 401,
          error: `admin token required: send "Authorization: Bearer <token>" with the token from ${ADMIN_TOKENFILE_KEY}`,
          headers: challenge,
        };
      }
      if (!sameToken(presented, current.hash)) {
        logger.warn({ remote: req.socket.remoteAddress, path: req.url }, 'admin request with a wrong token refused');
        return { status: 401, error: 'invalid admin token', headers: challenge };
      }
      return undefined;
    },
  };
}
