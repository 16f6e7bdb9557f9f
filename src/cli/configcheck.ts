import { loadConfig } from '../config/load.js';

export async function runConfigCheck(opts: { config?: string }): Promise<void> {
  const { config, warnings, source } = await loadConfig({ file: opts.config });
  const out: string[] = [`config ${source}: OK`];
  for (const w of warnings) out.push(`warning: ${w}`);
  out.push(`listen: ${config.http.addr}`);
  out.push(
    `storage: ${config.storage.driver}${config.storage.driver === 'filesystem' ? ` ${config.storage.rootdirectory}` : ''}`,
  );
  for (const [i, u] of config.upstreams.entries()) {
    const auth = u.username ? ` (as ${u.username})` : '';
    const routes = [...u.prefixes.map((p) => `prefix ${p}/`), ...u.hosts.map((h) => `ns=${h}`)].join(', ');
    out.push(`upstream ${u.name}: ${u.remoteurl}${auth}${i === 0 ? ' [default]' : ''}${routes ? ` — ${routes}` : ''}`);
  }
  process.stdout.write(out.join('\n') + '\n');
}
