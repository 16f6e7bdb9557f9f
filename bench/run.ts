// `npm run bench`: the same workload against regcache and against distribution's proxy mode, one upstream,
// one machine, one run. Prints a markdown table with the ratios; writes bench/results/latest.json.
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { startFaultProxy } from '../test/support/faultproxy.js';
import { readTail } from '../test/support/process.js';
import { removeDir } from '../test/support/tmp.js';
import { topFunctions } from './cpuprofile.js';
import { buildFixtures } from './fixtures.js';
import { timed } from './load.js';
import { parseOptions, sizesFor, type BenchOptions } from './options.js';
import { ratioChart } from './chart.js';
import { markdownTable, stepTable, targetOutcomes } from './report.js';
import { REGISTRY_V3, REPO_ROOT, startServer, startUpstream } from './servers.js';
import { onTeardown, runChild, teardown, teardownOnSignals } from './teardown.js';
import { makeBenchDir, setTempBase } from './tmp.js';
import { runWorkload, type ServerResult, type Side } from './workload.js';

const log = (msg: string) => process.stderr.write(`${msg}\n`);

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  setTempBase(opts.tmpDir);
  teardownOnSignals();
  preflight();
  const sizes = sizesFor(opts.quick);
  const started = new Date();
  if (opts.servers.includes('regcache')) await prepareRegcache(opts);
  if (opts.servers.includes('distribution-v3')) await prepareV3();
  if (opts.cpuProfDir) await mkdir(opts.cpuProfDir, { recursive: true });

  const upstream = await startUpstream();
  onTeardown(() => upstream.stop());
  log(`upstream: docker-registry at ${upstream.url}; building and pushing images...`);
  let fixtures!: Awaited<ReturnType<typeof buildFixtures>>;
  const fixtureSeconds = await timed(async () => (fixtures = await buildFixtures(sizes, upstream.host)));
  log(`images ready in ${fixtureSeconds.toFixed(1)} s`);

  // each server: its own fresh storage and its own counting proxy in front of the shared upstream
  const sides: Side[] = [];
  for (const name of opts.servers) {
    const counter = await startFaultProxy(upstream.url);
    onTeardown(() => counter.stop());
    const server = await startServer(name, counter.url, opts);
    onTeardown(() => server.stop());
    const pullDir = await makeBenchDir(`pulls-${name}`);
    onTeardown(() => removeDir(pullDir));
    sides.push({ server, upstream: counter, pullDir });
    log(`${name}: ${server.describe}, ${server.url} (pid ${server.pid})`);
  }
  const load = [os.loadavg()[0]!];
  let results: ServerResult[];
  try {
    results = await runWorkload(sides, fixtures, sizes, log);
  } catch (e) {
    for (const { server } of sides) log(`${server.name} log tail:\n${await readTail(server.logFile)}`);
    throw e;
  }
  load.push(os.loadavg()[0]!);
  for (const { server, upstream: counter } of sides) {
    await server.stop(); // regcache writes its CPU profile as it exits
    await counter.stop();
  }

  const table = markdownTable(results, sizes);
  const outcomes = targetOutcomes(results, sizes);
  const profiles = opts.cpuProfDir ? await summariseProfiles(opts.cpuProfDir, started) : undefined;
  const machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryGB: +(os.totalmem() / 1e9).toFixed(1),
    kernel: os.release(),
    node: process.version,
    /** 1-minute load average before and after the workload: other work on the machine skews absolute numbers */
    loadAverage: load,
  };
  const json = {
    date: started.toISOString(),
    durationSeconds: (Date.now() - started.getTime()) / 1000,
    machine,
    options: { quick: opts.quick, servers: opts.servers, regcacheFrom: opts.regcacheFrom, workers: opts.workers },
    sizes,
    fixtures,
    results,
    targets: outcomes,
    cpuProfiles: profiles,
  };
  await mkdir(dirname(opts.out), { recursive: true });
  await writeFile(opts.out, `${JSON.stringify(json, null, 2)}\n`);
  const chartFile = opts.out.replace(/\.json$/, '') + '.svg';
  await writeFile(chartFile, ratioChart(results, sizes, `regcache vs distribution, ${started.toISOString().slice(0, 10)}${opts.quick ? ' (--quick sizes)' : ''}`));

  const out: string[] = [
    `\n## regcache vs distribution v3 and 2.8 in proxy mode — ${started.toISOString()}${opts.quick ? ' (--quick sizes)' : ''}`,
    `machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGB} GB, Linux ${machine.kernel}, node ${machine.node}; load average ${load.map((l) => l.toFixed(1)).join(' → ')}`,
    ...results.map((r) => `${r.server}: ${r.describe}`),
    '',
    table,
    '',
    'Where each server spent its CPU, per step:',
    '',
    stepTable(results),
  ];
  const warnings = results.flatMap((r) => r.warnings.map((w) => `- ${r.server}: ${w}`));
  if (warnings.length) out.push('', 'Warnings:', ...warnings);
  if (outcomes.length) {
    const missed = outcomes.filter((o) => !o.met);
    out.push('', `Targets: ${outcomes.length - missed.length} of ${outcomes.length} met${missed.length ? `; missed: ${missed.map((o) => `${o.label} (${o.ratio.toFixed(2)}×, target ${o.target})`).join('; ')}` : ''}`);
  }
  for (const p of profiles ?? []) {
    const busy = (p.totalMs - p.idleMs) / 1000;
    out.push('', `CPU profile ${p.file}: ${busy.toFixed(1)} s busy of ${(p.totalMs / 1000).toFixed(1)} s; top functions by self time (% of busy):`);
    for (const f of p.top) out.push(`  ${f.percent.toFixed(1).padStart(5)}%  ${f.name}  ${f.where}`);
  }
  out.push('', `JSON: ${opts.out}; chart: ${chartFile}; whole run ${json.durationSeconds.toFixed(0)} s`);
  process.stdout.write(`${out.join('\n')}\n`);
}

function preflight(): void {
  for (const [cmd, args] of [
    ['docker-registry', ['--version']],
    ['skopeo', ['--version']],
    ['curl', ['--version']],
  ] as const) {
    try {
      execFileSync(cmd, [...args], { stdio: 'ignore' });
    } catch {
      throw new Error(`${cmd} is needed (apt-get install ${cmd === 'docker-registry' ? 'docker-registry' : cmd})`);
    }
  }
}

/** Compiles dist/ (unless --tsx / --no-build) so the bench measures the current source as users run it. */
async function prepareRegcache(opts: BenchOptions): Promise<void> {
  if (!opts.build) return;
  log('compiling regcache (tsc -p tsconfig.build.json)...');
  const tsc = join(REPO_ROOT, 'node_modules/typescript/bin/tsc');
  const r = await runChild(process.execPath, [tsc, '-p', join(REPO_ROOT, 'tsconfig.build.json')], { cwd: REPO_ROOT });
  if (r.code !== 0) {
    if (!existsSync(join(REPO_ROOT, 'dist/cli/main.js'))) throw new Error(`tsc failed:\n${r.stdout}${r.stderr}`);
    log(`WARNING: tsc reported errors (dist/ was still written):\n${r.stdout.split('\n').slice(0, 10).join('\n')}`);
  }
}

/** distribution v3 comes from the Go module proxy: scripts/tools.sh builds it (pinned) unless it is there. */
async function prepareV3(): Promise<void> {
  if (existsSync(REGISTRY_V3)) return;
  log('building distribution v3 (scripts/tools.sh registry-v3)...');
  const r = await runChild('bash', [join(REPO_ROOT, 'scripts/tools.sh'), 'registry-v3'], { cwd: REPO_ROOT });
  if (r.code !== 0 || !existsSync(REGISTRY_V3)) throw new Error(`building distribution v3 failed:\n${r.stdout}${r.stderr}`);
}

/** The profiles this run wrote (regcache writes one when it exits). */
async function summariseProfiles(dir: string, since: Date) {
  const names = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort();
  const files = names.filter((f) => statSync(join(dir, f)).mtime >= since);
  return Promise.all(files.map(async (f) => ({ file: join(dir, f), ...(await topFunctions(join(dir, f))) })));
}

try {
  await main();
} catch (e) {
  process.exitCode = 1;
  log(`bench failed: ${(e as Error).stack ?? e}`);
} finally {
  await teardown();
}
