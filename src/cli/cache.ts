import type { Command } from 'commander';
import { ADMIN_TOKENFILE_KEY, AdminTokenError, readAdminToken } from '../config/admintoken.js';
import { parseDuration } from '../config/duration.js';
import { loadConfig } from '../config/load.js';
import { parseSize } from '../config/size.js';
import type { Config } from '../config/types.js';
import { CacheAdmin, type CacheListing, type RemovalResult } from '../lifecycle/admin.js';
import type { CacheOps } from '../lifecycle/adminclient.js';
import type { BundleContext } from '../lifecycle/bundle.js';
import { registerBundleCommands } from './bundle.js';
import { ttlResolver } from '../lifecycle/sweeper.js';
import { warmImage, type WarmProgress } from '../lifecycle/warm.js';
import { lockHolder } from '../metadata/lock.js';
import { metadataDir, openMetadata } from '../metadata/open.js';
import { reconcile } from '../metadata/reconcile.js';
import { parseAddr } from '../net/listen.js';

interface Common {
  config?: string;
  admin?: string;
  adminTokenFile?: string;
}

const out = (s: string): void => void process.stdout.write(s + '\n');

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

export function ago(ms: number): string {
  if (!ms) return '-';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  if (s < 172_800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86_400)}d ago`;
}

/** `30d`, `2w`, or a Go duration (`720h`, `90m`). */
export function parseAge(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(d|w)$/.exec(v.trim());
  const ms = m ? Number(m[1]) * (m[2] === 'w' ? 7 : 1) * 86_400_000 : parseDuration(v);
  if (ms === undefined) throw new Error(`invalid duration ${JSON.stringify(v)} (use e.g. 30d, 2w, 72h)`);
  return ms;
}

function parseBytes(v: string): number {
  const b = parseSize(v);
  if (b === undefined) throw new Error(`invalid size ${JSON.stringify(v)} (use e.g. 20GiB, 500MB)`);
  return b;
}

/** `:5001` → `http://127.0.0.1:5001`; wildcard hosts become loopback. */
export function localUrl(addr: string, scheme = 'http'): string {
  const { host, port } = parseAddr(addr);
  const h = !host || host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
  return `${scheme}://${h}:${port}`;
}

/** The admin token for a running server: --admin-token-file, else the config's regcache.admin.tokenfile, else none. */
function adminToken(opts: Common, config: Config): () => Promise<string | undefined> {
  const [file, source] = opts.adminTokenFile
    ? [opts.adminTokenFile, '--admin-token-file']
    : [config.regcache.admin?.tokenfile, ADMIN_TOKENFILE_KEY];
  return async () => {
    if (file === undefined) return undefined;
    try {
      return await readAdminToken(file);
    } catch (e) {
      if (e instanceof AdminTokenError) throw new Error(`admin token (${source}): ${e.message}`);
      throw e;
    }
  };
}

/**
 * Where the cache commands act. A running server owns its cache (metadata lock): then they go through its admin
 * API on http.debug.addr (or --admin). Otherwise they open the storage directly, holding the lock meanwhile.
 */
export async function withCache<T>(opts: Common, fn: (ops: CacheOps, config: Config) => Promise<T>): Promise<T> {
  // The token file is read only when a state-changing call needs it (adminToken), not to list or work offline.
  const { config } = await loadConfig({ file: opts.config, checkFiles: false });
  const token = adminToken(opts, config);
  // Loaded on use, like storage below: `regcache serve` registers these commands but never runs them.
  const { AdminClient } = await import('../lifecycle/adminclient.js');
  if (opts.admin) return fn(new AdminClient(opts.admin.replace(/\/+$/, ''), token), config);
  const dir = metadataDir(config.storage);
  const holder = dir ? await lockHolder(dir) : undefined;
  if (holder !== undefined) {
    if (!config.http.debug) {
      throw new Error(
        `regcache (pid ${holder.pid}) is running on this storage; set http.debug.addr in its config to manage its cache through the admin API, or pass --admin URL`,
      );
    }
    return fn(new AdminClient(localUrl(config.http.debug.addr), token), config);
  }
  if (config.storage.driver === 'inmemory') throw new Error('storage is inmemory: there is no cache to manage outside the server');
  const { openStorage } = await import('../storage/index.js'); // only here: drivers are heavy to load
  const storage = await openStorage(config.storage);
  const meta = await openMetadata(dir);
  try {
    if (!meta.owner) throw new Error(`regcache (pid ${meta.heldBy?.pid}) started meanwhile; try again`);
    await reconcile(meta.index, storage);
    const admin = new CacheAdmin({
      index: meta.index,
      storage,
      ttlOf: ttlResolver(config),
      maxSizeBytes: config.regcache.cache.maxsizeBytes,
      lowWatermark: config.regcache.cache.lowwatermark,
    });
    const { importBundle, planExport, writeBundle } = await import('../lifecycle/bundle.js');
    const bundles: BundleContext = { index: meta.index, storage, upstreams: config.upstreams.map((u) => u.name) };
    return await fn(
      {
        list: (repo) => admin.list(repo),
        remove: (ref, o) => admin.remove(ref, o),
        prune: (o) => admin.prune(o),
        verify: (o) => admin.verify(o),
        exportBundle: async (images, o, dest) => writeBundle(bundles, await planExport(bundles, images, o), dest),
        importBundle: (input, o) => importBundle(bundles, input, o),
      },
      config,
    );
  } finally {
    await meta.close();
    await storage.close();
  }
}

function printListing(l: CacheListing, detail: boolean, json: boolean): void {
  if (json) return out(JSON.stringify(l, null, 2));
  const cap = l.maxSizeBytes !== undefined ? ` of ${formatBytes(l.maxSizeBytes)} max` : '';
  out(`cache: ${formatBytes(l.totalBytes)}${cap} in ${l.blobs} blobs, ${l.repos.length} repositories`);
  if (l.repos.length === 0) return;
  const rows = l.repos.map((r) => [`${r.upstream}/${r.repo}`, String(r.tags.length), formatBytes(r.bytes), String(r.blobs), ago(r.lastAccess)]);
  const head = ['REPOSITORY', 'TAGS', 'SIZE', 'BLOBS', 'LAST ACCESS'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cols: string[]) => cols.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  out(line(head));
  for (const [i, r] of rows.entries()) {
    out(line(r));
    if (detail) for (const t of l.repos[i]!.tags) out(`  :${t.tag}  ${t.digest}  validated ${ago(t.validatedAt)}`);
  }
}

function printRemoval(r: RemovalResult, json: boolean): void {
  if (json) return out(JSON.stringify(r, null, 2));
  const verb = r.dryRun ? 'would remove' : 'removed';
  for (const p of r.planned) {
    const tags = p.tags.length ? ` (${p.tags.join(', ')})` : '';
    out(`${verb} ${p.unit}${tags}: ${p.manifests} manifests, ${p.blobs} blobs, ${formatBytes(p.bytes)} [${p.reason}]`);
  }
  const skipped = r.done?.skipped ? `, ${r.done.skipped} skipped (in use)` : '';
  out(`${r.dryRun ? 'would free' : 'freed'} ${formatBytes(r.bytesBefore - r.bytesAfter)}: cache ${formatBytes(r.bytesBefore)} → ${formatBytes(r.bytesAfter)}${skipped}`);
}

/** A one-line progress bar on a terminal; a line per finished image otherwise. */
function progressPrinter(): { update(p: WarmProgress): void; done(p: WarmProgress): void } {
  const tty = process.stderr.isTTY;
  let last = 0;
  const render = (p: WarmProgress): string => {
    const frac = p.bytesTotal ? Math.min(1, p.bytesDone / p.bytesTotal) : p.blobsTotal ? p.blobsDone / p.blobsTotal : 1;
    const width = 24;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    return `${p.image} [${bar}] ${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)}  layers ${p.blobsDone}/${p.blobsTotal}`;
  };
  return {
    update(p) {
      if (!tty) return;
      const now = Date.now();
      if (now - last < 100 && p.blobsDone < p.blobsTotal) return;
      last = now;
      process.stderr.write(`\r\x1b[2K${render(p)}`);
    },
    done(p) {
      process.stderr.write(tty ? `\r\x1b[2K${render(p)}\n` : `${render(p)}\n`);
    },
  };
}

export function registerCacheCommands(program: Command): void {
  const cache = program
    .command('cache')
    .description('inspect and maintain the cache (works on a stopped cache directly, on a running server via its admin API)');
  const common = (c: Command): Command =>
    c
      .option('-c, --config <file>', 'the config the server runs with (storage, http.debug.addr)')
      .option('--admin <url>', "a running server's debug listener, e.g. http://127.0.0.1:5001 (default: from the config)")
      .option('--admin-token-file <file>', `file holding the server's admin token (default: ${ADMIN_TOKENFILE_KEY} of the config)`);

  common(cache.command('ls').description('repositories, tags, sizes, last access').argument('[repo]', 'only this repository, with its tags'))
    .option('--json', 'machine-readable output', false)
    .action(async (repo: string | undefined, opts: Common & { json: boolean }) =>
      withCache(opts, async (ops) => printListing(await ops.list(repo), repo !== undefined, opts.json)),
    );

  common(cache.command('rm').description('remove a repository, a tag (and its image unless another tag keeps it) or a digest'))
    .argument('<ref...>', 'repo, repo:tag or repo@digest (e.g. library/alpine:3.19, docker.io/library/alpine)')
    .option('--dry-run', 'only show what would be removed', false)
    .option('--json', 'machine-readable output', false)
    .action(async (refs: string[], opts: Common & { dryRun: boolean; json: boolean }) =>
      withCache(opts, async (ops) => {
        for (const ref of refs) {
          const r = await ops.remove(ref, { dryRun: opts.dryRun });
          if (r.planned.length === 0) throw new Error(`nothing cached matches ${ref}`);
          printRemoval(r, opts.json);
        }
      }),
    );

  common(cache.command('prune').description('remove old or least recently used content (no options: apply proxy.ttl and regcache.cache.maxsize now)'))
    .option('--older-than <age>', 'images not pulled for this long, e.g. 30d, 2w, 72h')
    .option('--max-size <size>', 'least recently used images until the cache fits, e.g. 20GiB')
    .option('--dry-run', 'only show what would be removed', false)
    .option('--json', 'machine-readable output', false)
    .action(async (opts: Common & { olderThan?: string; maxSize?: string; dryRun: boolean; json: boolean }) => {
      const olderThanMs = opts.olderThan !== undefined ? parseAge(opts.olderThan) : undefined;
      const maxSizeBytes = opts.maxSize !== undefined ? parseBytes(opts.maxSize) : undefined;
      await withCache(opts, async (ops) => printRemoval(await ops.prune({ olderThanMs, maxSizeBytes, dryRun: opts.dryRun }), opts.json));
    });

  common(cache.command('verify').description('re-hash every blob; report and remove corrupt ones (exit status 1 when any were found)'))
    .option('--dry-run', 'report only, remove nothing', false)
    .option('--json', 'machine-readable output', false)
    .action(async (opts: Common & { dryRun: boolean; json: boolean }) =>
      withCache(opts, async (ops) => {
        const r = await ops.verify({ dryRun: opts.dryRun });
        if (opts.json) out(JSON.stringify(r, null, 2));
        else {
          out(`checked ${r.checked} blobs, ${formatBytes(r.bytes)}`);
          for (const c of r.corrupt) out(`corrupt ${c.digest} (content hashes to ${c.actual})${opts.dryRun ? '' : ': removed'}`);
          if (r.corrupt.length === 0) out('no corrupt blobs');
        }
        if (r.corrupt.length > 0) process.exitCode = 1;
      }),
    );

  registerBundleCommands(cache, common, withCache);

  cache
    .command('warm')
    .description('pre-pull images through a running mirror (every platform unless --platform)')
    .argument('<image...>', 'images as you would pull them from the mirror, e.g. library/alpine:3.19, ghcr.io/owner/app:1')
    .option('-c, --config <file>', 'the config the mirror runs with (to find http.addr)')
    .option('--mirror <url>', 'mirror URL (default: http.addr of the config, e.g. http://127.0.0.1:5000)')
    .option('--platform <os/arch[/variant]>', 'only this platform of multi-arch images, e.g. linux/arm64')
    .option('--creds <user:password>', 'credentials when the mirror has auth.htpasswd')
    .option('--json', 'machine-readable output: one JSON object per image when it is done', false)
    .action(async (images: string[], opts: { config?: string; mirror?: string; platform?: string; creds?: string; json: boolean }) => {
      let mirror = opts.mirror;
      if (!mirror) {
        const { config } = await loadConfig({ file: opts.config });
        mirror = localUrl(config.http.addr, config.http.tls ? 'https' : 'http');
      }
      const progress = opts.json ? { update() {}, done: (p: WarmProgress) => out(JSON.stringify(p)) } : progressPrinter();
      for (const image of images) {
        const p = await warmImage(image, { mirror, platform: opts.platform, creds: opts.creds, onProgress: (x) => progress.update(x) });
        progress.done(p);
      }
    });
}
