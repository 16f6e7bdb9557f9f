/**
 * Client authentication against an htpasswd file (distribution's auth.htpasswd): bcrypt entries
 * only, HTTP Basic. The file is re-read when it changes; a broken file on reload keeps the users
 * loaded before. Successful checks are cached briefly (bcrypt costs ~50-100 ms per check, and one
 * image pull is dozens of requests), and failed attempts are rate limited per client address.
 * Passwords and Authorization headers are never logged.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import bcrypt from 'bcryptjs';
import type { Logger } from 'pino';
import { ConfigError, RegistryError } from '../errors.js';
import { FileWatch, fileSignature } from '../tls/filewatch.js';
import { FailureThrottle, type ThrottleOptions } from './throttle.js';

const BCRYPT = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;
/**
 * Compared against when the user does not exist, at the cost of the file's entries, so that
 * unknown and known users take as long (no user enumeration by timing).
 */
function dummyHash(users: Map<string, string>): string {
  const cost = users.values().next().value?.slice(4, 6) ?? '10';
  return `$2b$${cost}$fQlOB0aY6DQ5HgTAZneW7OUhuvf.NkwBUpgPFDlxPgl.1qZ33s9lW`;
}

/** Parses htpasswd text (user:hash per line, blank lines and # comments skipped, as distribution). */
export function parseHtpasswd(text: string, file: string): Map<string, string> {
  const users = new Map<string, string>();
  const problems: Array<{ path: string; message: string }> = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon <= 0) {
      problems.push({ path: 'auth.htpasswd.path', message: `${file} line ${i + 1}: not a "user:hash" entry` });
      return;
    }
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (!BCRYPT.test(hash)) {
      problems.push({
        path: 'auth.htpasswd.path',
        message: `${file} line ${i + 1}: user "${user}" does not have a bcrypt hash ($2y$/$2b$/$2a$); create entries with "htpasswd -Bbn USER PASSWORD"`,
      });
      return;
    }
    users.set(user, hash);
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return users;
}

async function readHtpasswd(file: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (e) {
    throw new ConfigError([
      { path: 'auth.htpasswd.path', message: `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` },
    ]);
  }
  return parseHtpasswd(text, file);
}

interface CachedLogin {
  passwordSha256: Buffer;
  expires: number;
}

export interface HtpasswdOptions {
  path: string;
  realm: string;
  logger: Logger;
  /** How long a verified user+password is accepted without bcrypt (default 5 min). */
  cacheTtlMs?: number;
  /** Failed logins per client address: burst (default 10) and refill per second (default 1). */
  throttle?: ThrottleOptions;
  /** Watcher tuning (tests). */
  watch?: { debounceMs?: number; pollMs?: number };
}

export class HtpasswdAuthenticator {
  private users: Map<string, string>;
  private dummyHash: string;
  /** Bumped on every reload: a bcrypt run that started before it does not fill the cache. */
  private generation = 0;
  private readonly cache = new Map<string, CachedLogin>();
  private readonly inflight = new Map<string, Promise<boolean>>();
  private readonly throttle: FailureThrottle;
  private readonly challenge: Record<string, string>;
  private readonly cacheTtlMs: number;
  private readonly logger: Logger;
  private readonly path: string;
  private watch: FileWatch | undefined;
  private lastLazyCheck = Date.now();

  private constructor(opts: HtpasswdOptions, users: Map<string, string>) {
    this.path = opts.path;
    this.users = users;
    this.dummyHash = dummyHash(users);
    this.logger = opts.logger;
    this.cacheTtlMs = opts.cacheTtlMs ?? 5 * 60_000;
    this.throttle = new FailureThrottle(opts.throttle);
    this.challenge = { 'WWW-Authenticate': `Basic realm="${opts.realm.replace(/["\\]/g, '')}"` };
  }

  static async open(opts: HtpasswdOptions): Promise<HtpasswdAuthenticator> {
    const signature = await fileSignature([opts.path]);
    const users = await readHtpasswd(opts.path);
    const auth = new HtpasswdAuthenticator(opts, users);
    auth.watch = new FileWatch([opts.path], signature, () => auth.reload(), opts.watch);
    opts.logger.info({ path: opts.path, users: users.size }, 'htpasswd loaded');
    return auth;
  }

  /** Number of users currently loaded. */
  get size(): number {
    return this.users.size;
  }

  /**
   * Checks an Authorization header value and returns the user name. Throws RegistryError
   * UNAUTHORIZED (with the Basic challenge) or TOOMANYREQUESTS (with Retry-After) otherwise.
   */
  async authenticate(authorization: string | undefined, clientAddress: string): Promise<string> {
    if (authorization === undefined || authorization === '') {
      throw new RegistryError('UNAUTHORIZED', 'authentication required', { headers: this.challenge });
    }
    const waitS = this.throttle.retryAfterSeconds(clientAddress);
    if (waitS > 0) {
      throw new RegistryError('TOOMANYREQUESTS', 'too many failed login attempts', {
        headers: { 'Retry-After': String(waitS) },
      });
    }
    await this.checkFileLazily();

    const credentials = parseBasic(authorization);
    if (credentials && (await this.verify(credentials.user, credentials.password))) return credentials.user;

    if (this.throttle.fail(clientAddress)) {
      this.logger.warn({ clientAddress }, 'client throttled after repeated failed logins');
    }
    this.logger.warn({ user: credentials?.user, clientAddress }, 'authentication failed');
    throw new RegistryError('UNAUTHORIZED', 'invalid username or password', { headers: this.challenge });
  }

  /** Re-reads the file; on error keeps the current users. Returns whether the new file was taken. */
  async reload(): Promise<boolean> {
    try {
      const users = await readHtpasswd(this.path);
      this.users = users;
      this.dummyHash = dummyHash(users);
      this.generation++;
      this.cache.clear();
      this.logger.info({ path: this.path, users: users.size }, 'htpasswd reloaded');
      return true;
    } catch (e) {
      this.logger.error({ path: this.path, err: (e as Error).message }, 'htpasswd reload failed; keeping the previous users');
      return false;
    }
  }

  close(): void {
    this.watch?.close();
    this.cache.clear();
  }

  /** Backs up the watcher: at most once a second, a stat decides whether the file changed. */
  private async checkFileLazily(): Promise<void> {
    const now = Date.now();
    if (now - this.lastLazyCheck < 1000) return;
    this.lastLazyCheck = now;
    await this.watch?.check();
  }

  /** bcrypt comparisons run so far: the expensive part of a login, shared and cached (tests, diagnostics). */
  bcryptRuns = 0;

  private async verify(user: string, password: string): Promise<boolean> {
    const passwordSha256 = crypto.createHash('sha256').update(password).digest();
    const cached = this.cache.get(user);
    if (cached && cached.expires > Date.now() && crypto.timingSafeEqual(cached.passwordSha256, passwordSha256)) {
      return true;
    }
    const hash = this.users.get(user);
    // Concurrent requests with the same credentials (a pull in parallel) share one bcrypt run.
    const key = `${user}\0${passwordSha256.toString('hex')}`;
    let run = this.inflight.get(key);
    if (!run) {
      const generation = this.generation;
      this.bcryptRuns++;
      run = bcrypt
        .compare(password, hash ?? this.dummyHash)
        .then((ok) => {
          ok &&= hash !== undefined;
          if (ok && generation === this.generation) {
            this.cache.set(user, { passwordSha256, expires: Date.now() + this.cacheTtlMs });
          }
          return ok;
        })
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, run);
    }
    return run;
  }
}

function parseBasic(header: string): { user: string; password: string } | undefined {
  const m = /^basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
