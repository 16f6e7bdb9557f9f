import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { openAuthProvider } from '../auth/index.js';
import type { Config } from '../config/types.js';
import type { AuthProvider } from '../seams.js';
import type { AcmeManager } from '../tls/acme.js';
import type { CertificateFiles } from '../tls/certfiles.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

const SERVER_OPTIONS: http.ServerOptions = {
  keepAliveTimeout: 65_000,
  requestTimeout: 0,
  headersTimeout: 60_000,
  maxHeaderSize: 16 * 1024,
};

/**
 * Client authentication and TLS for the listeners: htpasswd, certificate files with hot reload,
 * or ACME (Let's Encrypt) certificates. Builds the servers; the app only supplies handlers.
 */
export class Security {
  private constructor(
    /** Client authentication of the registry API; undefined: an open mirror. */
    readonly auth: AuthProvider | undefined,
    private readonly certs: CertificateFiles | undefined,
    readonly acme: AcmeManager | undefined,
  ) {}

  static async open(config: Config, logger: Logger): Promise<Security> {
    const auth = await openAuthProvider(config, logger);
    warnIfOpenMirror(config, logger, auth !== undefined);
    const tls = config.http.tls;
    let certs: CertificateFiles | undefined;
    let acme: AcmeManager | undefined;
    try {
      if (tls?.certificate && tls.key) {
        if (tls.letsencrypt) logger.warn('http.tls.certificate is set: http.tls.letsencrypt is ignored');
        const { CertificateFiles } = await import('../tls/certfiles.js'); // loaded only with http.tls
        certs = await CertificateFiles.open({
          certificate: tls.certificate,
          key: tls.key,
          clientcas: tls.clientcas,
          minimumtls: tls.minimumtls,
          logger: logger.child({ component: 'tls' }),
        });
      } else if (tls?.letsencrypt) {
        const a = config.regcache.acme;
        // Loaded on demand: the ACME client and its HTTP stack cost ~25 MB that most mirrors never use.
        const { AcmeManager, LETSENCRYPT_DIRECTORY } = await import('../tls/acme.js');
        acme = await AcmeManager.open({
          cachedir: path.dirname(path.resolve(tls.letsencrypt.cachefile)),
          email: tls.letsencrypt.email,
          hosts: tls.letsencrypt.hosts,
          directoryUrl: tls.letsencrypt.directoryurl ?? LETSENCRYPT_DIRECTORY,
          challenge: a.challenge,
          dns01Hook: a.dns01?.hook,
          dns01HookTimeoutMs: a.dns01?.timeoutMs,
          caFile: a.cafile,
          minimumtls: tls.minimumtls,
          logger: logger.child({ component: 'acme' }),
        });
      }
    } catch (e) {
      auth?.close();
      certs?.close();
      throw e;
    }
    return new Security(auth, certs, acme);
  }

  get scheme(): 'http' | 'https' {
    return this.certs || this.acme ? 'https' : 'http';
  }

  /** A server for one API listener: https when TLS is configured. */
  createServer(handler: Handler): http.Server {
    const tlsSource = this.certs ?? this.acme;
    let server: http.Server;
    if (tlsSource) {
      server = https.createServer({ ...SERVER_OPTIONS, ...tlsSource.serverOptions() }, handler);
      tlsSource.attach(server as https.Server);
    } else {
      server = http.createServer(SERVER_OPTIONS, handler);
    }
    server.on('clientError', answerMalformedRequest);
    return server;
  }

  /** The plain-HTTP listener that answers ACME HTTP-01 challenges, when that challenge is configured. */
  challengeServer(config: Config): { server: http.Server; addr: string } | undefined {
    if (!this.acme || config.regcache.acme.challenge !== 'http-01') return undefined;
    const acme = this.acme;
    const server = http.createServer(SERVER_OPTIONS, (req, res) => {
      if (acme.handleHttpChallenge(req, res)) return;
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    });
    return { server, addr: config.regcache.acme.httpaddr };
  }

  /** After the listeners are up: obtains/loads the ACME certificate (challenges need the listeners). */
  async start(): Promise<void> {
    await this.acme?.start();
  }

  close(): void {
    this.auth?.close();
    this.certs?.close();
    this.acme?.close();
  }
}

/** Requests Node's HTTP parser refuses (bad bytes, oversized headers) still get an OCI error body. */
function answerMalformedRequest(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (!socket.writable || err.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
  const status = tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request';
  const body = JSON.stringify({
    errors: [{ code: 'UNSUPPORTED', message: tooLarge ? 'request headers too large' : 'malformed HTTP request' }],
  });
  socket.end(
    `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Docker-Distribution-API-Version: registry/2.0\r\nConnection: close\r\n\r\n${body}`,
  );
}

function warnIfOpenMirror(config: Config, logger: Logger, clientAuth: boolean): void {
  if (clientAuth) return;
  const withCreds = config.upstreams.filter((u) => u.username || u.credentialhelper).map((u) => u.name);
  if (withCreds.length === 0) return;
  logger.warn(
    { upstreams: withCreds },
    'SECURITY: upstream credentials are configured but clients are not authenticated (no auth.htpasswd): ' +
      'every image those credentials can read is now public to anyone who can reach this mirror. ' +
      'Enable auth.htpasswd (and regcache.requireauth: true), or restrict network access.',
  );
}
