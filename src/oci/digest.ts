import { createHash, type Hash } from 'node:crypto';

export type DigestAlgorithm = 'sha256' | 'sha512';

const HEX_LEN: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
  /** `algorithm:hex` */
  digest: string;
}

/** Parses an OCI digest we can verify; undefined for anything else (unknown algorithm, bad hex). */
export function parseDigest(s: string): ParsedDigest | undefined {
  const i = s.indexOf(':');
  if (i < 0) return undefined;
  const algorithm = s.slice(0, i);
  const hex = s.slice(i + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') return undefined;
  if (hex.length !== HEX_LEN[algorithm] || !/^[a-f0-9]+$/.test(hex)) return undefined;
  return { algorithm, hex, digest: s };
}

export function isDigest(s: string): boolean {
  return parseDigest(s) !== undefined;
}

export function newHasher(algorithm: DigestAlgorithm): Hash {
  return createHash(algorithm);
}

export function digestOf(bytes: Buffer, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}
