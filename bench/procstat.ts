// Memory and CPU of a server process, read from /proc (Linux).
import { readFileSync } from 'node:fs';

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

/** Samples VmRSS/VmHWM every intervalMs; VmHWM (the kernel's own peak) covers spikes between samples. */
export function sampleProcess(pid: number, intervalMs = 100): ProcSampler {
  let peak = 0;
  let rss = 0;
  let stepPeak = 0;
  let lastCpu = { user: 0, system: 0 };
  const sample = () => {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      for (const key of ['VmRSS', 'VmHWM']) {
        const kb = Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
        peak = Math.max(peak, kb * 1024);
        if (key === 'VmRSS') {
          rss = kb * 1024;
          stepPeak = Math.max(stepPeak, rss);
        }
      }
      lastCpu = readCpu(pid);
    } catch {
      // the process is gone: keep what was seen
    }
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

function readCpu(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // fields after the parenthesised command name (which may contain spaces); utime and stime are fields 14 and 15
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / CLOCK_TICKS, system: Number(fields[12]) / CLOCK_TICKS };
}
