/**
 * The shape of a config file: distribution's config.yml keys plus our `regcache:` block. This zod schema is
 * the one list of known keys: the YAML walk (tree.ts) warns about keys it does not name, env overrides
 * (env.ts) resolve REGISTRY_* names against it, and parsing turns leaves into typed values (ms, bytes).
 * Everything is optional here; defaults and cross-key rules live in load.ts.
 */
import { isIP, isIPv6 } from 'node:net';
import { z } from 'zod';
import { parseDuration } from './duration.js';
import { parseRatio, parseSize } from './size.js';

/** Keys we accept but do not act on: the walk warns `key "<path>" ignored: <reason>` when one is present. */
export const notes = z.registry<{ ignored: string }>();

function ignored<T extends z.ZodType>(schema: T, reason = 'not implemented by regcache'): T {
  notes.add(schema, { ignored: reason });
  return schema;
}

/** How a value reads in a message: strings quoted, containers by kind. */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v);
  return String(v);
}

class Bad {
  constructor(readonly message: string) {}
}

function check<T>(fn: (v: unknown) => T | Bad) {
  return (v: unknown, ctx: z.core.$RefinementCtx): T => {
    const r = fn(v);
    if (r instanceof Bad) {
      ctx.issues.push({ code: 'custom', message: r.message, input: v });
      return z.NEVER;
    }
    return r;
  };
}

/** A leaf that takes any scalar (YAML number/bool or text) and converts it. */
const leaf = <T>(fn: (v: unknown) => T | Bad) => z.unknown().transform(check(fn));
/** A leaf read as text (the YAML source, so `0123` stays `0123`), then checked. */
const text = <T>(fn: (v: string) => T | Bad) => z.string().transform(check((v) => fn(v as string)));

const BOOLS: Record<string, boolean> = { true: true, false: false, yes: true, no: false, on: true, off: false };
const bool = () =>
  leaf((v) => {
    if (typeof v === 'boolean') return v;
    const b = typeof v === 'string' ? BOOLS[v.trim().toLowerCase()] : undefined;
    return b ?? new Bad(`expected true or false, got ${describe(v)}`);
  });

const int = (min: number) =>
  leaf((v) => {
    const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n)) return new Bad(`expected an integer, got ${describe(v)}`);
    return n >= min ? n : new Bad(`must be at least ${min}, got ${n}`);
  });

const duration = () =>
  leaf((v) => {
    const ms = typeof v === 'string' || typeof v === 'number' ? parseDuration(v) : undefined;
    return ms ?? new Bad(`invalid duration ${describe(v)} (use e.g. 168h, 30m, 10s)`);
  });

const size = () =>
  leaf((v) => {
    const b = typeof v === 'string' || typeof v === 'number' ? parseSize(v) : undefined;
    return b ?? new Bad(`invalid size ${describe(v)} (use e.g. 50GiB, 512MB, or a number of bytes)`);
  });

const ratio = () =>
  leaf((v) => {
    const r = typeof v === 'string' || typeof v === 'number' ? parseRatio(v) : undefined;
    return r ?? new Bad(`invalid ratio ${describe(v)} (use e.g. 90% or 0.9)`);
  });

const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/** `:5000`, `host:5000`, `1.2.3.4:5000`, `[::1]:5000` (port 0 allowed: pick a free one). */
export function isListenAddr(v: string): boolean {
  const m = /^(.*):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65535) return false;
  const host = m[1]!;
  if (host === '') return true;
  if (host.startsWith('[') && host.endsWith(']')) return isIPv6(host.slice(1, -1).replace(/%.+$/, ''));
  return HOSTNAME.test(host);
}

/** `host` or `host:port`, lower-cased. */
export function isHostPort(v: string): boolean {
  const m = /^(.*?)(?::(\d{1,5}))?$/.exec(v)!;
  if (m[2] && Number(m[2]) > 65535) return false;
  const host = m[1]!;
  return host.startsWith('[') && host.endsWith(']') ? isIPv6(host.slice(1, -1)) : HOSTNAME.test(host);
}

/** `10.0.0.1`, `10.0.0.0/8`, `fd00::/8`: a trusted proxy (regcache.trustproxy). */
function isAddrOrCidr(v: string): boolean {
  const [ip, bits, more] = v.trim().split('/');
  const family = isIP(ip ?? '');
  if (!family || more !== undefined) return false;
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
}

const addr = () => text((v) => (isListenAddr(v) ? v : new Bad(`expected host:port or :port, got ${describe(v)}`)));

/**
 * http(s) URL without credentials or query; trailing slashes dropped. Messages echo the value only when it
 * cannot hold a password.
 */
const httpUrl = () =>
  text((v) => {
    let u: URL | undefined;
    try {
      u = new URL(v);
    } catch {
      u = undefined;
    }
    const shown = v.includes('@') ? '' : `, got ${describe(v)}`;
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:') || !u.hostname) {
      return new Bad(`must be an http(s) URL${shown}`);
    }
    if (u.username || u.password) return new Bad('must not contain credentials (use username and password keys)');
    if (u.search || u.hash) return new Bad(`must not have a query or fragment${shown}`);
    return v.replace(/\/+$/, '');
  });

const oneOf = <T extends string>(allowed: Record<string, T>) =>
  text((v) => {
    const r = allowed[v.trim().toLowerCase()];
    return r ?? new Bad(`expected one of ${Object.keys(allowed).join(', ')}; got ${describe(v)}`);
  });

const str = () => z.string();
const strList = () => z.array(z.string());
const strOrList = () =>
  z
    .union([z.string(), z.array(z.string())], { error: 'expected a string or a list of strings' })
    .transform((v) => (typeof v === 'string' ? [v] : v));
/** A subtree accepted as-is, not checked key by key. z.any tells it apart from scalar leaves (z.unknown). */
const anything = () => z.any();
const opt = <T extends z.ZodRawShape>(shape: T) => z.object(shape).optional();

export const LOG_LEVELS = {
  error: 'error',
  warn: 'warn',
  warning: 'warn',
  info: 'info',
  debug: 'debug',
  trace: 'trace',
  fatal: 'fatal',
  panic: 'fatal',
} as const;

const timeouts = () => opt({ connect: duration().optional(), headers: duration().optional(), idle: duration().optional() });

/** Per-upstream keys (regcache.upstreams[i]); the proxy block is a subset. */
const upstreamShape = {
  name: str().optional(),
  remoteurl: httpUrl().optional(),
  username: str().optional(),
  password: str().optional(),
  ttl: duration().optional(),
  freshness: duration().optional(),
  ca: str().optional(),
  insecureskipverify: bool().optional(),
  timeouts: timeouts(),
  connections: int(1).optional(),
  prefix: strOrList().optional(),
  hosts: strList().optional(),
  addr: addr().optional(),
  allow: strList().optional(),
  deny: strList().optional(),
  credentialhelper: str().optional(),
  authhosts: strList().optional(),
  dockerhub: bool().optional(),
};

/** Storage driver keys; at most one may be present. */
export const STORAGE_DRIVERS = ['filesystem', 'inmemory', 's3', 'azure', 'gcs', 'swift', 'oss'] as const;
export const SUPPORTED_DRIVERS = new Set(['filesystem', 'inmemory', 's3']);

const s3Ignored = (reason = 'not implemented by regcache') => ignored(anything().optional(), reason);

export const fileSchema = z.object({
  version: str().optional(),
  /** distribution's deprecated top-level form of log.level. */
  loglevel: oneOf(LOG_LEVELS).optional(),
  log: opt({
    level: oneOf(LOG_LEVELS).optional(),
    formatter: oneOf({ text: 'text', json: 'json', logstash: 'logstash' } as const).optional(),
    fields: z.record(z.string(), z.string()).optional(),
    accesslog: opt({ disabled: bool().optional() }),
    hooks: ignored(anything().optional()),
    reportcaller: ignored(anything().optional()),
  }),
  storage: opt({
    filesystem: opt({ rootdirectory: str().optional(), maxthreads: ignored(anything().optional()) }),
    inmemory: opt({}),
    s3: opt({
      region: str().optional(),
      bucket: str().optional(),
      regionendpoint: str().optional(),
      accesskey: str().optional(),
      secretkey: str().optional(),
      rootdirectory: str().optional(),
      forcepathstyle: bool().optional(),
      encrypt: bool().optional(),
      chunksize: size().optional(),
      secure: bool().optional(),
      v4auth: bool().optional(),
      keyid: s3Ignored(),
      sessiontoken: s3Ignored(),
      skipverify: s3Ignored(),
      storageclass: s3Ignored(),
      objectacl: s3Ignored(),
      multipartcopychunksize: s3Ignored(),
      multipartcopymaxconcurrency: s3Ignored(),
      multipartcopythresholdsize: s3Ignored(),
      multipartcombinesmallpart: s3Ignored(),
      useragent: s3Ignored(),
      usedualstack: s3Ignored(),
      accelerate: s3Ignored(),
      loglevel: s3Ignored(),
      checksumdisabled: s3Ignored(),
      checksumalgorithm: s3Ignored(),
    }),
    azure: anything().optional(),
    gcs: anything().optional(),
    swift: anything().optional(),
    oss: anything().optional(),
    cache: opt({ blobdescriptor: str().optional(), blobdescriptorsize: anything().optional() }),
    delete: opt({ enabled: bool().optional() }),
    redirect: opt({ disable: bool().optional() }),
    maintenance: ignored(anything().optional(), 'not implemented (a mirror takes no uploads and is always read-only)'),
    tag: ignored(anything().optional()),
  }),
  http: opt({
    addr: addr().optional(),
    net: oneOf({ tcp: 'tcp', unix: 'unix' } as const).optional(),
    prefix: str().optional(),
    host: httpUrl().optional(),
    secret: str().optional(),
    relativeurls: bool().optional(),
    draintimeout: duration().optional(),
    headers: z.record(z.string(), strOrList()).optional(),
    http2: opt({ disabled: bool().optional() }),
    h2c: ignored(anything().optional()),
    tls: opt({
      certificate: str().optional(),
      key: str().optional(),
      clientcas: strList().optional(),
      minimumtls: oneOf({ 'tls1.0': 'tls1.0', 'tls1.1': 'tls1.1', 'tls1.2': 'tls1.2', 'tls1.3': 'tls1.3' } as const)
        .optional(),
      ciphersuites: ignored(anything().optional()),
      letsencrypt: opt({
        cachefile: str().optional(),
        email: str().optional(),
        hosts: strList().optional(),
        directoryurl: httpUrl().optional(),
      }),
    }),
    debug: opt({
      addr: addr().optional(),
      prometheus: opt({ enabled: bool().optional(), path: str().optional() }),
    }),
  }),
  auth: opt({
    htpasswd: opt({ realm: str().optional(), path: str().optional() }),
    token: anything().optional(),
    silly: anything().optional(),
  }),
  health: opt({
    storagedriver: opt({ enabled: bool().optional(), interval: duration().optional(), threshold: int(1).optional() }),
    file: ignored(anything().optional()),
    http: ignored(anything().optional()),
    tcp: ignored(anything().optional()),
  }),
  proxy: opt({
    remoteurl: upstreamShape.remoteurl,
    username: upstreamShape.username,
    password: upstreamShape.password,
    ttl: upstreamShape.ttl,
    exec: ignored(anything().optional(), 'not implemented (use regcache.upstreams[].credentialhelper)'),
  }),
  redis: opt({
    addr: addr().optional(),
    addrs: strList().optional(),
    username: ignored(anything().optional()),
    password: str().optional(),
    db: int(0).optional(),
    tls: z
      .union([z.object({ enabled: bool().optional() }), bool()], { error: 'expected true/false or a mapping with enabled' })
      .optional(),
    dialtimeout: ignored(anything().optional()),
    readtimeout: ignored(anything().optional()),
    writetimeout: ignored(anything().optional()),
    pool: ignored(anything().optional()),
  }),
  notifications: ignored(anything().optional()),
  middleware: ignored(anything().optional()),
  reporting: ignored(anything().optional()),
  catalog: ignored(anything().optional()),
  // Both govern what a registry accepts on push; a read-only mirror has nothing to apply them to.
  validation: anything().optional(),
  compatibility: anything().optional(),
  regcache: opt({
    freshness: duration().optional(),
    timeouts: timeouts(),
    ca: str().optional(),
    insecureskipverify: bool().optional(),
    connections: int(1).optional(),
    authhosts: strList().optional(),
    /** The default upstream's registry host names (matched against containerd's ns= and the Host header). */
    hosts: strList().optional(),
    /** The default upstream is a Docker Hub mirror: it answers ns=docker.io; `alpine` → `library/alpine`. */
    dockerhub: bool().optional(),
    requireauth: bool().optional(),
    negativettl: duration().optional(),
    /** Server processes sharing the listeners (node:cluster): a count, or `auto` for one per CPU. */
    workers: leaf((v) => {
      if (typeof v === 'string' && v.trim().toLowerCase() === 'auto') return 'auto' as const;
      const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
      return Number.isSafeInteger(n) && n >= 1 && n <= 64 ? n : new Bad(`expected a number of processes from 1 to 64, or auto, got ${describe(v)}`);
    }).optional(),
    acme: opt({
      challenge: oneOf({ 'tls-alpn-01': 'tls-alpn-01', 'http-01': 'http-01', 'dns-01': 'dns-01' } as const).optional(),
      httpaddr: str().optional(),
      dns01: opt({ hook: str().optional(), timeout: duration().optional() }),
      cafile: str().optional(),
    }),
    cache: opt({
      maxsize: size().optional(),
      lowwatermark: ratio().optional(),
      /** Bytes of manifests kept in memory (an LRU in front of storage); 0: none. */
      manifestmemory: size().optional(),
    }),
    /** The admin API's credential (POST /admin/...): a file holding a bearer token. */
    admin: opt({ tokenfile: str().optional() }),
    /** Images kept warm by the running server: tags revalidated, new digests pulled, every interval. */
    warm: opt({ images: strList().optional(), interval: duration().optional() }),
    /** The web dashboard (src/observability/dashboard.ts). */
    dashboard: opt({
      enabled: bool().optional(),
      path: text((v) => (/^\/[A-Za-z0-9._~\/-]*$/.test(v.trim()) && !/^\/(v2|admin|debug)(\/|$)/.test(v.trim()) ? v.trim().replace(/\/+$/, '') || '/' : new Bad(`expected an absolute URL path outside /v2, /admin and /debug, got ${describe(v)}`))).optional(),
      mainlistener: bool().optional(),
      egressprice: leaf((v) => {
        const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(v) ? Number(v) : NaN;
        return Number.isFinite(n) && n >= 0 ? n : new Bad(`expected a price per GB (e.g. 0.09), got ${describe(v)}`);
      }).optional(),
      currency: str().optional(),
    }),
    trustproxy: z
      .union([bool(), z.array(text((v) => (isAddrOrCidr(v) ? v.trim() : new Bad(`expected an IP address or CIDR, got ${describe(v)}`))))], {
        error: 'expected true, false or a list of proxy addresses/CIDRs',
      })
      .optional(),
    upstreams: z.array(z.object(upstreamShape)).optional(),
  }),
});

export type FileConfig = z.output<typeof fileSchema>;
export type FileUpstream = NonNullable<NonNullable<FileConfig['regcache']>['upstreams']>[number];
