/**
 * AcmeManager against a real ACME server: Debian's pebble, validating challenges against our own
 * listeners on loopback, with pebble-challtestsrv as its DNS server (every name → 127.0.0.1, and
 * TXT records set by the dns-01 hook).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { pino } from 'pino';
import * as x509 from '@peculiar/x509';
import acme from 'acme-client';
import { AcmeManager, type AcmeChallenge } from '../../src/tls/acme.js';
import { createAlpnCertificate } from '../../src/tls/alpncert.js';
import { freePort } from '../support/ports.js';
import { startProcess, waitFor, type ManagedProcess } from '../support/process.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

function get(url: string, ca: string | Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c) => (body += c)).on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

/** Connects like a client that trusts only pebble's root: succeeds only with a pebble-issued chain for host. */
function connectVerified(
  port: number,
  host: string,
  ca: string,
  alpn?: string[],
  extra: tls.ConnectionOptions = {},
): Promise<{ cert: tls.DetailedPeerCertificate; alpn: string | false | null }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: host, ca, ...(alpn ? { ALPNProtocols: alpn } : {}), ...extra }, () => {
      resolve({ cert: s.getPeerCertificate(true), alpn: s.alpnProtocol });
      s.end();
    });
    s.on('error', reject);
  });
}

/** A self-signed ECDSA certificate with chosen validity (openssl 3.0 cannot backdate with req). */
async function selfSigned(host: string, notBefore: Date, notAfter: Date): Promise<{ cert: string; key: string }> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await crypto.webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '01', name: `CN=${host}`, notBefore, notAfter, keys, signingAlgorithm: algorithm,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: host }])],
    },
    crypto.webcrypto as unknown as Crypto,
  );
  const der = Buffer.from(await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }) as string;
  return { cert: cert.toString('pem'), key };
}

/** The last 20 000 bytes each of pebble's and challtestsrv's output, for failure messages. */
async function outputOf(procs: ManagedProcess[]): Promise<string> {
  return (await Promise.all(procs.map((p) => p.logTail(20_000)))).join('\n');
}

describe('AcmeManager with pebble', () => {
  let dir: string;
  let caFile: string;
  let pebbleCa: string;
  let pebbleRoot: string;
  let directoryUrl: string;
  let challtestMgmt: number;
  let tlsPort: number;
  let httpServer: http.Server;
  let httpChallengeRequests = 0;
  let currentManager: AcmeManager | undefined;
  const procs: ManagedProcess[] = [];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regcache-acme-'));
    // pebble's own https certificate, from a throwaway CA (Debian ships no test certs).
    caFile = path.join(dir, 'pebble-ca.pem');
    const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'pebble-ca.key', '-out', caFile, '-days', '2', '-subj', '/CN=pebble test CA');
    openssl('req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'pebble.key', '-out', 'pebble.csr', '-subj', '/CN=localhost');
    fs.writeFileSync(path.join(dir, 'pebble.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    openssl('x509', '-req', '-in', 'pebble.csr', '-CA', caFile, '-CAkey', 'pebble-ca.key', '-set_serial', '1', '-days', '2', '-out', 'pebble.pem', '-extfile', 'pebble.ext');
    pebbleCa = fs.readFileSync(caFile, 'utf8');

    // Our listeners, on the ports pebble validates: plain HTTP shared by all tests, TLS per test.
    httpServer = http.createServer((req, res) => {
      httpChallengeRequests++;
      if (!currentManager?.handleHttpChallenge(req, res)) res.writeHead(404).end();
    });
    await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
    const httpPort = (httpServer.address() as net.AddressInfo).port;
    tlsPort = await freePort();

    const [acmePort, mgmtPort, dnsPort] = [await freePort(), await freePort(), await freePort()];
    challtestMgmt = await freePort();
    const config = path.join(dir, 'pebble.json');
    fs.writeFileSync(
      config,
      JSON.stringify({
        pebble: {
          listenAddress: `127.0.0.1:${acmePort}`,
          managementListenAddress: `127.0.0.1:${mgmtPort}`,
          certificate: path.join(dir, 'pebble.pem'),
          privateKey: path.join(dir, 'pebble.key'),
          httpPort,
          tlsPort,
          ocspResponderURL: '',
          externalAccountBindingRequired: false,
        },
      }),
    );
    procs.push(
      await startProcess(
        'pebble-challtestsrv',
        [
          '-dns01', `127.0.0.1:${dnsPort}`, '-management', `127.0.0.1:${challtestMgmt}`,
          '-http01', '', '-https01', '', '-tlsalpn01', '', '-defaultIPv4', '127.0.0.1', '-defaultIPv6', '',
        ],
        { logFile: path.join(dir, 'challtestsrv.log') },
      ),
    );
    procs.push(
      await startProcess('pebble', ['-config', config, '-dnsserver', `127.0.0.1:${dnsPort}`], {
        logFile: path.join(dir, 'pebble.log'),
        env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
      }),
    );
    directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
    try {
      await waitFor(() => get(directoryUrl, pebbleCa).then((res) => res.status === 200, () => false), {
        what: 'pebble',
        intervalMs: 50,
      });
      await waitFor(
        () =>
          fetch(`http://127.0.0.1:${challtestMgmt}/add-a`, {
            method: 'POST',
            body: JSON.stringify({ host: 'regcache.test.', addresses: ['127.0.0.1'] }),
          }).then((res) => res.ok, () => false),
        { what: 'challtestsrv', intervalMs: 50 },
      );
      pebbleRoot = (await get(`https://127.0.0.1:${mgmtPort}/roots/0`, pebbleCa)).body;
      assert.match(pebbleRoot, /BEGIN CERTIFICATE/);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${await outputOf(procs)}`);
    }
  });

  after(async () => {
    for (const p of procs) await p.stop();
    await new Promise((r) => httpServer?.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Opens a manager, serves its serverOptions() on tlsPort, runs start(), hands both to fn. */
  async function withManager(
    name: string,
    challenge: AcmeChallenge,
    hosts: string[],
    fn: (m: AcmeManager) => Promise<void>,
    extra: Partial<Parameters<typeof AcmeManager.open>[0]> = {},
  ): Promise<void> {
    const manager = await AcmeManager.open({
      cachedir: path.join(dir, name),
      email: 'ops@regcache.test',
      hosts,
      directoryUrl,
      challenge,
      caFile,
      logger,
      ...extra,
    });
    currentManager = manager;
    const server = https.createServer(manager.serverOptions(), (_req, res) => res.end('mirror\n'));
    manager.attach(server);
    await new Promise<void>((r) => server.listen(tlsPort, '127.0.0.1', r));
    try {
      await fn(manager);
    } catch (e) {
      throw new Error(`${(e as Error).stack}\n--- pebble/challtestsrv output ---\n${await outputOf(procs)}`);
    } finally {
      manager.close();
      currentManager = undefined;
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    }
  }

  async function assertServesPebbleCert(host: string): Promise<tls.DetailedPeerCertificate> {
    const { cert } = await connectVerified(tlsPort, host, pebbleRoot);
    assert.match(String(cert.issuer.CN), /Pebble Intermediate CA/);
    assert.ok(new crypto.X509Certificate(cert.raw).checkHost(host), `certificate names ${host}`);
    return cert;
  }

  test('http-01: obtains a certificate, stores it, and reuses it on restart without a new order', async () => {
    const host = 'regcache.test';
    const requestsBefore = httpChallengeRequests;
    let fingerprint = '';
    await withManager('http01', 'http-01', [host], async (m) => {
      await m.start();
      assert.ok(httpChallengeRequests > requestsBefore, 'pebble fetched the challenge from our HTTP listener');
      fingerprint = (await assertServesPebbleCert(host)).fingerprint256;
      const stat = (f: string) => fs.statSync(path.join(dir, 'http01', f)).mode & 0o777;
      assert.equal(stat('acme-account.key'), 0o600);
      assert.equal(stat('acme-cert.key'), 0o600);
    });
    await withManager('http01', 'http-01', [host], async (m) => {
      assert.equal(m.certificate()?.fingerprint256, fingerprint, 'cached certificate loaded by open()');
      await m.start();
      assert.equal((await assertServesPebbleCert(host)).fingerprint256, fingerprint, 'no new certificate was issued');
    });
  });

  test('a cached certificate past 2/3 of its lifetime is served at once and renewed in the background', async () => {
    const host = 'renew.regcache.test';
    const cachedir = path.join(dir, 'renew');
    fs.mkdirSync(cachedir);
    const day = 24 * 3600_000;
    const old = await selfSigned(host, new Date(Date.now() - 20 * day), new Date(Date.now() + 10 * day));
    fs.writeFileSync(path.join(cachedir, 'acme-cert.pem'), old.cert);
    fs.writeFileSync(path.join(cachedir, 'acme-cert.key'), old.key);
    fs.writeFileSync(path.join(cachedir, 'acme-cert.json'), JSON.stringify({ directoryUrl, hosts: [host] }));
    const oldFingerprint = new crypto.X509Certificate(old.cert).fingerprint256;
    await withManager('renew', 'http-01', [host], async (m) => {
      const renewed = new Promise<crypto.X509Certificate>((resolve) => m.once('certificate', resolve));
      await m.start();
      const first = await connectVerified(tlsPort, host, '', undefined, { rejectUnauthorized: false });
      assert.equal(first.cert.fingerprint256, oldFingerprint, 'the cached certificate is served while renewing');
      const cert = await renewed;
      assert.match(cert.issuer, /Pebble Intermediate CA/);
      await waitFor(
        () => assertServesPebbleCert(host).then((served) => served.fingerprint256 === cert.fingerprint256, () => false),
        { what: 'the renewed certificate to be served', intervalMs: 50 },
      );
      assert.equal(new crypto.X509Certificate(fs.readFileSync(path.join(cachedir, 'acme-cert.pem'))).fingerprint256, cert.fingerprint256, 'stored');
    });
  });

  test('tls-alpn-01: answers the validation on the TLS listener; ordinary clients still get http/1.1', async () => {
    const host = 'alpn.regcache.test';
    await withManager('alpn', 'tls-alpn-01', [host], async (m) => {
      const requestsBefore = httpChallengeRequests;
      await m.start();
      assert.equal(httpChallengeRequests, requestsBefore, 'HTTP listener not involved');
      await assertServesPebbleCert(host);
      assert.equal((await connectVerified(tlsPort, host, pebbleRoot, ['h2', 'http/1.1'])).alpn, 'http/1.1');
      // After validation no challenge certificate is served: acme-tls/1 is refused.
      await assert.rejects(connectVerified(tlsPort, host, pebbleRoot, ['acme-tls/1']), /alert|ALPN|protocol/i);
    });
  });

  test('dns-01: the hook publishes and clears the TXT record', async () => {
    const host = 'dns.regcache.test';
    const hook = path.join(dir, 'dns-hook.sh');
    const hookLog = path.join(dir, 'dns-hook.log');
    fs.writeFileSync(
      hook,
      `#!/bin/sh
set -e
echo "$1 $2" >> '${hookLog}'
case "$1" in
  set) curl -sSf -X POST -d "{\\"host\\":\\"$2.\\",\\"value\\":\\"$3\\"}" http://127.0.0.1:${challtestMgmt}/set-txt ;;
  clear) curl -sSf -X POST -d "{\\"host\\":\\"$2.\\"}" http://127.0.0.1:${challtestMgmt}/clear-txt ;;
  *) exit 2 ;;
esac
`,
      { mode: 0o755 },
    );
    await withManager(
      'dns01',
      'dns-01',
      [host],
      async (m) => {
        await m.start();
        await assertServesPebbleCert(host);
        assert.deepEqual(fs.readFileSync(hookLog, 'utf8').trim().split('\n'), [`set _acme-challenge.${host}`, `clear _acme-challenge.${host}`]);
      },
      { dns01Hook: hook },
    );
  });

  test('dns-01: a failing hook fails start() with its exit status and output', async () => {
    const hook = path.join(dir, 'failing-hook.sh');
    fs.writeFileSync(hook, '#!/bin/sh\necho "no API token for zone" >&2\nexit 3\n', { mode: 0o755 });
    await withManager(
      'dns01-fail',
      'dns-01',
      ['fail.regcache.test'],
      async (m) => {
        await assert.rejects(m.start(), /dns-01 hook ".*failing-hook\.sh set _acme-challenge\.fail\.regcache\.test" exited with status 3: no API token for zone/);
        assert.equal(m.certificate(), undefined);
      },
      { dns01Hook: hook },
    );
  });
});

describe('AcmeManager challenge answering (no CA needed)', () => {
  const HOST = 'alpn.test';
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regcache-acme-alpn-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A manager whose TLS listener has a TLS-ALPN-01 challenge pending for HOST. */
  async function pending(cachedir: string, fn: (m: AcmeManager, port: number, keyAuthorization: string) => Promise<void>): Promise<void> {
    const manager = await AcmeManager.open({
      cachedir, email: 'ops@regcache.test', hosts: [HOST], directoryUrl: 'https://127.0.0.1:9/dir', challenge: 'tls-alpn-01', logger,
    });
    const server = https.createServer(manager.serverOptions(), (_req, res) => res.end('ok'));
    manager.attach(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      // What setChallenge does while the CA validates (reached directly: no CA in this test).
      const keyAuthorization = `token-${cachedir.length}.thumbprint`;
      const { key, cert } = await createAlpnCertificate(HOST, keyAuthorization);
      (manager as unknown as { alpnContexts: Map<string, tls.SecureContext> }).alpnContexts.set(HOST, tls.createSecureContext({ key, cert }));
      await fn(manager, (server.address() as net.AddressInfo).port, keyAuthorization);
    } finally {
      manager.close();
      await new Promise((r) => server.close(r));
    }
  }

  const insecure = (version: tls.SecureVersion): tls.ConnectionOptions => ({ rejectUnauthorized: false, minVersion: version, maxVersion: version });
  const isChallengeCert = (cert: tls.PeerCertificate, keyAuthorization: string): boolean => {
    try {
      return acme.crypto.isAlpnCertificateAuthorizationValid(pemOf(cert), keyAuthorization);
    } catch {
      return false; // no acmeIdentifier extension
    }
  };

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    test(`${version}: before the first certificate, acme-tls/1 gets the challenge answer`, async () => {
      await pending(path.join(dir, `first-${version}`), async (_m, port, keyAuthorization) => {
        const answer = await connectVerified(port, HOST, '', ['acme-tls/1'], insecure(version));
        assert.equal(answer.alpn, 'acme-tls/1');
        assert.ok(isChallengeCert(answer.cert, keyAuthorization));
        await assert.rejects(connectVerified(port, 'other.test', '', ['acme-tls/1'], insecure(version)), 'no challenge for that name');
      });
    });

    test(`${version}: during renewal, ordinary clients keep the real certificate`, async () => {
      const cachedir = path.join(dir, `renew-${version}`);
      fs.mkdirSync(cachedir);
      // A cached certificate for HOST from this directory, as an earlier order would have left.
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'acme-cert.key', '-out', 'acme-cert.pem', '-days', '30', '-subj', `/CN=${HOST}`, '-addext', `subjectAltName=DNS:${HOST}`], { cwd: cachedir, stdio: 'pipe' });
      fs.writeFileSync(path.join(cachedir, 'acme-cert.json'), JSON.stringify({ directoryUrl: 'https://127.0.0.1:9/dir', hosts: [HOST] }));
      const real = new crypto.X509Certificate(fs.readFileSync(path.join(cachedir, 'acme-cert.pem'))).fingerprint256;
      await pending(cachedir, async (m, port, keyAuthorization) => {
        assert.equal(m.certificate()?.fingerprint256, real);
        const answer = await connectVerified(port, HOST, '', ['acme-tls/1'], insecure(version));
        assert.equal(answer.alpn, 'acme-tls/1');
        assert.ok(isChallengeCert(answer.cert, keyAuthorization));
        for (const alpn of [['h2', 'http/1.1'], undefined]) {
          const ordinary = await connectVerified(port, HOST, '', alpn, insecure(version));
          assert.equal(ordinary.cert.fingerprint256, real, `ALPN ${alpn}`);
          assert.equal(ordinary.alpn, alpn ? 'http/1.1' : false);
        }
        const noSni = await new Promise<string>((resolve, reject) => {
          const s = tls.connect({ port, host: '127.0.0.1', ...insecure(version) }, () => {
            resolve(s.getPeerCertificate().fingerprint256);
            s.end();
          });
          s.on('error', reject);
        });
        assert.equal(noSni, real, 'client without SNI (attach)');
      });
    });
  }

  test('HTTP-01: the plain listener answers known tokens, 404s unknown ones, and leaves other paths alone', async () => {
    const manager = await AcmeManager.open({
      cachedir: path.join(dir, 'http'), email: 'ops@regcache.test', hosts: [HOST], directoryUrl: 'https://127.0.0.1:9/dir', challenge: 'http-01', logger,
    });
    (manager as unknown as { httpTokens: Map<string, string> }).httpTokens.set('tok-1', 'tok-1.thumb');
    const plain = http.createServer((req, res) => {
      if (!manager.handleHttpChallenge(req, res)) res.writeHead(418).end('not acme');
    });
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(plain.address() as net.AddressInfo).port}`;
    try {
      const ok = await fetch(`${base}/.well-known/acme-challenge/tok-1`);
      assert.equal(ok.status, 200);
      assert.equal(await ok.text(), 'tok-1.thumb');
      const head = await fetch(`${base}/.well-known/acme-challenge/tok-1`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String('tok-1.thumb'.length));
      assert.equal((await fetch(`${base}/.well-known/acme-challenge/tok-2`)).status, 404);
      assert.equal((await fetch(`${base}/.well-known/acme-challenge/tok-1`, { method: 'POST' })).status, 418);
      assert.equal((await fetch(`${base}/v2/`)).status, 418);
    } finally {
      manager.close();
      await new Promise((r) => plain.close(r));
    }
  });
});

function pemOf(cert: tls.PeerCertificate): string {
  return `-----BEGIN CERTIFICATE-----\n${cert.raw.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`;
}
