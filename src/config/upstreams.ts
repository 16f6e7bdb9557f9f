/**
 * Upstream list: distribution's `proxy:` block (or Docker Hub when there is neither it nor
 * regcache.upstreams) is upstreams[0], the default; regcache.upstreams follow. regcache.freshness, ca,
 * insecureskipverify and authhosts are defaults for the default upstream; regcache.timeouts and
 * connections for all.
 */
import { isValidName } from '../oci/names.js';
import { describe, isHostPort, type FileConfig, type FileUpstream } from './schema.js';
import type { UpstreamConfig } from './types.js';

export const DOCKER_HUB_URL = 'https://registry-1.docker.io';
export const DOCKER_HUB_HOSTS = ['docker.io', 'registry-1.docker.io', 'index.docker.io'];
export const DEFAULT_TTL_MS = 168 * 3600_000;
export const DEFAULT_FRESHNESS_MS = 30_000;
export const DEFAULT_TIMEOUTS = { connectMs: 10_000, headersMs: 30_000, idleMs: 60_000 };
export const DEFAULT_CONNECTIONS = 32;

type Problem = (path: string, message: string) => void;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;

export function buildUpstreams(f: FileConfig, problem: Problem): UpstreamConfig[] {
  const entries: Array<{ path: string; u: FileUpstream }> = [];
  if (f.proxy) {
    const { remoteurl, username, password, ttl } = f.proxy;
    entries.push({ path: 'proxy', u: { remoteurl: remoteurl ?? DOCKER_HUB_URL, username, password, ttl } });
  }
  for (const [i, u] of (f.regcache?.upstreams ?? []).entries()) entries.push({ path: `regcache.upstreams[${i}]`, u });
  if (entries.length === 0) entries.push({ path: 'proxy', u: { remoteurl: DOCKER_HUB_URL } });

  const upstreams = entries.map(({ path, u }, i) => derive(u, path, i === 0, f.regcache ?? {}, problem));
  checkCollisions(upstreams, entries.map((e) => e.path), problem);
  return upstreams;
}

function derive(
  u: FileUpstream,
  path: string,
  isDefault: boolean,
  rc: NonNullable<FileConfig['regcache']>,
  problem: Problem,
): UpstreamConfig {
  if (!u.remoteurl) problem(`${path}.remoteurl`, 'required');
  const remoteurl = u.remoteurl ?? '';
  const host = remoteurl ? new URL(remoteurl).host : '';
  const hub = DOCKER_HUB_HOSTS.includes(host);
  const d = isDefault ? rc : {};
  // `dockerhub: true` declares a Docker Hub mirror (a cloud mirror of Hub, an Artifactory/Nexus remote,
  // another regcache): it answers ns=docker.io and single-component names get `library/`.
  const dockerHub = u.dockerhub ?? d.dockerhub ?? hub;
  const name = u.name ?? (hub ? 'docker.io' : host);
  if (remoteurl && !NAME_RE.test(name)) {
    const rule = 'use letters, digits, ".", "_", "-" and ":" (starting with a letter or digit)';
    problem(`${path}.name`, `${describe(name)}: ${rule}`);
  }

  const prefixes = unique(u.prefix ?? (isDefault || !isValidName(name) ? [] : [name]));
  for (const p of prefixes) {
    if (!isValidName(p)) problem(`${path}.prefix`, `${describe(p)} is not a repository name prefix (e.g. ghcr.io or ghcr)`);
  }
  const hosts = unique((u.hosts ?? d.hosts ?? (dockerHub ? [...DOCKER_HUB_HOSTS, name] : [name])).map((h) => h.toLowerCase()));
  const notHost = (h: string): string => `${describe(h)} is not a host name (host or host:port)`;
  for (const h of hosts) if (!isHostPort(h)) problem(`${path}.hosts`, notHost(h));
  const authhosts = (u.authhosts ?? d.authhosts ?? (hub ? ['auth.docker.io'] : [])).map((h) => h.toLowerCase());
  for (const h of authhosts) if (!isHostPort(h)) problem(`${path}.authhosts`, notHost(h));

  return defined({
    name,
    remoteurl,
    username: u.username || undefined,
    password: u.password || undefined,
    ttlMs: u.ttl === undefined ? DEFAULT_TTL_MS : u.ttl === 0 ? null : u.ttl,
    freshnessMs: u.freshness ?? d.freshness ?? DEFAULT_FRESHNESS_MS,
    timeouts: {
      connectMs: u.timeouts?.connect ?? rc.timeouts?.connect ?? DEFAULT_TIMEOUTS.connectMs,
      headersMs: u.timeouts?.headers ?? rc.timeouts?.headers ?? DEFAULT_TIMEOUTS.headersMs,
      idleMs: u.timeouts?.idle ?? rc.timeouts?.idle ?? DEFAULT_TIMEOUTS.idleMs,
    },
    ca: u.ca || d.ca || undefined,
    insecureSkipVerify: u.insecureskipverify ?? d.insecureskipverify ?? false,
    connections: u.connections ?? rc.connections ?? DEFAULT_CONNECTIONS,
    dockerHub,
    prefixes,
    hosts,
    addr: u.addr,
    allow: u.allow ?? [],
    deny: u.deny ?? [],
    credentialhelper: u.credentialhelper || undefined,
    authhosts,
  });
}

/** Names unique; a prefix, host or own listen addr belongs to one upstream only. */
function checkCollisions(ups: UpstreamConfig[], paths: string[], problem: Problem): void {
  const owners = {
    name: new Map<string, number>(),
    prefix: new Map<string, number>(),
    hosts: new Map<string, number>(),
    addr: new Map<string, number>(),
  };
  const claim = (what: keyof typeof owners, value: string, i: number, label: string): void => {
    const other = owners[what].get(value);
    if (other === undefined) owners[what].set(value, i);
    else if (other !== i) {
      problem(`${paths[i]}.${what}`, `${describe(value)} is also ${label} upstream "${ups[other]!.name}" (${paths[other]})`);
    }
  };
  ups.forEach((u, i) => {
    claim('name', u.name, i, 'the name of');
    for (const p of u.prefixes) claim('prefix', p, i, 'a prefix of');
    for (const h of u.hosts) claim('hosts', h, i, 'a host of');
    if (u.addr) claim('addr', u.addr, i, 'the addr of');
  });
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}

/** Drops keys whose value is undefined, so configs compare and print cleanly. */
export function defined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as Array<keyof T>) if (o[k] === undefined) delete o[k];
  return o;
}
