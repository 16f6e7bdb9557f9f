/** Validation and normalisation of `regcache client-config` inputs. Pure. */
import { homedir } from 'node:os';
import type { ClientConfigOptions } from './types.js';

export class ClientConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClientConfigError';
  }
}

export interface Mirror {
  scheme: 'http' | 'https';
  /** host[:port] as clients write it (port omitted when it is the scheme's default). */
  host: string;
  /** scheme://host[:port], no trailing slash. */
  origin: string;
  /** Loopback addresses cannot be reached from inside containers (kind nodes, buildkit in a container). */
  loopback: boolean;
}

export interface NormalizedOptions {
  mirror: Mirror;
  /** Registry hosts, lower case, deduplicated, Docker Hub spelled `docker.io`. */
  upstreams: string[];
  /** Skip TLS verification of an https mirror (self-signed certificate). */
  insecure: boolean;
  /** Plain http or insecure: clients must be told the mirror is not verifiable. */
  untrusted: boolean;
  /** PEM of a private CA for an https mirror. */
  ca?: { pem: string; source: string };
  rootless: boolean;
  /** Absolute home directory (no trailing slash). */
  home: string;
  dialTimeout: string;
  serverDefault?: { name: string; dockerHub: boolean };
}

export const DOCKER_HUB = 'docker.io';
/** Spellings of Docker Hub that all mean `docker.io`. */
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);
const HOST_RE = /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?$/;

export function parseMirror(raw: string): Mirror {
  if (typeof raw !== 'string' || raw.trim() === '') {
    throw new ClientConfigError('--mirror is required, e.g. --mirror https://mirror.example.com or --mirror http://10.0.0.5:5000');
  }
  const text = raw.trim();
  if (!/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(text)) {
    throw new ClientConfigError(
      `mirror "${text}" has no scheme: write https://${text} (TLS) or http://${text} (plain HTTP)`,
    );
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ClientConfigError(`mirror "${text}" is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ClientConfigError(`mirror "${text}": scheme must be http or https, not ${url.protocol.slice(0, -1)}`);
  }
  if (url.username || url.password) {
    throw new ClientConfigError(`mirror "${text}": credentials do not belong in the URL; configure them in the client`);
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw new ClientConfigError(`mirror "${text}": give only scheme://host[:port], without a path, query or fragment`);
  }
  const hostname = url.hostname.replace(/^\[|\]$/g, '');
  const loopback = hostname === 'localhost' || /^127\./.test(hostname) || hostname === '::1';
  return {
    scheme: url.protocol === 'http:' ? 'http' : 'https',
    host: url.host,
    origin: url.origin,
    loopback,
  };
}

export function normalizeUpstream(raw: string): string {
  const host = String(raw).trim().toLowerCase().replace(/^https?:\/\//, '').replace(/\/+$/, '');
  if (!HOST_RE.test(host)) {
    throw new ClientConfigError(`upstream "${raw}" is not a registry host name (host[:port], e.g. docker.io, ghcr.io, 10.0.0.7:5000)`);
  }
  const port = host.includes(':') ? Number(host.slice(host.indexOf(':') + 1)) : 0;
  if (port > 65535) throw new ClientConfigError(`upstream "${raw}": port ${port} is out of range`);
  return DOCKER_HUB_ALIASES.has(host) ? DOCKER_HUB : host;
}

export function normalizeOptions(opts: ClientConfigOptions): NormalizedOptions {
  if (opts === null || typeof opts !== 'object') throw new ClientConfigError('options are required');
  const mirror = parseMirror(opts.mirror);
  const list = opts.upstreams === undefined || opts.upstreams.length === 0 ? [DOCKER_HUB] : opts.upstreams;
  const upstreams = [...new Set(list.map(normalizeUpstream))];
  for (const u of upstreams) {
    if (u === mirror.host) throw new ClientConfigError(`upstream "${u}" is the mirror itself`);
  }
  const insecure = opts.insecure === true;
  let ca: NormalizedOptions['ca'];
  if (opts.ca !== undefined) {
    const source = opts.ca.source ?? 'ca.crt';
    if (mirror.scheme !== 'https') {
      throw new ClientConfigError(`--ca ${source}: the mirror ${mirror.origin} is plain http; a CA only applies to an https mirror`);
    }
    if (insecure) throw new ClientConfigError('--ca and --insecure contradict each other: with the CA the certificate can be verified');
    if (typeof opts.ca.pem !== 'string' || !/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.test(opts.ca.pem)) {
      throw new ClientConfigError(`--ca ${source}: not a PEM certificate (expected -----BEGIN CERTIFICATE-----)`);
    }
    ca = { pem: opts.ca.pem.endsWith('\n') ? opts.ca.pem : opts.ca.pem + '\n', source };
  }
  const home = (opts.home ?? homedir()).replace(/\/+$/, '') || '/';
  if (!home.startsWith('/')) throw new ClientConfigError(`home directory "${home}" must be an absolute path`);
  const dialTimeout = opts.dialTimeout ?? '3s';
  if (!/^[0-9]+(ms|s|m)$/.test(dialTimeout)) {
    throw new ClientConfigError(`dial timeout "${dialTimeout}" is not a duration like 3s or 500ms`);
  }
  return {
    mirror,
    upstreams,
    insecure,
    untrusted: insecure || mirror.scheme === 'http',
    ...(ca ? { ca } : {}),
    rootless: opts.rootless === true,
    home,
    dialTimeout,
    ...(opts.serverDefault ? { serverDefault: opts.serverDefault } : {}),
  };
}

/** The endpoint a client would use without the mirror (Docker Hub's API is not at docker.io). */
export function upstreamEndpoint(upstream: string): string {
  return upstream === DOCKER_HUB ? 'https://registry-1.docker.io' : `https://${upstream}`;
}

/**
 * Where an upstream lives on the mirror for clients that cannot send containerd's `?ns=`:
 * Docker Hub is the mirror's default upstream (no prefix); others sit under a path prefix
 * named after the registry host (mirror/ghcr.io/owner/app).
 */
export function pathPrefixed(mirror: Mirror, upstream: string): string {
  if (upstream === DOCKER_HUB) return mirror.host;
  if (upstream.includes(':')) {
    throw new ClientConfigError(
      `upstream "${upstream}" has a port, which cannot be part of an image path: this client reaches ` +
        `upstreams other than docker.io as ${mirror.host}/<registry>/..., so it can only use port-less registry names`,
    );
  }
  return `${mirror.host}/${upstream}`;
}

/** TOML basic string (JSON escapes are a subset TOML accepts for these inputs). */
export function tomlString(s: string): string {
  return JSON.stringify(s);
}
