import { randomUUID } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';

/**
 * Who wrote a temp file on a volume that several processes share: their machine boot, pid namespace and pid.
 * A pid alone names nobody across containers (every container's server is pid 1), so a liveness check by
 * pid is only valid inside our own pid namespace of our own boot. Temp files of writers elsewhere (another
 * container, another host on a network volume) are judged by age instead: a live download writes
 * continuously, so its file's mtime stays fresh.
 */
function namespaceTag(): string {
  const boot = tryRead(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim().slice(0, 8)) ?? 'noboot';
  const ns = tryRead(() => /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1]) ?? 'nons';
  return `${boot}.${ns}`;
}

function tryRead(fn: () => string | undefined): string | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

const NAMESPACE = namespaceTag();

/** This process on a shared volume: `<boot>.<pidns>.<pid>`. */
export const OWNER = `${NAMESPACE}.${process.pid}`;

/** Whether `owner` (an OWNER of some process) is a process of our pid namespace, whose pid we can check. */
export function sameNamespace(owner: string): boolean {
  return owner.startsWith(`${NAMESPACE}.`);
}

/** A fresh temp-file name that carries its owner: `<boot>.<pidns>.<pid>-<uuid>`. */
export function ownedName(): string {
  return `${OWNER}-${randomUUID()}`;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether a temp file is a leftover of a writer that is gone: one of ours that no writer holds any more, one of
 * a dead process of our namespace, or — for any other owner, or a name without one — one untouched for
 * `staleMs`.
 */
export function isLeftover(name: string, mtimeMs: number, opts: { active: Set<string>; staleMs: number; now?: number }): boolean {
  const m = /^([^.]+\.[^.]+)\.(\d+)-/.exec(name);
  if (m && m[1] === NAMESPACE) {
    const pid = Number(m[2]);
    return pid === process.pid ? !opts.active.has(name) : !isAlive(pid);
  }
  return (opts.now ?? Date.now()) - mtimeMs > opts.staleMs;
}
