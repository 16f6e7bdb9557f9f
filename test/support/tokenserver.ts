// A Docker token service (the `realm` of `WWW-Authenticate: Bearer`) for distribution's auth.token, plus
// test certificates. Tokens are ES256 JWTs whose header carries an `x5c` chain (a leaf signed by a test CA);
// distribution validates them against `rootcertbundle` (the CA), `issuer` and `service` exactly as in production.
import { execFile } from 'node:child_process';
import { randomUUID, sign, X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { makeTempDir, removeDir } from './tmp.js';

const run = promisify(execFile);

export interface CertChain {
  dir: string;
  /** CA certificate (PEM file): distribution's rootcertbundle, or a client's trusted CA. */
  caCert: string;
  /** Leaf certificate + key (PEM files), with SAN IP:127.0.0.1, IP:127.0.0.2 and DNS:localhost. */
  leafCert: string;
  leafKey: string;
}

/** A fresh P-256 CA and a leaf certificate it signed (usable as TLS server cert and as JWT signing cert). */
export async function generateCertChain(dir: string): Promise<CertChain> {
  const p = (f: string) => join(dir, f);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', [
    'req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '2', '-subj', '/CN=regcache test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await run('openssl', ['req', ...ec, '-keyout', p('leaf.key'), '-out', p('leaf.csr'), '-subj', '/CN=127.0.0.1']);
  await writeFile(
    p('leaf.ext'),
    'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' +
      'extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:127.0.0.2,DNS:localhost\n',
  );
  await run('openssl', [
    'x509', '-req', '-in', p('leaf.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial',
    '-out', p('leaf.pem'), '-days', '2', '-extfile', p('leaf.ext'),
  ]);
  return { dir, caCert: p('ca.pem'), leafCert: p('leaf.pem'), leafKey: p('leaf.key') };
}

export interface TokenRequest {
  scopes: string[];
  service: string | undefined;
  /** Whether an Authorization header came with the request (its value is never kept). */
  hadAuthorization: boolean;
  /** User name of valid Basic credentials, if any. */
  account: string | undefined;
  status: number;
}

export interface TokenServerOptions {
  /** Loopback address to listen on (default 127.0.0.1; 127.0.0.2 gives the realm a different host name). */
  host?: string;
  /** Require these Basic credentials (401 otherwise). */
  credentials?: { username: string; password: string };
  /** expires_in sent to clients (omitted when null); default 300. */
  expiresIn?: number | null;
  /** Answer with `access_token` instead of `token`. */
  accessTokenField?: boolean;
}

export interface TokenServer {
  /** Token endpoint URL (the realm). */
  realm: string;
  service: string;
  issuer: string;
  certs: CertChain;
  requests: TokenRequest[];
  /** Answer every request with this status (e.g. 500) until cleared with undefined. */
  failWith(status: number | undefined): void;
  /** Changes expiresIn / accessTokenField for later requests. */
  configure(opts: Pick<TokenServerOptions, 'expiresIn' | 'accessTokenField'>): void;
  /** `auth.token` block for distribution's config.yml. */
  registryConfig(): Record<string, unknown>;
  stop(): Promise<void>;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export async function startTokenServer(options: TokenServerOptions = {}): Promise<TokenServer> {
  const opts = { ...options };
  const dir = await makeTempDir('regcache-tokenserver-');
  try {
    const certs = await generateCertChain(dir);
    const leafPem = await readFile(certs.leafCert, 'utf8');
    const leafKey = await readFile(certs.leafKey, 'utf8');
    const x5c = [new X509Certificate(leafPem).raw.toString('base64')];
    const service = 'regcache-test-registry';
    const issuer = 'regcache-test-issuer';
    const requests: TokenRequest[] = [];
    let failStatus: number | undefined;

    const issue = (scopes: string[], account: string | undefined): string => {
      const now = Math.floor(Date.now() / 1000);
      const access = scopes.map((s) => {
        const first = s.indexOf(':');
        const last = s.lastIndexOf(':');
        return { type: s.slice(0, first), name: s.slice(first + 1, last), actions: s.slice(last + 1).split(',') };
      });
      const header = { typ: 'JWT', alg: 'ES256', x5c };
      const claims = {
        iss: issuer, sub: account ?? '', aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access,
      };
      const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
      const sig = sign('sha256', Buffer.from(input), { key: leafKey, dsaEncoding: 'ieee-p1363' });
      return `${input}.${b64url(sig)}`;
    };

    const handle = (req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const authz = req.headers.authorization;
      let account: string | undefined;
      if (authz?.startsWith('Basic ')) {
        const [user, ...rest] = Buffer.from(authz.slice(6), 'base64').toString('utf8').split(':');
        if (opts.credentials && user === opts.credentials.username && rest.join(':') === opts.credentials.password) {
          account = user;
        }
      }
      const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        requests.push({
          scopes: url.searchParams.getAll('scope'),
          service: url.searchParams.get('service') ?? undefined,
          hadAuthorization: authz !== undefined,
          account,
          status,
        });
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      };
      if (url.pathname !== '/token') return answer(404, { error: 'not found' });
      if (failStatus !== undefined) return answer(failStatus, { error: 'told to fail' });
      if (opts.credentials && !account) {
        return answer(401, { error: 'credentials required' }, { 'www-authenticate': 'Basic realm="token"' });
      }
      const token = issue(url.searchParams.getAll('scope'), account);
      const expires = opts.expiresIn === undefined ? { expires_in: 300 } : opts.expiresIn === null ? {} : { expires_in: opts.expiresIn };
      answer(200, {
        ...(opts.accessTokenField ? { access_token: token } : { token }),
        ...expires,
        issued_at: new Date().toISOString(),
      });
    };

    const server = createServer(handle);
    const host = opts.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, resolve);
    });
    const { port } = server.address() as AddressInfo;
    const realm = `http://${host}:${port}/token`;
    return {
      realm,
      service,
      issuer,
      certs,
      requests,
      failWith(status) {
        failStatus = status;
      },
      configure(o) {
        Object.assign(opts, o);
      },
      registryConfig: () => ({ auth: { token: { realm, service, issuer, rootcertbundle: certs.caCert } } }),
      async stop() {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await removeDir(dir);
      },
    };
  } catch (err) {
    await removeDir(dir);
    throw err;
  }
}
