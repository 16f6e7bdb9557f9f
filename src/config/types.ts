/**
 * The typed configuration every other layer consumes. src/config/load.ts builds it from a
 * distribution-style config.yml (+ REGISTRY_* env overrides + our `regcache:` extensions).
 * Durations are milliseconds, sizes bytes.
 */
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

export interface UpstreamTimeouts {
  /** TCP/TLS connect. */
  connectMs: number;
  /** From request sent to response headers. */
  headersMs: number;
  /** Longest silence between two body chunks. */
  idleMs: number;
}

export interface UpstreamConfig {
  /** Stable name used in storage keys, logs and metrics: `docker.io` for Docker Hub, else host[:port] (or configured). */
  name: string;
  /** Base URL, may carry a path prefix, http or https. */
  remoteurl: string;
  username?: string;
  password?: string;
  /** distribution's proxy.ttl: how long cached content is kept without being re-fetched; null = keep forever. */
  ttlMs: number | null;
  /** How long a cached tag is served without asking upstream. */
  freshnessMs: number;
  timeouts: UpstreamTimeouts;
  /** PEM bundle file trusted for https upstreams (in addition to the system CAs). */
  ca?: string;
  insecureSkipVerify: boolean;
  /** Max sockets per upstream origin. */
  connections: number;
  /** Docker Hub: single-component names get `library/`. Derived from remoteurl unless set. */
  dockerHub: boolean;
  /** Multi-upstream routing (issue 8). */
  prefixes: string[];
  /** Registry host names this upstream answers for (containerd `ns=`, Host header). */
  hosts: string[];
  addr?: string;
  allow: string[];
  deny: string[];
  credentialhelper?: string;
  /** Hosts besides the upstream's own to which credentials may be sent for a token (e.g. auth.docker.io). */
  authhosts: string[];
}

export type StorageConfig =
  | { driver: 'filesystem'; rootdirectory: string }
  | { driver: 'inmemory' }
  | {
      driver: 's3';
      region: string;
      bucket: string;
      regionendpoint?: string;
      accesskey?: string;
      secretkey?: string;
      rootdirectory: string;
      forcepathstyle: boolean;
      encrypt: boolean;
      chunksize: number;
    };

export interface TlsConfig {
  certificate?: string;
  key?: string;
  clientcas: string[];
  minimumtls?: string;
  letsencrypt?: { cachefile: string; email: string; hosts: string[]; directoryurl?: string };
}

export interface Config {
  log: {
    level: LogLevel;
    formatter: 'text' | 'json' | 'logstash';
    fields: Record<string, string>;
    accesslog: { disabled: boolean };
  };
  storage: StorageConfig;
  /** storage.delete.enabled (accepted; a mirror does not take client deletes). */
  storageDeleteEnabled: boolean;
  /** storage.redirect.disable (s3). */
  storageRedirect: boolean;
  http: {
    /** host:port or :port as distribution; `unix:` not supported. */
    addr: string;
    host?: string;
    relativeurls: boolean;
    draintimeoutMs: number;
    /** Extra response headers, distribution style (name → values). */
    headers: Record<string, string[]>;
    debug?: { addr: string; prometheus: { enabled: boolean; path: string } };
    tls?: TlsConfig;
  };
  auth?: { htpasswd?: { realm: string; path: string } };
  health: { storagedriver: { enabled: boolean; intervalMs: number; threshold: number } };
  redis?: { addr: string; password?: string; db: number; tls: boolean };
  /** First entry is the default upstream (distribution's `proxy:` block, else Docker Hub). */
  upstreams: UpstreamConfig[];
  regcache: {
    requireauth: boolean;
    /** Whose X-Forwarded-For to believe for client addresses in logs: every hop (true) or these proxies (addresses/CIDRs). Absent: none. */
    trustproxy?: boolean | string[];
    /** How certificates for http.tls.letsencrypt are obtained. */
    acme: {
      challenge: 'tls-alpn-01' | 'http-01' | 'dns-01';
      /** http-01: the plain-HTTP listener answering challenges (and redirecting nothing else). */
      httpaddr: string;
      dns01?: { hook: string; timeoutMs: number };
      /** Extra CA trusted for the ACME server (pebble, step-ca). */
      cafile?: string;
    };
    /** regcache.cache: maxsize and lowwatermark (disk, eviction); manifestMemoryBytes bounds the in-memory manifest LRU. */
    cache: { maxsizeBytes?: number; lowwatermark: number; manifestMemoryBytes: number };
    /** regcache.negativettl: how long an upstream 404 (unknown repository, tag or blob) is answered from memory. 0: never. */
    negativeTtlMs: number;
    /**
     * regcache.workers: server processes sharing the listeners (node:cluster), coordinated over IPC so that they
     * behave as one process (one upstream fetch per blob, one metadata writer, one sweeper). `auto` is resolved
     * to the CPU count. 1: a single process, no cluster.
     */
    workers: number;
    /**
     * regcache.admin.tokenfile (absolute): a file whose trimmed content is the bearer token every state-changing
     * admin request (POST /admin/...) must send. Absent: those work only on a loopback debug listener.
     */
    admin?: { tokenfile: string };
    /** regcache.warm: images the running server keeps warm (revalidated, new digests pulled) every intervalMs. */
    warm?: { images: string[]; intervalMs: number };
    /**
     * regcache.dashboard: the web page. On the debug listener at `path` unless `enabled: false`; also on the main
     * listener (behind client auth) with `mainlistener: true`. `egressprice` per GB (10^9 bytes) of egress, in `currency`.
     */
    dashboard: { enabled: boolean; path: string; mainlistener: boolean; egressprice: number; currency: string };
  };
}
