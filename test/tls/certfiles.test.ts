import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { pino } from 'pino';
import { CertificateFiles } from '../../src/tls/certfiles.js';
import { ConfigError } from '../../src/errors.js';
import { waitFor } from '../support/process.js';

const HOST = 'regcache.test';

/** Writes NAME.pem + NAME.key; self-signed unless `ca` (a name made earlier in dir) is given. */
function makeCert(dir: string, name: string, opts: { cn: string; san?: string; ca?: string; isCa?: boolean }): void {
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.pem`);
  const ext = path.join(dir, `${name}.ext`);
  fs.writeFileSync(
    ext,
    [
      opts.isCa ? 'basicConstraints=critical,CA:TRUE' : 'basicConstraints=CA:FALSE',
      opts.isCa ? 'keyUsage=critical,keyCertSign,cRLSign' : 'keyUsage=digitalSignature',
      ...(opts.san ? [`subjectAltName=${opts.san}`] : []),
    ].join('\n'),
  );
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', `/CN=${opts.cn}`];
  if (!opts.ca) {
    execFileSync('openssl', ['req', '-x509', ...newKey, '-out', cert, '-days', '2', '-extensions', 'v3', '-config', writeReqConfig(dir, ext)], { stdio: 'pipe' });
    return;
  }
  const csr = path.join(dir, `${name}.csr`);
  execFileSync('openssl', ['req', '-new', ...newKey, '-out', csr], { stdio: 'pipe' });
  execFileSync(
    'openssl',
    ['x509', '-req', '-in', csr, '-CA', path.join(dir, `${opts.ca}.pem`), '-CAkey', path.join(dir, `${opts.ca}.key`),
      '-set_serial', String(Date.now()), '-days', '2', '-out', cert, '-extfile', ext],
    { stdio: 'pipe' },
  );
}

function writeReqConfig(dir: string, ext: string): string {
  const cfg = path.join(dir, `${path.basename(ext)}.cnf`);
  fs.writeFileSync(cfg, `[req]\ndistinguished_name=dn\n[dn]\n[v3]\n${fs.readFileSync(ext, 'utf8')}\n`);
  return cfg;
}

function fingerprintOf(file: string): string {
  return new crypto.X509Certificate(fs.readFileSync(file)).fingerprint256;
}

/** Atomic replace, as cert-manager / certbot deploy hooks do: write a temp file, rename over. */
function replaceFile(from: string, to: string): void {
  const tmp = `${to}.tmp-${process.pid}`;
  fs.copyFileSync(from, tmp);
  fs.renameSync(tmp, to);
}

/** Fingerprint of the certificate a brand-new connection is given (SNI unless servername is false). */
function servedFingerprint(port: number, servername: string | false, extra: tls.ConnectionOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect(
      { port, host: '127.0.0.1', ...(servername ? { servername } : {}), rejectUnauthorized: false, ...extra },
      () => {
        resolve(s.getPeerCertificate().fingerprint256);
        s.end();
      },
    );
    s.on('error', reject);
  });
}

function logCapture(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

function listen(server: https.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function close(server: https.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

const BIG = crypto.randomBytes(16 * 1024 * 1024);
const BIG_SHA = crypto.createHash('sha256').update(BIG).digest('hex');

describe('CertificateFiles', () => {
  let dir: string;
  let live: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regcache-certfiles-'));
    live = path.join(dir, 'live');
    fs.mkdirSync(live);
    for (const n of ['a', 'b']) makeCert(dir, n, { cn: `${HOST} ${n}`, san: `DNS:${HOST},IP:127.0.0.1` });
    makeCert(dir, 'clientca', { cn: 'client CA', isCa: true });
    makeCert(dir, 'client', { cn: 'puller', ca: 'clientca' });
    makeCert(dir, 'rogueca', { cn: 'rogue CA', isCa: true });
    makeCert(dir, 'rogue', { cn: 'puller', ca: 'rogueca' });
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('new connections get the replaced certificate, in-flight downloads finish on the old one', async () => {
    const cert = path.join(live, 'tls.crt');
    const key = path.join(live, 'tls.key');
    fs.copyFileSync(path.join(dir, 'a.pem'), cert);
    fs.copyFileSync(path.join(dir, 'a.key'), key);
    const { logger, lines } = logCapture();
    const files = await CertificateFiles.open({ certificate: cert, key, logger, watch: { debounceMs: 20, pollMs: 60_000 } });
    const server = https.createServer(files.serverOptions(), (req, res) => {
      res.writeHead(200, { 'Content-Length': BIG.length });
      res.end(BIG);
    });
    files.attach(server);
    const port = await listen(server);
    try {
      const fpA = fingerprintOf(path.join(dir, 'a.pem'));
      const fpB = fingerprintOf(path.join(dir, 'b.pem'));
      assert.equal(await servedFingerprint(port, HOST), fpA);
      assert.equal(await servedFingerprint(port, false), fpA);

      // A download that reads nothing beyond its first chunk until the certificate has changed.
      const download = await new Promise<{ res: import('node:http').IncomingMessage; fp: string; first: Buffer }>((resolve, reject) => {
        const req = https.get({ host: '127.0.0.1', port, servername: HOST, path: '/big', rejectUnauthorized: false, agent: false }, (res) => {
          const fp = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
          res.once('data', (first: Buffer) => {
            res.pause();
            resolve({ res, fp, first });
          });
        });
        req.on('error', reject);
      });
      assert.equal(download.fp, fpA);

      replaceFile(path.join(dir, 'b.pem'), cert);
      replaceFile(path.join(dir, 'b.key'), key);
      await waitFor(async () => (await servedFingerprint(port, HOST)) === fpB, {
        what: 'a new SNI connection to get certificate B',
        intervalMs: 20,
      });
      assert.equal(await servedFingerprint(port, false), fpB, 'a client without SNI gets B too (attach)');
      assert.ok(lines.some((l) => l.msg === 'TLS certificate reloaded' && l.fingerprint256 === fpB));

      const hash = crypto.createHash('sha256').update(download.first);
      let received = download.first.length;
      await new Promise<void>((resolve, reject) => {
        download.res.on('data', (c: Buffer) => {
          hash.update(c);
          received += c.length;
        });
        download.res.on('end', resolve);
        download.res.on('error', reject);
        download.res.resume();
      });
      assert.equal(received, BIG.length);
      assert.equal(hash.digest('hex'), BIG_SHA);
    } finally {
      files.close();
      await close(server);
    }
  });

  test('a certificate written before its key keeps the old pair until the key arrives', async () => {
    const cert = path.join(live, 'half.crt');
    const key = path.join(live, 'half.key');
    fs.copyFileSync(path.join(dir, 'a.pem'), cert);
    fs.copyFileSync(path.join(dir, 'a.key'), key);
    const { logger, lines } = logCapture();
    const files = await CertificateFiles.open({ certificate: cert, key, logger, watch: { debounceMs: 20, pollMs: 60_000 } });
    const server = https.createServer(files.serverOptions(), (_req, res) => res.end('ok'));
    files.attach(server);
    const port = await listen(server);
    try {
      replaceFile(path.join(dir, 'b.pem'), cert);
      assert.equal(await files.reload(), false);
      assert.ok(lines.some((l) => l.level === 50 && /does not belong/.test(String(l.err))));
      assert.equal(await servedFingerprint(port, HOST), fingerprintOf(path.join(dir, 'a.pem')));
      assert.equal(await servedFingerprint(port, false), fingerprintOf(path.join(dir, 'a.pem')));

      replaceFile(path.join(dir, 'b.key'), key);
      const fpB = fingerprintOf(path.join(dir, 'b.pem'));
      await waitFor(async () => (await servedFingerprint(port, HOST)) === fpB, {
        what: 'certificate B after its key arrived',
        intervalMs: 20,
      });
    } finally {
      files.close();
      await close(server);
    }
  });

  for (const sni of [true, false]) {
    test(`clientcas: a client certificate from that CA is required (${sni ? 'SNI' : 'no SNI'})`, async () => {
      const files = await CertificateFiles.open({
        certificate: path.join(dir, 'a.pem'),
        key: path.join(dir, 'a.key'),
        clientcas: [path.join(dir, 'clientca.pem')],
        logger: pino({ level: 'silent' }),
      });
      const server = https.createServer(files.serverOptions(), (req, res) =>
        res.end(`hello ${(req.socket as tls.TLSSocket).getPeerCertificate().subject.CN}`),
      );
      files.attach(server);
      const port = await listen(server);
      const get = (client?: string): Promise<{ status: number; body: string }> =>
        new Promise((resolve, reject) => {
          const req = https.get(
            {
              host: '127.0.0.1', port, path: '/v2/', agent: false, rejectUnauthorized: false,
              ...(sni ? { servername: HOST } : {}),
              ...(client ? { cert: fs.readFileSync(path.join(dir, `${client}.pem`)), key: fs.readFileSync(path.join(dir, `${client}.key`)) } : {}),
            },
            (res) => {
              let body = '';
              res.setEncoding('utf8').on('data', (c) => (body += c)).on('end', () => resolve({ status: res.statusCode!, body }));
              res.on('error', reject);
            },
          );
          req.on('error', reject);
        });
      try {
        assert.deepEqual(await get('client'), { status: 200, body: 'hello puller' });
        await assert.rejects(get(), /certificate required|handshake failure|ECONNRESET|socket hang up/i);
        await assert.rejects(get('rogue'), /unknown ca|certificate|ECONNRESET|socket hang up/i);
      } finally {
        files.close();
        await close(server);
      }
    });
  }

  test('minimumtls tls1.3 refuses TLS 1.2 clients', async () => {
    const files = await CertificateFiles.open({
      certificate: path.join(dir, 'a.pem'),
      key: path.join(dir, 'a.key'),
      minimumtls: 'tls1.3',
      logger: pino({ level: 'silent' }),
    });
    const server = https.createServer(files.serverOptions(), (_req, res) => res.end('ok'));
    const port = await listen(server);
    try {
      await assert.rejects(servedFingerprint(port, HOST, { maxVersion: 'TLSv1.2' }), /protocol version|alert/i);
      assert.equal(await servedFingerprint(port, HOST, { minVersion: 'TLSv1.3' }), fingerprintOf(path.join(dir, 'a.pem')));
    } finally {
      files.close();
      await close(server);
    }
  });

  test('open() reports unusable files as ConfigError naming the file', async () => {
    const logger = pino({ level: 'silent' });
    const missing = path.join(dir, 'nope.pem');
    await assert.rejects(
      CertificateFiles.open({ certificate: missing, key: path.join(dir, 'a.key'), logger }),
      (e: unknown) => e instanceof ConfigError && e.message.includes('http.tls.certificate') && e.message.includes(missing),
    );
    await assert.rejects(
      CertificateFiles.open({ certificate: path.join(dir, 'a.pem'), key: path.join(dir, 'b.key'), logger }),
      (e: unknown) => e instanceof ConfigError && /does not belong/.test(e.message),
    );
    await assert.rejects(
      CertificateFiles.open({ certificate: path.join(dir, 'a.key'), key: path.join(dir, 'a.key'), logger }),
      (e: unknown) => e instanceof ConfigError && /not a PEM certificate/.test(e.message),
    );
    await assert.rejects(
      CertificateFiles.open({ certificate: path.join(dir, 'a.pem'), key: path.join(dir, 'a.key'), minimumtls: 'ssl3', logger }),
      (e: unknown) => e instanceof ConfigError && e.message.includes('http.tls.minimumtls'),
    );
  });
});
