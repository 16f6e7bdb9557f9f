import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { stringify } from 'yaml';
import { freePort } from './ports.js';
import { probeHttp, startProcess, waitForHttp, type ManagedProcess } from './process.js';
import { makeTempDir, removeDir } from './tmp.js';

export { waitForHttp } from './process.js';

const REGISTRY_BIN = process.env.REGCACHE_TEST_REGISTRY_BIN ?? 'docker-registry';

export interface RegistryOptions {
  /** deep-merged into the generated config.yml (e.g. { auth: { token: {...} } } or { proxy: { remoteurl } }) */
  config?: Record<string, unknown>;
  /** enable auth.htpasswd with a bcrypt entry for this user */
  htpasswd?: { username: string; password: string };
  /** storage root; default: fresh temp dir removed on stop() */
  rootDir?: string;
  /** registry binary (default: Debian's docker-registry; e.g. .tools/bin/registry-v3 for the referrers API) */
  bin?: string;
}

export interface RunningRegistry {
  url: string;
  host: string;
  port: number;
  rootDir: string;
  /** distribution's stdout+stderr (access log included) */
  logFile: string;
  /** kills the process (SIGTERM then SIGKILL), removes temp dirs it created; idempotent */
  stop(): Promise<void>;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function deepMerge(base: Obj, over: Obj): Obj {
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = isObj(v) && isObj(out[k]) ? deepMerge(out[k] as Obj, v) : v;
  }
  return out;
}

/** Starts the real distribution registry (Debian docker-registry) on a free loopback port. */
export async function startRegistry(opts: RegistryOptions = {}): Promise<RunningRegistry> {
  const workDir = await makeTempDir('regcache-registry-');
  const rootDir = opts.rootDir ?? join(workDir, 'storage');
  const logFile = join(workDir, 'registry.log');
  try {
    let auth: Obj = {};
    if (opts.htpasswd) {
      const path = join(workDir, 'htpasswd');
      // low cost: distribution checks the hash on every request
      const hash = bcrypt.hashSync(opts.htpasswd.password, 5);
      await writeFile(path, `${opts.htpasswd.username}:${hash}\n`);
      auth = { auth: { htpasswd: { realm: 'basic-realm', path } } };
    }
    // A port can be taken between freePort() and bind; retry a few times on that.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const config = deepMerge(
        deepMerge(
          {
            version: 0.1,
            log: { level: 'info', formatter: 'text', accesslog: { disabled: false } },
            storage: {
              filesystem: { rootdirectory: rootDir },
              delete: { enabled: true },
              maintenance: { uploadpurging: { enabled: false } },
            },
            http: { addr: `127.0.0.1:${port}`, secret: 'regcache-test-secret' },
            health: { storagedriver: { enabled: false } },
          },
          auth,
        ),
        opts.config ?? {},
      );
      const configFile = join(workDir, 'config.yml');
      await writeFile(configFile, stringify(config));
      const proc = await startProcess(opts.bin ?? REGISTRY_BIN, ['serve', configFile], {
        logFile,
        env: envWithoutRegistryVars(),
        removeOnOrphan: [workDir], // not a caller-supplied rootDir: that is the caller's
      });
      const url = `http://127.0.0.1:${port}`;
      const ready = await waitUntilReady(proc, `${url}/v2/`);
      if (ready === 'ok') {
        return makeHandle(proc, { url, host: `127.0.0.1:${port}`, port, rootDir, logFile }, workDir);
      }
      await proc.stop();
      const tail = await proc.logTail();
      if (ready === 'exited' && attempt < 3 && /address already in use/.test(tail)) continue;
      throw new Error(`docker-registry did not become ready (${ready}); log tail:\n${tail}`);
    }
  } catch (err) {
    await removeDir(workDir);
    throw err;
  }
}

async function waitUntilReady(proc: ManagedProcess, url: string): Promise<'ok' | 'exited' | string> {
  const abort = new AbortController();
  const exited = proc.exited.then(() => 'exited' as const);
  const answered = waitForHttp(url, 20_000, { signal: abort.signal }).then(
    async () => {
      const status = await probeHttp(url);
      return status === 200 || status === 401 ? ('ok' as const) : `status ${status} on /v2/`;
    },
    (err: Error) => err.message,
  );
  const result = await Promise.race([exited, answered]);
  abort.abort();
  return result;
}

// docker-registry reads REGISTRY_* env vars as config overrides; keep the test's environment out of it.
function envWithoutRegistryVars(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGISTRY_')));
}

function makeHandle(
  proc: ManagedProcess,
  info: Omit<RunningRegistry, 'stop'>,
  workDir: string,
): RunningRegistry {
  let stopping: Promise<void> | undefined;
  return {
    ...info,
    stop() {
      stopping ??= (async () => {
        await proc.stop();
        await removeDir(workDir); // holds the default rootDir, config, htpasswd and log
      })();
      return stopping;
    },
  };
}
