/**
 * config.yml (distribution-compatible) + REGISTRY_* env overrides + our `regcache:` keys → typed Config.
 *
 * Pipeline: YAML → tree (tree.ts) → env overrides (env.ts) → walk against the schema, warning about unknown
 * and ignored keys → zod parse (schema.ts) → defaults and cross-key rules (here, upstreams.ts).
 * Bad input always ends in one ConfigError listing every problem found with its key path.
 * Warnings read `unknown key "<path>" ignored`, `key "<path>" ignored: <reason>`,
 * `key "loglevel" deprecated: use log.level`, or `unknown environment variable <NAME> ignored`.
 */
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { ADMIN_TOKENFILE_KEY, AdminTokenError, readAdminToken, weakTokenWarning } from './admintoken.js';
import { applyEnv, CONFIG_PATH_VAR } from './env.js';
import { describe, fileSchema, isListenAddr, STORAGE_DRIVERS, SUPPORTED_DRIVERS, type FileConfig } from './schema.js';
import { formatPath, isRawMap, Leaf, newMap, normalize, plain, yamlToRaw, type Path, type RawMap } from './tree.js';
import type { Config, StorageConfig, TlsConfig } from './types.js';
import { buildUpstreams, defined } from './upstreams.js';

export interface LoadedConfig {
  config: Config;
  warnings: string[];
  /** File path, or "(embedded default)". */
  source: string;
}

export const EMBEDDED_DEFAULT = '(embedded default)';
/** http.draintimeout when unset: how long SIGTERM waits for in-flight requests (distribution's 0 = none is still accepted). */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
/** Where storage goes when the config names no storage driver at all (resolved against the cwd). */
export const DEFAULT_ROOT = './data';
/** regcache.workers default: one process (see docs/operations.md#workers for when more are faster). */
export const DEFAULT_WORKERS = 1;
/**
 * regcache.cache.manifestmemory default: bytes of manifests kept in memory. A manifest is a few KiB (an index of
 * many platforms tens of KiB), so this holds thousands of hot tags and digests without a storage read.
 */
export const DEFAULT_MANIFEST_MEMORY_BYTES = 64 * 1024 * 1024;
/** regcache.warm.interval default. */
export const DEFAULT_WARM_INTERVAL_MS = 6 * 3600_000;
/** regcache.dashboard.path default. */
export const DEFAULT_DASHBOARD_PATH = '/dashboard';
/** A typical cloud price of internet egress: AWS, GCP and Azure list about $0.09 per GB for the first tiers. */
export const DEFAULT_EGRESS_PRICE_PER_GB = 0.09;
/**
 * An upstream 404 is remembered this long: a client scanning names (or retrying a typo) costs one upstream
 * request per name and window, not one per request; short enough that a just-pushed image appears quickly.
 */
const DEFAULT_NEGATIVE_TTL_MS = 15_000;

/** distribution's filesystem driver default, used when `storage.filesystem` omits rootdirectory. */
const DISTRIBUTION_FS_ROOT = '/var/lib/registry';
const MIN_S3_CHUNK = 5 * 1024 * 1024;
/** Keys whose values must never appear in a message. */
const SECRET_KEYS = new Set(['password', 'secretkey', 'secret', 'sessiontoken']);

type Problem = { path: string; message: string };

/**
 * Reads `file` (else $REGISTRY_CONFIGURATION_PATH, as distribution; else the embedded default) and applies env
 * overrides from `env` (default process.env). Unless `checkFiles` is false it also reads the files the config
 * names that must be usable at start (regcache.admin.tokenfile): unreadable or empty is a problem of that key.
 */
export async function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; checkFiles?: boolean } = {}): Promise<LoadedConfig> {
  const env = opts.env ?? process.env;
  const file = opts.file ?? (env[CONFIG_PATH_VAR] || undefined);
  let loaded: LoadedConfig;
  if (file === undefined) loaded = parseConfig(undefined, env);
  else {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new ConfigError([{ path: file, message: `cannot read config file: ${err.code ?? err.message}` }]);
    }
    loaded = parseConfig(text, env, file);
  }
  if (opts.checkFiles !== false) await checkAdminToken(loaded);
  return loaded;
}

/** regcache.admin.tokenfile must hold a token now: the server refuses to start otherwise (exit 2, like any bad key). */
async function checkAdminToken(loaded: LoadedConfig): Promise<void> {
  const tokenfile = loaded.config.regcache.admin?.tokenfile;
  if (tokenfile === undefined) return;
  try {
    const w = weakTokenWarning(tokenfile, await readAdminToken(tokenfile));
    if (w) loaded.warnings.push(w);
  } catch (e) {
    if (e instanceof AdminTokenError) throw new ConfigError([{ path: ADMIN_TOKENFILE_KEY, message: e.message }]);
    throw e;
  }
}

/** Pure: YAML text (undefined = embedded default) + env → config. Throws ConfigError only. */
export function parseConfig(yamlText: string | undefined, env: NodeJS.ProcessEnv, source?: string): LoadedConfig {
  source ??= yamlText === undefined ? EMBEDDED_DEFAULT : '(config)';
  const root = yamlText === undefined ? newMap() : parseYaml(yamlText, source);
  const overrides = applyEnv(root, env);
  const warnings = [...overrides.warnings];
  const data = normalize(root, fileSchema, [], (w) => warnings.push(w));
  const parsed = fileSchema.safeParse(data, { reportInput: true });
  const problems = [...overrides.problems];
  let config: Config | undefined;
  if (parsed.success) config = build(parsed.data, warnings, problems);
  else problems.push(...parsed.error.issues.flatMap(issueProblems));
  if (problems.length > 0 || !config) throw new ConfigError(problems.map((p) => withSource(p, overrides.sources)));
  return { config, warnings, source };
}

export function defaultConfig(): Config {
  return parseConfig(undefined, {}).config;
}

function parseYaml(text: string, source: string): RawMap {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        // Only the first line: the rest quotes the source, which may hold a secret.
        const reason = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
        return { path: pos ? `${source}:${pos.line}:${pos.col}` : source, message: `YAML syntax error: ${reason}` };
      }),
    );
  }
  const raw = yamlToRaw(doc);
  if (isRawMap(raw)) return raw;
  if (raw instanceof Leaf && raw.value === null) return newMap(); // empty file or only comments
  throw new ConfigError([{ path: '', message: `expected a mapping of configuration keys, got ${describe(plain(raw))}` }]);
}

const EXPECTED: Record<string, string> = { object: 'a mapping', record: 'a mapping', array: 'a list', string: 'a string' };

function issueProblems(issue: z.core.$ZodIssue): Problem[] {
  const path = formatPath(issue.path.map((p) => (typeof p === 'number' ? p : String(p))) as Path);
  const input = (issue as { input?: unknown }).input;
  const secret = SECRET_KEYS.has(String(issue.path.at(-1)));
  const got = secret && typeof input === 'string' ? 'a string' : describe(input);
  if (issue.code === 'invalid_type') {
    const expected = EXPECTED[issue.expected] ?? issue.expected;
    return [{ path, message: input === undefined ? 'required' : `expected ${expected}, got ${got}` }];
  }
  if (issue.code === 'invalid_union') {
    // When exactly one alternative took the value's shape and failed inside it, its problems say more.
    const inside = issue.errors.filter((errs) => errs.every((e) => e.path.length > 0));
    if (inside.length === 1) return inside[0]!.flatMap((e) => issueProblems({ ...e, path: [...issue.path, ...e.path] }));
    return [{ path, message: `${issue.message}, got ${got}` }];
  }
  return [{ path, message: issue.message }];
}

/** Names the environment variable behind a problem's key, if one set it. */
function withSource(p: Problem, sources: Map<string, string>): Problem {
  let best: [string, string] | undefined;
  for (const [key, name] of sources) {
    const covers = p.path === key || p.path.startsWith(`${key}.`) || p.path.startsWith(`${key}[`);
    if (covers && (!best || key.length > best[0].length)) best = [key, name];
  }
  return best ? { path: p.path, message: `${p.message} (from ${best[1]})` } : p;
}

function build(f: FileConfig, warnings: string[], problems: Problem[]): Config {
  const problem = (path: string, message: string): void => void problems.push({ path, message });
  const warn = (w: string): void => void warnings.push(w);

  if (f.version !== undefined && f.version.trim() !== '0.1') {
    problem('version', `unsupported version ${describe(f.version)} (expected 0.1)`);
  }
  if (f.loglevel !== undefined) warn('key "loglevel" deprecated: use log.level');

  const h = f.http ?? {};
  if (h.net === 'unix') problem('http.net', 'unix sockets are not supported (use tcp)');
  if (h.prefix && h.prefix !== '/') warn('key "http.prefix" ignored: not supported (the API is served at /v2/)');
  let debug: Config['http']['debug'];
  if (h.debug) {
    if (!h.debug.addr) warn('key "http.debug" ignored: http.debug.addr is not set');
    else {
      const path = h.debug.prometheus?.path ?? '/metrics';
      if (!path.startsWith('/')) problem('http.debug.prometheus.path', `must start with "/", got ${describe(path)}`);
      debug = { addr: h.debug.addr, prometheus: { enabled: h.debug.prometheus?.enabled ?? false, path } };
    }
  }

  const s = f.storage ?? {};
  const blobdescriptor = s.cache?.blobdescriptor;
  if (blobdescriptor !== undefined && blobdescriptor !== 'inmemory' && blobdescriptor !== 'redis') {
    warn(`key "storage.cache.blobdescriptor" ignored: unknown cache type ${describe(blobdescriptor)}`);
  }

  const auth = f.auth ?? {};
  for (const method of ['token', 'silly'] as const) {
    if (auth[method] !== undefined) {
      problem(`auth.${method}`, `${method} authentication is not supported (use auth.htpasswd)`);
    }
  }
  let htpasswd: { realm: string; path: string } | undefined;
  if (auth.htpasswd) {
    const { realm, path } = auth.htpasswd;
    if (!realm) problem('auth.htpasswd.realm', 'required');
    if (!path) problem('auth.htpasswd.path', 'required');
    htpasswd = { realm: realm ?? '', path: path ?? '' };
  }
  const rc = f.regcache ?? {};
  if (rc.requireauth && !htpasswd) problem('regcache.requireauth', 'requires auth.htpasswd');
  const tokenfile = rc.admin?.tokenfile?.trim();
  if (rc.admin?.tokenfile !== undefined && !tokenfile) problem(ADMIN_TOKENFILE_KEY, 'must name a file holding the admin token');

  const addr = h.addr ?? ':5000';
  const upstreams = buildUpstreams(f, problem);
  for (const [i, u] of upstreams.entries()) {
    if (u.addr && (u.addr === addr || u.addr === debug?.addr)) {
      const path = `regcache.upstreams[${i - (f.proxy ? 1 : 0)}].addr`;
      problem(path, `${describe(u.addr)} is already http.addr or http.debug.addr`);
    }
  }

  return {
    log: {
      level: f.log?.level ?? f.loglevel ?? 'info',
      formatter: f.log?.formatter ?? 'text',
      fields: f.log?.fields ?? {},
      accesslog: { disabled: f.log?.accesslog?.disabled ?? false },
    },
    storage: buildStorage(s, problem, warn),
    storageDeleteEnabled: s.delete?.enabled ?? false,
    storageRedirect: !(s.redirect?.disable ?? false),
    http: defined({
      addr,
      host: h.host,
      relativeurls: h.relativeurls ?? false,
      draintimeoutMs: h.draintimeout ?? DEFAULT_DRAIN_TIMEOUT_MS,
      headers: h.headers ?? {},
      debug,
      tls: buildTls(h.tls, problem, warn),
    }),
    ...(htpasswd && { auth: { htpasswd } }),
    health: {
      storagedriver: {
        enabled: f.health?.storagedriver?.enabled ?? false,
        intervalMs: f.health?.storagedriver?.interval || 10_000,
        threshold: f.health?.storagedriver?.threshold ?? 1,
      },
    },
    ...buildRedis(f.redis, problem, warn),
    upstreams,
    regcache: {
      requireauth: rc.requireauth ?? false,
      negativeTtlMs: rc.negativettl ?? DEFAULT_NEGATIVE_TTL_MS,
      workers: buildWorkers(rc.workers, s, h.tls?.letsencrypt !== undefined, problem),
      acme: buildAcme(rc.acme, problem),
      cache: defined({
        maxsizeBytes: rc.cache?.maxsize,
        lowwatermark: rc.cache?.lowwatermark ?? 0.9,
        manifestMemoryBytes: rc.cache?.manifestmemory ?? DEFAULT_MANIFEST_MEMORY_BYTES,
      }),
      ...(rc.trustproxy !== undefined && { trustproxy: rc.trustproxy }),
      ...(tokenfile && { admin: { tokenfile: resolve(tokenfile) } }),
      ...(rc.warm?.images?.length && { warm: { images: rc.warm.images, intervalMs: rc.warm.interval || DEFAULT_WARM_INTERVAL_MS } }),
      dashboard: {
        enabled: rc.dashboard?.enabled ?? true,
        path: rc.dashboard?.path === '/' || !rc.dashboard?.path ? DEFAULT_DASHBOARD_PATH : rc.dashboard.path,
        mainlistener: rc.dashboard?.mainlistener ?? false,
        egressprice: rc.dashboard?.egressprice ?? DEFAULT_EGRESS_PRICE_PER_GB,
        currency: rc.dashboard?.currency ?? 'USD',
      },
    },
  };
}

/** regcache.workers: `auto` is one per CPU; several processes need a storage they all see. */
function buildWorkers(
  v: number | 'auto' | undefined,
  storage: NonNullable<FileConfig['storage']>,
  letsencrypt: boolean,
  problem: (path: string, message: string) => void,
): number {
  const n = v === 'auto' ? availableParallelism() : (v ?? DEFAULT_WORKERS);
  if (n > 1 && storage.inmemory !== undefined) {
    problem('regcache.workers', `${n} workers need a storage they share (filesystem or s3); inmemory storage is private to each process`);
  }
  if (n > 1 && letsencrypt) {
    // Each worker would run its own ACME account and renewals.
    problem('regcache.workers', `${n} workers cannot share http.tls.letsencrypt; use http.tls.certificate/key files (renewed by certbot or similar) or one worker`);
  }
  return n;
}

function buildAcme(
  a: NonNullable<FileConfig['regcache']>['acme'],
  problem: (path: string, message: string) => void,
): Config['regcache']['acme'] {
  const challenge = a?.challenge ?? 'tls-alpn-01';
  if (challenge === 'dns-01' && !a?.dns01?.hook) problem('regcache.acme.dns01.hook', 'required for the dns-01 challenge');
  return defined({
    challenge,
    httpaddr: a?.httpaddr ?? ':80',
    dns01: a?.dns01?.hook ? { hook: a.dns01.hook, timeoutMs: a.dns01.timeout ?? 300_000 } : undefined,
    cafile: a?.cafile,
  });
}

function buildStorage(
  s: NonNullable<FileConfig['storage']>,
  problem: (path: string, message: string) => void,
  warn: (w: string) => void,
): StorageConfig {
  const drivers = STORAGE_DRIVERS.filter((d) => s[d] !== undefined);
  if (drivers.length > 1) problem('storage', `exactly one storage driver may be configured, got ${drivers.join(', ')}`);
  const driver = drivers[0];
  if (driver === undefined) return { driver: 'filesystem', rootdirectory: resolve(DEFAULT_ROOT) };
  if (!SUPPORTED_DRIVERS.has(driver)) {
    problem(`storage.${driver}`, `storage driver "${driver}" is not supported (use filesystem, inmemory or s3)`);
  }
  if (driver === 'inmemory') return { driver };
  if (driver !== 's3') {
    return { driver: 'filesystem', rootdirectory: resolve(s.filesystem?.rootdirectory || DISTRIBUTION_FS_ROOT) };
  }

  const s3 = s.s3!;
  if (!s3.region) problem('storage.s3.region', 'required');
  if (!s3.bucket) problem('storage.s3.bucket', 'required');
  if (!!s3.accesskey !== !!s3.secretkey) problem('storage.s3.secretkey', 'accesskey and secretkey go together');
  const chunksize = s3.chunksize ?? 10 * 1024 * 1024;
  if (chunksize < MIN_S3_CHUNK) problem('storage.s3.chunksize', `must be at least 5MiB (${MIN_S3_CHUNK}), got ${chunksize}`);
  if (s3.v4auth === false) warn('key "storage.s3.v4auth" ignored: only AWS signature v4 is supported');
  let endpoint = s3.regionendpoint || undefined;
  // distribution's `secure` picks the scheme for an endpoint given without one.
  if (endpoint && !/^https?:\/\//i.test(endpoint)) endpoint = `${s3.secure === false ? 'http' : 'https'}://${endpoint}`;
  return defined({
    driver: 's3' as const,
    region: s3.region ?? '',
    bucket: s3.bucket ?? '',
    regionendpoint: endpoint,
    accesskey: s3.accesskey || undefined,
    secretkey: s3.secretkey || undefined,
    rootdirectory: s3.rootdirectory ?? '',
    forcepathstyle: s3.forcepathstyle ?? false,
    encrypt: s3.encrypt ?? false,
    chunksize,
  });
}

type FileTls = NonNullable<NonNullable<FileConfig['http']>['tls']>;

function buildTls(
  t: FileTls | undefined,
  problem: (path: string, message: string) => void,
  warn: (w: string) => void,
): TlsConfig | undefined {
  if (!t) return undefined;
  const le = t.letsencrypt && Object.keys(t.letsencrypt).length > 0 ? t.letsencrypt : undefined;
  // distribution refuses certificate + letsencrypt together; the design's reference config has both, so both
  // are passed on and src/tls decides (e.g. ACME for letsencrypt.hosts, the file certificate otherwise).
  if (t.certificate && !t.key) problem('http.tls.key', 'required with http.tls.certificate');
  if (t.key && !t.certificate) problem('http.tls.certificate', 'required with http.tls.key');
  if (le && !le.cachefile) problem('http.tls.letsencrypt.cachefile', 'required');
  if (!t.certificate && !t.key && !le) {
    if ((t.clientcas?.length ?? 0) > 0 || t.minimumtls) {
      warn('key "http.tls" ignored: neither http.tls.certificate nor http.tls.letsencrypt is set');
    }
    return undefined;
  }
  return defined({
    certificate: t.certificate,
    key: t.key,
    clientcas: t.clientcas ?? [],
    minimumtls: t.minimumtls,
    letsencrypt:
      le &&
      defined({ cachefile: le.cachefile ?? '', email: le.email ?? '', hosts: le.hosts ?? [], directoryurl: le.directoryurl }),
  });
}

function buildRedis(
  r: FileConfig['redis'],
  problem: (path: string, message: string) => void,
  warn: (w: string) => void,
): Pick<Config, 'redis'> {
  if (!r) return {};
  for (const [i, a] of (r.addrs ?? []).entries()) {
    if (!isListenAddr(a) || a.startsWith(':')) problem(`redis.addrs[${i}]`, `expected host:port, got ${describe(a)}`);
    else if (i > 0 || r.addr) warn(`key "redis.addrs[${i}]" ignored: only one redis address is used`);
  }
  const addr = r.addr ?? r.addrs?.[0];
  if (!addr) return {};
  const tls = typeof r.tls === 'boolean' ? r.tls : (r.tls?.enabled ?? false);
  return { redis: defined({ addr, password: r.password || undefined, db: r.db ?? 0, tls }) };
}
