// Command-line options of `npm run bench` and the workload sizes they select.
import { parseArgs } from 'node:util';

/** regcache and the two anchors: distribution v3 (`registry:3`, built from the Go module proxy) and Debian's 2.8. */
export const SERVER_NAMES = ['regcache', 'distribution-v3', 'distribution'] as const;
export type ServerName = (typeof SERVER_NAMES)[number];

export interface BenchOptions {
  quick: boolean;
  /** servers to run, in this order */
  servers: ServerName[];
  /** how regcache is started: compiled dist/ (default) or src/ through tsx */
  regcacheFrom: 'dist' | 'tsx';
  /** compile dist/ before the run (default when regcacheFrom is dist) */
  build: boolean;
  /** where temp dirs go (fixtures, upstream and server storage, pulled copies) */
  tmpDir?: string;
  /** write a V8 CPU profile of regcache (node --cpu-prof) into this dir */
  cpuProfDir?: string;
  /** regcache.workers for regcache (default: regcache's own default) */
  workers?: number;
  out: string;
}

export interface Sizes {
  /** layer sizes of the 5-layer image (bytes) */
  fiveLayers: number[];
  /** cold pulls, one fresh image each; the first image is also the warm one */
  coldRepeats: number;
  warmRepeats: number;
  concurrentWarmClients: number;
  concurrentColdClients: number;
  smallImages: number;
  smallBase: number;
  smallTop: number;
  smallConcurrency: number;
  bigBlob: number;
  bigRepeats: number;
  bigConcurrentClients: number;
  manifestConnections: number;
  manifestSeconds: number;
  manifestRepeats: number;
  /** clients that read a blob slowly, all at once */
  slowClients: number;
  /** size of the blob they read */
  slowBlob: number;
  /** how fast each slow client reads (bytes/s) */
  slowClientRate: number;
}

const MB = 1_000_000;

export function sizesFor(quick: boolean): Sizes {
  const common = {
    warmRepeats: 3,
    concurrentWarmClients: 16,
    concurrentColdClients: 8,
    smallImages: 20,
    smallConcurrency: 4,
    bigConcurrentClients: 8,
    manifestConnections: 32,
  };
  return quick
    ? {
        ...common,
        fiveLayers: [6, 4, 2.5, 1.5, 1].map((n) => n * MB),
        coldRepeats: 1,
        smallBase: 2 * MB,
        smallTop: 100_000,
        bigBlob: 128 * 1024 * 1024,
        bigRepeats: 1,
        manifestSeconds: 2,
        manifestRepeats: 1,
        slowClients: 100,
        slowBlob: 16 * 1024 * 1024,
        slowClientRate: 8 * 1024 * 1024,
      }
    : {
        ...common,
        fiveLayers: [60, 40, 25, 15, 10].map((n) => n * MB),
        coldRepeats: 3,
        smallBase: 20 * MB,
        smallTop: 1 * MB,
        bigBlob: 1024 * 1024 * 1024,
        bigRepeats: 5, // ~1 s each and sensitive to other load on the machine: a few more samples
        manifestSeconds: 3,
        manifestRepeats: 3,
        slowClients: 1000,
        slowBlob: 64 * 1024 * 1024,
        // 1,000 clients at 1 MiB/s: about a minute each, about 1 GB/s together
        slowClientRate: 1024 * 1024,
      };
}

const USAGE = `usage: npm run bench -- [--quick] [--only regcache|distribution-v3|distribution] [--tsx] [--no-build]
                          [--tmp DIR] [--cpu-prof DIR] [--out FILE]
  --quick      small sizes, one repetition: a smoke run of a minute or two
  --only X     run one server only (no ratios): regcache, distribution-v3 or distribution
  --tsx        run regcache from src/ through tsx instead of compiled dist/
  --no-build   do not compile dist/ first (use it as it is)
  --tmp DIR    put temp data (about 5 GB at full size) under DIR instead of the OS temp dir
  --cpu-prof D write regcache's V8 CPU profile (node --cpu-prof) into D
  --workers N  run regcache with regcache.workers: N (server processes on one port)
  --out FILE   JSON results (default bench/results/latest.json)`;

export function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      tsx: { type: 'boolean', default: false },
      'no-build': { type: 'boolean', default: false },
      tmp: { type: 'string' },
      'cpu-prof': { type: 'string' },
      workers: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  if (values.only !== undefined && !(SERVER_NAMES as readonly string[]).includes(values.only)) {
    throw new Error(`--only must be one of ${SERVER_NAMES.join(', ')}, not ${values.only}\n${USAGE}`);
  }
  const regcacheFrom = values.tsx ? 'tsx' : 'dist';
  const workers = values.workers === undefined ? undefined : Number(values.workers);
  if (workers !== undefined && !(Number.isInteger(workers) && workers >= 1)) throw new Error(`--workers must be a number of processes, not ${values.workers}\n${USAGE}`);
  return {
    quick: values.quick,
    servers: values.only ? [values.only as ServerName] : [...SERVER_NAMES],
    regcacheFrom,
    build: regcacheFrom === 'dist' && !values['no-build'],
    tmpDir: values.tmp,
    cpuProfDir: values['cpu-prof'],
    workers,
    out: values.out ?? new URL('./results/latest.json', import.meta.url).pathname,
  };
}
