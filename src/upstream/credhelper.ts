import { execFile } from 'node:child_process';
import type { Logger } from 'pino';
import { RegistryError } from '../errors.js';

export interface Credentials {
  username: string;
  password: string;
}

const HELPER_TIMEOUT_MS = 30_000;
/** ECR tokens live 12 h; asking again every hour keeps far from expiry without load on the helper. */
const DEFAULT_REFRESH_MS = 60 * 60 * 1000;

/** `ecr-login` → `docker-credential-ecr-login` (docker's credHelpers naming); paths are kept as given. */
export function helperProgram(name: string): string {
  if (name.includes('/') || name.startsWith('docker-credential-')) return name;
  return `docker-credential-${name}`;
}

/**
 * Credentials from a docker credential helper (`docker-credential-ecr-login get`, server URL on stdin,
 * JSON `{ServerURL, Username, Secret}` on stdout), cached and refreshed before they can expire;
 * invalidate() after a 401 forces a fresh pair.
 */
export class CredentialHelper {
  private cached: { creds: Credentials; at: number } | undefined;
  private pending: Promise<Credentials> | undefined;

  constructor(
    private readonly program: string,
    private readonly serverUrl: string,
    private readonly logger: Logger,
    private readonly refreshMs = DEFAULT_REFRESH_MS,
    private readonly now: () => number = Date.now,
  ) {}

  async get(): Promise<Credentials> {
    if (this.cached && this.now() - this.cached.at < this.refreshMs) return this.cached.creds;
    this.pending ??= this.run().finally(() => (this.pending = undefined));
    return this.pending;
  }

  invalidate(): void {
    this.cached = undefined;
  }

  private run(): Promise<Credentials> {
    const program = helperProgram(this.program);
    return new Promise((resolve, reject) => {
      const child = execFile(program, ['get'], { timeout: HELPER_TIMEOUT_MS, maxBuffer: 1024 * 1024 }, (err, stdout) => {
        if (err) {
          // stderr/stdout may echo secrets: report only the program and how it ended.
          const how = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : `failed (${err.message.split('\n')[0]})`;
          this.logger.error({ program }, `credential helper ${how}`);
          reject(new RegistryError('UNAUTHORIZED', `credential helper ${program} ${how}`));
          return;
        }
        let parsed: { Username?: unknown; Secret?: unknown };
        try {
          parsed = JSON.parse(stdout) as typeof parsed;
        } catch {
          reject(new RegistryError('UNAUTHORIZED', `credential helper ${program} printed no JSON`));
          return;
        }
        if (typeof parsed.Username !== 'string' || typeof parsed.Secret !== 'string') {
          reject(new RegistryError('UNAUTHORIZED', `credential helper ${program} returned no Username/Secret`));
          return;
        }
        const creds = { username: parsed.Username, password: parsed.Secret };
        this.cached = { creds, at: this.now() };
        this.logger.debug({ program, username: creds.username }, 'credentials from helper');
        resolve(creds);
      });
      child.stdin?.on('error', () => {}); // a helper that exits early (or is missing) is reported by the callback
      child.stdin?.end(this.serverUrl);
    });
  }
}
