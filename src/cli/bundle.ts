import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import type { Command } from 'commander';
import type { ImportReport } from '../lifecycle/bundle.js';
import type { CacheOps } from '../lifecycle/adminclient.js';

type WithCache = <T>(opts: CommonOpts, fn: (ops: CacheOps) => Promise<T>) => Promise<T>;
interface CommonOpts {
  config?: string;
  admin?: string;
  adminTokenFile?: string;
}

const out = (s: string): void => void process.stdout.write(s + '\n');

/** `regcache cache export` and `regcache cache import` (air-gapped or pre-seeded mirrors, docs/operations.md). */
export function registerBundleCommands(cache: Command, common: (c: Command) => Command, withCache: WithCache): void {
  common(cache.command('export').description('write cached images (with their tags) as an OCI image layout tarball'))
    .argument('<image...>', 'repo:tag, repo@digest or repo (every cached tag), e.g. library/alpine:3.20')
    .requiredOption('-o, --output <file>', 'the tarball to write (- for stdout)')
    .option('--platform <os/arch[/variant]>', 'only this platform of multi-arch images (default: every cached platform)')
    .action(async (images: string[], opts: CommonOpts & { output: string; platform?: string }) => {
      await withCache(opts, async (ops) => {
        if (opts.output === '-') return ops.exportBundle(images, { platform: opts.platform }, process.stdout);
        // Written beside the target and renamed at the end: a failed export leaves no half a bundle behind.
        const partial = `${opts.output}.partial-${process.pid}`;
        try {
          await ops.exportBundle(images, { platform: opts.platform }, createWriteStream(partial, { mode: 0o644 }));
          await rename(partial, opts.output);
        } catch (e) {
          await rm(partial, { force: true });
          throw e;
        }
        process.stderr.write(`wrote ${opts.output} (${(await stat(opts.output)).size} bytes)\n`);
      });
    });

  common(cache.command('import').description('load an OCI image layout tarball into the cache: verified, idempotent, served as if pulled'))
    .argument('<file>', 'a tarball written by regcache cache export (or another OCI image layout tar; - for stdin)')
    .option('--upstream <name>', "the upstream to file the images under (default: the bundle's, or the only one configured)")
    .option('--json', 'machine-readable output', false)
    .action(async (file: string, opts: CommonOpts & { upstream?: string; json: boolean }) => {
      if (file !== '-') {
        try {
          await stat(file);
        } catch (e) {
          throw new Error(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
      }
      await withCache(opts, async (ops) => {
        const input = file === '-' ? process.stdin : createReadStream(file);
        const r = await ops.importBundle(input, { upstream: opts.upstream });
        printImport(r, opts.json);
      });
    });
}

function printImport(r: ImportReport, json: boolean): void {
  if (json) return out(JSON.stringify(r, null, 2));
  for (const i of r.images) out(`imported ${i.upstream}/${i.repo}${i.tag ? `:${i.tag}` : ''}@${i.digest}`);
  out(`${r.manifests} manifests, ${r.blobsAdded} blobs added (${r.bytesAdded} bytes), ${r.blobsPresent} already cached, ${r.tagsSet} tags set`);
}
