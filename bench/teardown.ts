// Everything the bench starts registers its undo here; run() undoes in reverse order, also on Ctrl-C.
import { spawn, type ChildProcess } from 'node:child_process';

type Undo = () => Promise<void> | void;

const undos: Undo[] = [];
const children = new Set<ChildProcess>();
let running: Promise<void> | undefined;

export function onTeardown(undo: Undo): void {
  undos.push(undo);
}

/** Undoes everything registered so far (latest first); errors are reported, not thrown. Idempotent per registration. */
export function teardown(): Promise<void> {
  running ??= (async () => {
    for (const child of children) child.kill('SIGKILL');
    while (undos.length > 0) {
      const undo = undos.pop()!;
      try {
        await undo();
      } catch (e) {
        process.stderr.write(`bench: teardown step failed: ${(e as Error).message}\n`);
      }
    }
  })().finally(() => {
    running = undefined;
  });
  return running;
}

/** On SIGINT/SIGTERM: tear down, then exit 130/143. */
export function teardownOnSignals(): void {
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}, tearing down...\n`);
      const force = setTimeout(() => process.exit(code), 20_000);
      void teardown().finally(() => {
        clearTimeout(force);
        process.exit(code);
      });
    });
  }
}

export interface ChildResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a short-lived child (load generator, curl, tsc) to completion; it is killed on teardown. Never throws on exit code. */
export async function runChild(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<ChildResult> {
  const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (c: Buffer) => out.push(c));
  child.stderr!.on('data', (c: Buffer) => err.push(c));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 600_000);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c) => resolve(c));
    });
    return { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
  } finally {
    clearTimeout(timer);
    children.delete(child);
  }
}
