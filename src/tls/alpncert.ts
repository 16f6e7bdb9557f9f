/**
 * The self-signed certificate that answers a TLS-ALPN-01 challenge (RFC 8737): SAN = the host,
 * critical acmeIdentifier extension = SHA-256 of the key authorization. Made here rather than with
 * acme-client's createAlpnCertificate, whose certificate carries only keyCertSign/cRLSign key usage;
 * OpenSSL then finds no usable cipher suite for a TLS 1.2 handshake. ECDSA P-256, like the served
 * certificate, because with TLS 1.2 the cipher suite is chosen before the certificate is swapped in.
 */
import crypto from 'node:crypto';
import * as x509 from '@peculiar/x509';

const ACME_IDENTIFIER_OID = '1.3.6.1.5.5.7.1.31';

export async function createAlpnCertificate(host: string, keyAuthorization: string): Promise<{ key: string; cert: string }> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const subtle = crypto.webcrypto.subtle;
  const keys = (await subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
  const digest = crypto.createHash('sha256').update(keyAuthorization).digest();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: crypto.randomBytes(8).toString('hex').replace(/^[89a-f]/, '1'),
      name: `CN=${host}`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 7 * 24 * 3600_000),
      keys,
      signingAlgorithm: algorithm,
      extensions: [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: host }]),
        // DER OCTET STRING (tag 4, length 32) holding the digest.
        new x509.Extension(ACME_IDENTIFIER_OID, true, Buffer.concat([Buffer.from([0x04, 0x20]), digest])),
      ],
    },
    crypto.webcrypto as unknown as Crypto,
  );
  const pkcs8 = Buffer.from(await subtle.exportKey('pkcs8', keys.privateKey));
  const key = crypto.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }) as string;
  return { key, cert: cert.toString('pem') };
}
