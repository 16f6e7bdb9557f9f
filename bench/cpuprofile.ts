// Top functions by self time in a V8 .cpuprofile (written by node --cpu-prof).
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface HotFunction {
  name: string;
  /** file:line, shortened to the part below the repository or node_modules */
  where: string;
  selfMs: number;
  percent: number;
}

/** Functions by self time, as a share of the busy (non-idle) samples. */
export async function topFunctions(
  file: string,
  limit = 15,
): Promise<{ totalMs: number; idleMs: number; top: HotFunction[] }> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, HotFunction>();
  let totalMs = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    totalMs += ms;
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const where = url ? `${shorten(url)}:${lineNumber + 1}` : '';
    const key = `${functionName}@${where}`;
    const entry = self.get(key) ?? { name: functionName || '(anonymous)', where, selfMs: 0, percent: 0 };
    entry.selfMs += ms;
    self.set(key, entry);
  });
  const idleMs = self.get('(idle)@')?.selfMs ?? 0;
  self.delete('(idle)@');
  const top = [...self.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, limit);
  for (const f of top) f.percent = (100 * f.selfMs) / (totalMs - idleMs);
  return { totalMs, idleMs, top };
}

function shorten(url: string): string {
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) return path.slice(nm + 1);
  const m = /\/(dist|src)\//.exec(path);
  return m ? path.slice(m.index + 1) : path;
}
