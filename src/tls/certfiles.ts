/**
 * TLS from certificate files (http.tls.certificate/key/clientcas/minimumtls) with hot reload:
 * when the files change, new connections get the new certificate; connections already open keep
 * the one they were set up with. A pair that fails to load (e.g. the certificate was written
 * before its key) is logged and the previous certificate stays in use until the next change.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { ConfigError } from '../errors.js';
import { FileWatch, fileSignature, type FileWatchOptions } from './filewatch.js';

const TLS_VERSIONS: Record<string, tls.SecureVersion> = {
  'tls1.0': 'TLSv1',
  'tls1.1': 'TLSv1.1',
  'tls1.2': 'TLSv1.2',
  'tls1.3': 'TLSv1.3',
};

/** distribution's http.tls.minimumtls (tls1.0 … tls1.3, default tls1.2) as a Node version name. */
export function minimumTlsVersion(value: string | undefined): tls.SecureVersion {
  if (value === undefined || value === '') return 'TLSv1.2';
  const v = TLS_VERSIONS[value.toLowerCase()];
  if (!v) {
    throw new ConfigError([
      { path: 'http.tls.minimumtls', message: `unknown TLS version "${value}" (use one of ${Object.keys(TLS_VERSIONS).join(', ')})` },
    ]);
  }
  return v;
}

interface Loaded {
  options: tls.SecureContextOptions;
  context: tls.SecureContext;
  cert: crypto.X509Certificate;
}

/** Reads and checks a certificate chain + key; throws Error with a message naming the problem. */
export function loadKeyPair(
  certPem: Buffer,
  keyPem: Buffer,
  extra: tls.SecureContextOptions = {},
): Loaded {
  let cert: crypto.X509Certificate;
  try {
    cert = new crypto.X509Certificate(certPem);
  } catch (e) {
    throw new Error(`not a PEM certificate: ${(e as Error).message}`);
  }
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey(keyPem);
  } catch (e) {
    throw new Error(`not a PEM private key (encrypted keys are not supported): ${(e as Error).message}`);
  }
  if (!cert.checkPrivateKey(key)) throw new Error('the private key does not belong to the certificate');
  const options: tls.SecureContextOptions = { ...extra, cert: certPem, key: keyPem };
  return { options, context: tls.createSecureContext(options), cert };
}

export function describeCertificate(cert: crypto.X509Certificate): Record<string, string> {
  return {
    subject: cert.subject.replace(/\n/g, ', '),
    subjectAltName: cert.subjectAltName ?? '',
    validTo: cert.validTo,
    fingerprint256: cert.fingerprint256,
  };
}

export class CertificateFiles {
  private readonly servers = new Set<tls.Server>();

  private constructor(
    private current: Loaded,
    private readonly baseOptions: tls.SecureContextOptions & { requestCert: boolean },
    private readonly paths: { certificate: string; key: string; clientcas: string[] },
    private readonly logger: Logger,
    private watch?: FileWatch,
  ) {}

  static async open(opts: {
    certificate: string;
    key: string;
    clientcas?: string[];
    minimumtls?: string;
    logger: Logger;
    /** Tests shorten these; defaults 100 ms debounce, 5 s poll. */
    watch?: FileWatchOptions;
  }): Promise<CertificateFiles> {
    const minVersion = minimumTlsVersion(opts.minimumtls);
    const paths = { certificate: opts.certificate, key: opts.key, clientcas: opts.clientcas ?? [] };
    const signature = await fileSignature(allPaths(paths));
    const readOrThrow = async (path: string, key: string): Promise<Buffer> => {
      try {
        return await fs.promises.readFile(path);
      } catch (e) {
        throw new ConfigError([{ path: key, message: `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }]);
      }
    };
    const certPem = await readOrThrow(paths.certificate, 'http.tls.certificate');
    const keyPem = await readOrThrow(paths.key, 'http.tls.key');
    const ca = await Promise.all(paths.clientcas.map((p, i) => readOrThrow(p, `http.tls.clientcas[${i}]`)));
    for (const [i, pem] of ca.entries()) {
      try {
        new crypto.X509Certificate(pem);
      } catch (e) {
        throw new ConfigError([{ path: `http.tls.clientcas[${i}]`, message: `${paths.clientcas[i]} is not a PEM certificate` }]);
      }
    }
    const base = { minVersion, requestCert: ca.length > 0, ...(ca.length > 0 ? { ca } : {}) };
    let loaded: Loaded;
    try {
      loaded = loadKeyPair(certPem, keyPem, contextOptions(base));
    } catch (e) {
      throw new ConfigError([
        { path: 'http.tls', message: `${paths.certificate} + ${paths.key}: ${(e as Error).message}` },
      ]);
    }
    const files = new CertificateFiles(loaded, base, paths, opts.logger);
    opts.logger.info({ ...describeCertificate(loaded.cert), mTLS: base.requestCert }, 'TLS certificate loaded');
    files.watch = new FileWatch(allPaths(paths), signature, () => files.reload(), opts.watch);
    return files;
  }

  /**
   * Options for https.createServer / tls.createServer. SNI clients get the current certificate via
   * SNICallback; call attach(server) too so clients without SNI (connecting by IP) also do.
   */
  serverOptions(): tls.TlsOptions {
    return {
      ...this.current.options,
      requestCert: this.baseOptions.requestCert,
      rejectUnauthorized: this.baseOptions.requestCert,
      SNICallback: (_servername, cb) => cb(null, this.current.context),
    };
  }

  /** Keeps the server's default context (used when a client sends no SNI) up to date. */
  attach(server: tls.Server): void {
    this.servers.add(server);
    server.setSecureContext(this.current.options);
    server.once('close', () => this.servers.delete(server));
  }

  /** Re-reads the files now (the watcher calls this; exposed for tests and SIGHUP). */
  async reload(): Promise<boolean> {
    try {
      const [certPem, keyPem, ...ca] = await Promise.all(
        [this.paths.certificate, this.paths.key, ...this.paths.clientcas].map((p) => fs.promises.readFile(p)),
      );
      const base = ca.length > 0 ? { ...this.baseOptions, ca } : this.baseOptions;
      const loaded = loadKeyPair(certPem!, keyPem!, contextOptions(base));
      const changed = loaded.cert.fingerprint256 !== this.current.cert.fingerprint256;
      this.current = loaded;
      for (const s of this.servers) s.setSecureContext(loaded.options);
      if (changed) this.logger.info(describeCertificate(loaded.cert), 'TLS certificate reloaded');
      return true;
    } catch (e) {
      this.logger.error(
        { err: (e as Error).message, certificate: this.paths.certificate, key: this.paths.key },
        'TLS certificate reload failed; still serving the previous certificate',
      );
      return false;
    }
  }

  close(): void {
    this.watch?.close();
    this.servers.clear();
  }
}

function allPaths(p: { certificate: string; key: string; clientcas: string[] }): string[] {
  return [p.certificate, p.key, ...p.clientcas];
}

/** The server-level flag requestCert is not a context option. */
function contextOptions(base: tls.SecureContextOptions & { requestCert: boolean }): tls.SecureContextOptions {
  const { requestCert: _, ...rest } = base;
  return rest;
}
