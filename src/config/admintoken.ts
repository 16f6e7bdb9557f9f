/**
 * The admin API's credential: a bearer token kept in a file (`regcache.admin.tokenfile`). The server and the
 * `regcache cache` CLI read the same file from the same config. Nothing here ever puts the token's content in a
 * message: errors name the file and the reason only.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { parseAddr } from '../net/listen.js';

export const ADMIN_TOKENFILE_KEY = 'regcache.admin.tokenfile';
/** Shorter tokens start with a warning: they can be guessed. `openssl rand -hex 32` gives 64 characters. */
export const MIN_ADMIN_TOKEN_LENGTH = 16;

/** Why a token file cannot be used (unreadable or empty); the message never contains the file's content. */
export class AdminTokenError extends Error {}

/** Reads and trims the token; throws AdminTokenError when the file cannot be read or holds only whitespace. */
export async function readAdminToken(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new AdminTokenError(`cannot read ${JSON.stringify(file)}: ${err.code ?? 'read failed'}`);
  }
  const token = text.trim();
  if (!token) throw new AdminTokenError(`${JSON.stringify(file)} is empty (generate a token: openssl rand -hex 32 > ${file})`);
  return token;
}

/** The warning for a token that is too short, or undefined. */
export function weakTokenWarning(file: string, token: string): string | undefined {
  if (token.length >= MIN_ADMIN_TOKEN_LENGTH) return undefined;
  return `key "${ADMIN_TOKENFILE_KEY}": the token in ${JSON.stringify(file)} is shorter than ${MIN_ADMIN_TOKEN_LENGTH} characters; generate a strong one: openssl rand -hex 32 > ${file}`;
}

/** 127.0.0.0/8, ::1 (also IPv4-mapped) and `localhost`: addresses only this machine can reach. */
export function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return false; // `:5001` listens on every interface
  const h = host.replace(/^\[|\]$/g, '').replace(/%.*$/, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  const v4 = h.startsWith('::ffff:') && isIP(h.slice(7)) === 4 ? h.slice(7) : h;
  if (isIP(v4) === 4) return v4.split('.')[0] === '127';
  if (isIP(h) === 6) return /^(0{0,4}:){2,7}0{0,3}1$/.test(h) || h === '::1';
  return false;
}

/** Whether a distribution-style listen address (`127.0.0.1:5001`, `:5001`, `[::1]:5001`) is loopback-only. */
export function isLoopbackAddr(addr: string): boolean {
  try {
    return isLoopbackHost(parseAddr(addr).host);
  } catch {
    return false;
  }
}
