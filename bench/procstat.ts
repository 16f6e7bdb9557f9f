// Memory and CPU of a server process and its children (regcache.workers), read from /proc (Linux).
import { readFileSync } from 'node:fs';
import { processTree } from '../test/support/process.js';

const CLOCK_TICKS = 100; // USER_HZ; 100 on every Linux this runs on

export interface ProcSampler {
  /** highest of VmHWM and every VmRSS sample so far (bytes) */
  peakRssBytes(): number;
  /** current VmRSS (bytes) */
  rssBytes(): number;
  /** highest VmRSS sample since the last call of this (bytes): the peak of one step */
  stepPeakRssBytes(): number;
  /** user + system CPU time of the process so far (seconds) */
  cpuSeconds(): number;
  /** the same, split: user (the process's own code) and system (the kernel on its behalf) */
  cpu(): { user: number; system: number };
  stop(): void;
}

/**
 * Samples VmRSS (summed over the process tree) every intervalMs; for a single process VmHWM (the kernel's own
 * peak) also covers spikes between samples.
 */
export function sampleProcess(pid: number, intervalMs = 100): ProcSampler {
  let peak = 0;
  let rss = 0;
  let stepPeak = 0;
  let lastCpu = { user: 0, system: 0 };
  const sample = () => {
    const pids = processTree(pid);
    let total = 0;
    let cpu = { user: 0, system: 0 };
    for (const p of pids) {
      try {
        const status = readFileSync(`/proc/${p}/status`, 'utf8');
        const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
        total += kb('VmRSS') * 1024;
        if (pids.length === 1) peak = Math.max(peak, kb('VmHWM') * 1024);
        const c = readCpu(p, p === pid);
        cpu = { user: cpu.user + c.user, system: cpu.system + c.system };
      } catch {
        // gone: keep what was seen
      }
    }
    if (total === 0) return; // the server is gone
    rss = total;
    peak = Math.max(peak, rss);
    stepPeak = Math.max(stepPeak, rss);
    // CPU only grows: a worker that exited between samples must not make it go back
    lastCpu = { user: Math.max(lastCpu.user, cpu.user), system: Math.max(lastCpu.system, cpu.system) };
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  timer.unref();
  return {
    rssBytes() {
      sample();
      return rss;
    },
    stepPeakRssBytes() {
      sample();
      const p = stepPeak;
      stepPeak = rss;
      return p;
    },
    peakRssBytes() {
      sample();
      return peak;
    },
    cpuSeconds() {
      sample();
      return lastCpu.user + lastCpu.system;
    },
    cpu() {
      sample();
      return { ...lastCpu };
    },
    stop() {
      sample();
      clearInterval(timer);
    },
  };
}

/** utime and stime; with `reaped`, also cutime and cstime (children that exited and were waited for). */
function readCpu(pid: number, reaped: boolean): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // fields after the parenthesised command name (which may contain spaces); utime..cstime are fields 14 to 17
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  return { user: (f[11]! + (reaped ? f[13]! : 0)) / CLOCK_TICKS, system: (f[12]! + (reaped ? f[14]! : 0)) / CLOCK_TICKS };
}
