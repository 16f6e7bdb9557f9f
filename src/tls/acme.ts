/**
 * Certificates from an ACME CA (Let's Encrypt) for http.tls.letsencrypt, with the challenge chosen
 * by regcache.acme: TLS-ALPN-01 (answered on the TLS listener itself), HTTP-01 (answered on a
 * plain-HTTP listener through handleHttpChallenge) or DNS-01 (a hook program publishes the TXT
 * record). Account key, certificate and key are kept in cachedir and reused across restarts;
 * renewal runs in the background at 2/3 of the certificate's lifetime.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import acme from 'acme-client';
import type { Logger } from 'pino';
import { ConfigError } from '../errors.js';
import { createAlpnCertificate } from './alpncert.js';
import { describeCertificate, loadKeyPair, minimumTlsVersion } from './certfiles.js';

export type AcmeChallenge = 'tls-alpn-01' | 'http-01' | 'dns-01';
export const ACME_CHALLENGES: readonly AcmeChallenge[] = ['tls-alpn-01', 'http-01', 'dns-01'];
export const LETSENCRYPT_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';

export interface AcmeOptions {
  /** Directory for account key, certificate and key (distribution: dirname of letsencrypt.cachefile). */
  cachedir: string;
  email: string;
  hosts: string[];
  directoryUrl: string;
  challenge: AcmeChallenge;
  /** dns-01: program run as `HOOK set NAME VALUE` / `HOOK clear NAME VALUE` (no shell). */
  dns01Hook?: string;
  /** dns-01: how long the hook may run (default 5 min; it should wait until the record is visible). */
  dns01HookTimeoutMs?: number;
  /** Extra PEM CA(s) trusted for the ACME server's own https (a private CA, pebble in tests). */
  caFile?: string;
  minimumtls?: string;
  logger: Logger;
}

const FILES = {
  accountKey: 'acme-account.key',
  cert: 'acme-cert.pem',
  key: 'acme-cert.key',
  meta: 'acme-cert.json',
};
/** setTimeout's limit (~24.8 days); longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const RETRY_MS = 60 * 60_000;
const ALPN_ACME = 'acme-tls/1';
/** Set on a TLS socket whose ClientHello asked for a TLS-ALPN-01 challenge answer. */
const kChallengeContext = Symbol('acmeChallengeContext');

interface Current {
  options: tls.SecureContextOptions;
  context: tls.SecureContext;
  cert: crypto.X509Certificate;
  renewAt: number;
}

interface CertMeta {
  directoryUrl: string;
  hosts: string[];
}

export class AcmeManager extends EventEmitter<{ certificate: [crypto.X509Certificate] }> {
  private current: Current | undefined;
  private readonly httpTokens = new Map<string, string>();
  private readonly alpnContexts = new Map<string, tls.SecureContext>();
  private readonly servers = new Set<tls.Server>();
  private readonly minVersion: tls.SecureVersion;
  private timer: NodeJS.Timeout | undefined;
  private issuing: Promise<void> | undefined;
  private closed = false;

  private constructor(
    private readonly opts: AcmeOptions,
    private readonly accountKey: Buffer,
  ) {
    super();
    this.minVersion = minimumTlsVersion(opts.minimumtls);
  }

  static async open(opts: AcmeOptions): Promise<AcmeManager> {
    const problems: Array<{ path: string; message: string }> = [];
    if (opts.hosts.length === 0) problems.push({ path: 'http.tls.letsencrypt.hosts', message: 'at least one host name is needed' });
    if (!ACME_CHALLENGES.includes(opts.challenge)) {
      problems.push({ path: 'regcache.acme.challenge', message: `must be one of ${ACME_CHALLENGES.join(', ')}` });
    }
    if (opts.challenge === 'dns-01') {
      if (!opts.dns01Hook) problems.push({ path: 'regcache.acme.dns01.hook', message: 'dns-01 needs a hook program' });
      else {
        try {
          await fs.promises.access(opts.dns01Hook, fs.constants.X_OK);
        } catch {
          problems.push({ path: 'regcache.acme.dns01.hook', message: `${opts.dns01Hook} is not an executable file` });
        }
      }
    }
    if (problems.length > 0) throw new ConfigError(problems);
    if (opts.caFile) trustAcmeCa(await readConfigFile(opts.caFile, 'regcache.acme.cafile'));
    acme.setLogger((msg) => opts.logger.debug({ acme: msg }, 'acme-client'));

    try {
      await fs.promises.mkdir(opts.cachedir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new ConfigError([{ path: 'http.tls.letsencrypt.cachefile', message: `cannot create ${opts.cachedir}: ${(e as Error).message}` }]);
    }
    const accountKeyPath = path.join(opts.cachedir, FILES.accountKey);
    let accountKey: Buffer | undefined = await fs.promises.readFile(accountKeyPath).catch(() => undefined);
    if (!accountKey) {
      const created = await acme.crypto.createPrivateEcdsaKey();
      await writeFileAtomic(accountKeyPath, created, 0o600);
      accountKey = created;
      opts.logger.info({ path: accountKeyPath }, 'ACME account key created');
    }
    const manager = new AcmeManager(opts, accountKey);
    await manager.loadCached();
    return manager;
  }

  /**
   * Makes sure a certificate is being served: the cached one when it is valid for these hosts from
   * this CA (renewed in the background if due), else a new one (awaited). The TLS listener (for
   * tls-alpn-01) or the plain-HTTP listener (for http-01) must already be listening.
   */
  async start(): Promise<void> {
    if (this.current && Date.now() < this.current.renewAt) {
      this.schedule(this.current.renewAt - Date.now());
      return;
    }
    if (this.current) {
      this.opts.logger.info('cached ACME certificate is due for renewal; renewing in the background');
      this.schedule(0);
      return;
    }
    await this.issue();
    this.schedule(this.current!.renewAt - Date.now());
  }

  /**
   * Options for https.createServer: the current certificate through SNICallback, and answers to
   * TLS-ALPN-01 validation (ALPN "acme-tls/1"). Uses ALPNCallback (selects http/1.1 for other
   * clients), so do not also set ALPNProtocols. Call attach(server) for clients without SNI.
   */
  serverOptions(): tls.TlsOptions {
    const self = this;
    return {
      minVersion: this.minVersion,
      ...(this.current ? this.current.options : {}),
      SNICallback(this: unknown, servername, cb) {
        const challenge = (this as { [kChallengeContext]?: tls.SecureContext } | undefined)?.[kChallengeContext];
        // Before the first certificate, a pending challenge certificate is all there is; TLS 1.2 needs
        // some certificate here to pick a cipher before ALPNCallback swaps in the challenge one.
        cb(null, challenge ?? self.current?.context ?? self.alpnContexts.get(servername.toLowerCase()));
      },
      ALPNCallback(this: unknown, { servername, protocols }) {
        if (protocols.includes(ALPN_ACME)) {
          const context = servername ? self.alpnContexts.get(servername.toLowerCase()) : undefined;
          if (!context) return undefined;
          // TLS 1.2 picks the certificate (SNICallback) before ALPN, TLS 1.3 after: cover both.
          const socket = this as tls.TLSSocket & { [kChallengeContext]?: tls.SecureContext };
          socket[kChallengeContext] = context;
          socket.setKeyCert(context);
          return ALPN_ACME;
        }
        return ['http/1.1', 'http/1.0'].find((p) => protocols.includes(p));
      },
    };
  }

  /** Keeps the server's default context (clients without SNI) on the current certificate. */
  attach(server: tls.Server): void {
    this.servers.add(server);
    if (this.current) server.setSecureContext(this.current.options);
    server.once('close', () => this.servers.delete(server));
  }

  /** For the plain-HTTP listener: answers GET/HEAD /.well-known/acme-challenge/<token> and returns true. */
  handleHttpChallenge(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec((req.url ?? '').split('?')[0]!);
    if (!m) return false;
    const keyAuthorization = this.httpTokens.get(m[1]!);
    if (keyAuthorization === undefined) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('unknown ACME challenge token\n');
      return true;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(keyAuthorization) });
    res.end(req.method === 'HEAD' ? undefined : keyAuthorization);
    return true;
  }

  /** The certificate being served, if any. */
  certificate(): crypto.X509Certificate | undefined {
    return this.current?.cert;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.servers.clear();
  }

  /** Obtains a new certificate now (start() and the renewal timer call this; one run at a time). */
  issue(): Promise<void> {
    this.issuing ??= this.order().finally(() => (this.issuing = undefined));
    return this.issuing;
  }

  private async order(): Promise<void> {
    const { hosts, challenge, logger } = this.opts;
    logger.info({ hosts, challenge, directoryUrl: this.opts.directoryUrl }, 'requesting ACME certificate');
    const client = new acme.Client({
      directoryUrl: this.opts.directoryUrl,
      accountKey: this.accountKey,
      backoffAttempts: 10,
      backoffMin: 1000,
      backoffMax: 10_000,
    });
    const key = await acme.crypto.createPrivateEcdsaKey();
    const [, csr] = await acme.crypto.createCsr({ commonName: hosts[0], altNames: hosts }, key);
    const chain = await client.auto({
      csr,
      email: this.opts.email,
      termsOfServiceAgreed: true,
      // acme-client's own pre-check would query port 80/443 and the system resolver; the CA checks anyway.
      skipChallengeVerification: true,
      challengePriority: [challenge],
      challengeCreateFn: (authz, ch, keyAuthorization) => this.setChallenge(authz, ch, keyAuthorization),
      challengeRemoveFn: (authz, ch, keyAuthorization) => this.clearChallenge(authz, ch, keyAuthorization),
    });
    const certPem = Buffer.from(chain);
    loadKeyPair(certPem, key); // throws before anything unusable is stored
    const dir = this.opts.cachedir;
    await writeFileAtomic(path.join(dir, FILES.key), key, 0o600);
    await writeFileAtomic(path.join(dir, FILES.cert), certPem, 0o644);
    const meta: CertMeta = { directoryUrl: this.opts.directoryUrl, hosts };
    await writeFileAtomic(path.join(dir, FILES.meta), Buffer.from(JSON.stringify(meta, null, 2)), 0o644);
    this.use(certPem, key);
  }

  private async setChallenge(authz: acme.Authorization, ch: { type: string; token: string }, keyAuthorization: string): Promise<void> {
    const host = authz.identifier.value;
    if (ch.type !== this.opts.challenge) {
      throw new Error(`the ACME server offers no ${this.opts.challenge} challenge for ${host}`);
    }
    this.opts.logger.info({ host, challenge: ch.type }, 'answering ACME challenge');
    if (ch.type === 'http-01') this.httpTokens.set(ch.token, keyAuthorization);
    else if (ch.type === 'tls-alpn-01') {
      const { key, cert } = await createAlpnCertificate(host, keyAuthorization);
      this.alpnContexts.set(host.toLowerCase(), tls.createSecureContext({ key, cert }));
    } else await this.runHook('set', `_acme-challenge.${host}`, keyAuthorization);
  }

  private async clearChallenge(authz: acme.Authorization, ch: { type: string; token: string }, keyAuthorization: string): Promise<void> {
    const host = authz.identifier.value;
    if (ch.type === 'http-01') this.httpTokens.delete(ch.token);
    else if (ch.type === 'tls-alpn-01') this.alpnContexts.delete(host.toLowerCase());
    else if (ch.type === 'dns-01') {
      try {
        await this.runHook('clear', `_acme-challenge.${host}`, keyAuthorization);
      } catch (e) {
        this.opts.logger.warn({ err: (e as Error).message }, 'dns-01 hook could not clear the record');
      }
    }
  }

  private runHook(action: 'set' | 'clear', name: string, value: string): Promise<void> {
    const hook = this.opts.dns01Hook!;
    const timeout = this.opts.dns01HookTimeoutMs ?? 5 * 60_000;
    return new Promise((resolve, reject) => {
      execFile(hook, [action, name, value], { timeout, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
        if (!err) {
          this.opts.logger.debug({ action, name, stdout: stdout.slice(-2000) }, 'dns-01 hook done');
          return resolve();
        }
        const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: string };
        const why = e.killed && e.signal ? `timed out after ${timeout} ms` : typeof e.code === 'number' ? `exited with status ${e.code}` : e.message;
        const output = `${stderr}${stdout}`.trim().slice(-2000);
        reject(new Error(`dns-01 hook "${hook} ${action} ${name}" ${why}${output ? `: ${output}` : ''}`));
      });
    });
  }

  /** Loads the cached certificate when it belongs to this CA and covers every configured host. */
  private async loadCached(): Promise<void> {
    const dir = this.opts.cachedir;
    const [certPem, keyPem, metaText] = await Promise.all(
      [FILES.cert, FILES.key, FILES.meta].map((f) => fs.promises.readFile(path.join(dir, f)).catch(() => undefined)),
    );
    if (!certPem || !keyPem || !metaText) return;
    try {
      const meta = JSON.parse(metaText.toString('utf8')) as CertMeta;
      const cert = new crypto.X509Certificate(certPem);
      const missing = this.opts.hosts.filter((h) => !cert.checkHost(h, { wildcards: true }) && !coversWildcard(cert, h));
      if (meta.directoryUrl !== this.opts.directoryUrl || missing.length > 0) {
        this.opts.logger.info({ missing, directoryUrl: meta.directoryUrl }, 'cached ACME certificate does not fit the configuration');
        return;
      }
      if (Date.parse(cert.validTo) <= Date.now()) return;
      this.use(certPem, keyPem);
    } catch (e) {
      this.opts.logger.warn({ err: (e as Error).message }, 'ignoring unusable cached ACME certificate');
    }
  }

  private use(certPem: Buffer, keyPem: Buffer): void {
    const loaded = loadKeyPair(certPem, keyPem, { minVersion: this.minVersion });
    const notBefore = Date.parse(loaded.cert.validFrom);
    const notAfter = Date.parse(loaded.cert.validTo);
    this.current = { ...loaded, renewAt: notBefore + ((notAfter - notBefore) * 2) / 3 };
    for (const s of this.servers) s.setSecureContext(loaded.options);
    this.opts.logger.info(
      { ...describeCertificate(loaded.cert), renewAt: new Date(this.current.renewAt).toISOString() },
      'ACME certificate in use',
    );
    this.emit('certificate', loaded.cert);
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.renewIfDue(), Math.max(0, Math.min(delayMs, MAX_TIMER_MS)));
    this.timer.unref();
  }

  private async renewIfDue(): Promise<void> {
    const renewAt = this.current?.renewAt ?? 0;
    if (Date.now() < renewAt) return this.schedule(renewAt - Date.now());
    try {
      await this.issue();
      this.schedule(this.current!.renewAt - Date.now());
    } catch (e) {
      this.opts.logger.error({ err: (e as Error).message, retryInMs: RETRY_MS }, 'ACME certificate renewal failed');
      this.schedule(RETRY_MS);
    }
  }
}

/** checkHost does not match "*.example.com" as a host; a wildcard SAN covers it literally. */
function coversWildcard(cert: crypto.X509Certificate, host: string): boolean {
  return host.startsWith('*.') && (cert.subjectAltName ?? '').split(/,\s*/).includes(`DNS:${host}`);
}

/** acme-client talks through one shared axios instance, so the extra CA applies process-wide. */
function trustAcmeCa(pem: Buffer): void {
  acme.axios.defaults.httpsAgent = new https.Agent({ ca: [...tls.rootCertificates, pem.toString('utf8')] });
}

async function readConfigFile(file: string, key: string): Promise<Buffer> {
  try {
    return await fs.promises.readFile(file);
  } catch (e) {
    throw new ConfigError([{ path: key, message: `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }]);
  }
}

async function writeFileAtomic(file: string, data: Buffer, mode: number): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await fs.promises.writeFile(tmp, data, { mode });
  await fs.promises.chmod(tmp, mode); // writeFile's mode is masked by umask
  await fs.promises.rename(tmp, file);
}
