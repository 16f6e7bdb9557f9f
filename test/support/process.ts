import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  readonly pid: number;
  /** stdout and stderr of the child, appended to this file */
  readonly logFile: string;
  /** resolves when the child has exited (never rejects) */
  readonly exited: Promise<ProcessExit>;
  hasExited(): boolean;
  /** last maxBytes of the log file */
  logTail(maxBytes?: number): Promise<string>;
  /** SIGTERM, then SIGKILL after graceMs; resolves once the child is gone. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartProcessOptions {
  logFile: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** directories the watchdog removes if this test process dies without tearing down */
  removeOnOrphan?: string[];
}

// Children still running when the test process exits (e.g. after a failed assertion skipped teardown) are killed.
const live = new Set<number>();
process.once('exit', () => {
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** Spawns cmd with stdout+stderr appended to opts.logFile; resolves once the child is running. */
export async function startProcess(cmd: string, args: string[], opts: StartProcessOptions): Promise<ManagedProcess> {
  const fd = openSync(opts.logFile, 'a');
  const child = (() => {
    try {
      return spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd); // the child holds its own copy
    }
  })();
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) => reject(new Error(`cannot start ${cmd}: ${err.message}`)));
  });
  const pid = child.pid!;
  live.add(pid);
  const watchdog = startWatchdog(pid, opts.removeOnOrphan ?? []);

  let done = false;
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true;
      live.delete(pid);
      watchdog.kill('SIGKILL');
      resolve({ code, signal });
    });
  });

  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 5000): Promise<void> => {
    stopping ??= (async () => {
      if (done) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    })();
    return stopping;
  };

  return {
    pid,
    logFile: opts.logFile,
    exited,
    hasExited: () => done,
    logTail: (maxBytes) => readTail(opts.logFile, maxBytes),
    stop,
  };
}

/**
 * If this test process dies without running 'exit' handlers (e.g. the test runner SIGTERMs a file that timed out),
 * its stdin pipe to this tiny detached shell closes, and the shell kills the child and removes its dirs.
 */
function startWatchdog(pid: number, dirs: string[]): ChildProcess {
  // dirs are passed as positional parameters, so no quoting issues
  const script = `read _; kill -KILL ${pid} 2>/dev/null; sleep 1; rm -rf -- "$@"`;
  const dog = spawn('/bin/sh', ['-c', script, 'watchdog', ...dirs], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
  });
  dog.on('error', () => {}); // best effort
  dog.unref();
  (dog.stdin as unknown as Socket | null)?.unref();
  return dog;
}

export async function readTail(file: string, maxBytes = 4096): Promise<string> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch {
    return '';
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, maxBytes);
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, size - length);
    return buf.toString('utf8');
  } finally {
    await handle.close();
  }
}

/** The process and its descendants, parents first (e.g. a server and its workers), from /proc (Linux). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${out[i]}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        out.push(...readFileSync(`/proc/${out[i]}/task/${t}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number));
      } catch {
        // the task ended
      }
    }
  }
  return out;
}

/** Polls cond until it returns true; throws after timeoutMs. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string; signal?: AbortSignal } = {},
): Promise<void> {
  const { timeoutMs = 10_000, intervalMs = 25, what = 'condition', signal } = opts;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    if (await cond()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Waits until the process's log (the last MiB of it) contains `text`; throws after timeoutMs. */
export async function waitForLog(proc: Pick<ManagedProcess, 'logTail'>, text: string, opts: { timeoutMs?: number; intervalMs?: number } = {}): Promise<void> {
  await waitFor(async () => (await proc.logTail(1 << 20)).includes(text), { ...opts, what: `${JSON.stringify(text)} in the log` });
}

/** Status code of one GET, or undefined if nothing answered (refused, reset, no response within 2 s). */
export function probeHttp(url: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'GET', timeout: 2000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/** Polls url until any HTTP response arrives. */
export async function waitForHttp(
  url: string,
  timeoutMs = 20_000,
  opts: { signal?: AbortSignal } = {},
): Promise<void> {
  await waitFor(async () => (await probeHttp(url)) !== undefined, {
    timeoutMs,
    intervalMs: 25,
    what: `an HTTP response from ${url}`,
    signal: opts.signal,
  });
}

/** Polls until a TCP connection to host:port succeeds. */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 20_000): Promise<void> {
  const canConnect = () =>
    new Promise<boolean>((resolve) => {
      const socket = connect({ port, host });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
  await waitFor(canConnect, { timeoutMs, what: `TCP ${host}:${port}` });
}

/** Resident set size of a process, in MB (Linux /proc). */
export async function rssMb(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}
