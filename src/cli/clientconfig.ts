import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import {
  ClientConfigError,
  clientConfigAdvice,
  generateClientConfig,
  renderContents,
  type ClientConfigOptions,
  type ClientKind,
} from '../clientconfig/index.js';
import { writeClientFiles } from '../clientconfig/write.js';
import { loadConfig } from '../config/load.js';

export interface ClientConfigCliOptions {
  mirror: string;
  upstream: string[];
  insecure: boolean;
  ca?: string;
  rootless?: boolean;
  dialTimeout?: string;
  /** The server's config.yml: checks that the default upstream stands for Docker Hub. */
  config?: string;
  /** true = write to /, a string = write under that root. */
  write?: boolean | string;
}

/** `--upstream a --upstream b,c` → [a, b, c] (never variadic, so it cannot swallow the client argument). */
const err = (s: string): void => void process.stderr.write(s + '\n');

/**
 * stdout carries only file contents (so `> daemon.json` is valid JSON); the `# path` headers, notes,
 * warnings and the restart command go to stderr. With --write the files are installed instead.
 */
export async function runClientConfig(client: string, opts: ClientConfigCliOptions): Promise<void> {
  const home = homedir();
  const input: ClientConfigOptions = {
    mirror: opts.mirror,
    upstreams: opts.upstream.length > 0 ? opts.upstream : ['docker.io'],
    insecure: opts.insecure,
    rootless: opts.rootless === true,
    home,
    ...(opts.dialTimeout ? { dialTimeout: opts.dialTimeout } : {}),
  };
  if (opts.ca) {
    let pem: string;
    try {
      pem = await readFile(opts.ca, 'utf8');
    } catch (e) {
      throw new ClientConfigError(`--ca ${opts.ca}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
    }
    input.ca = { pem, source: opts.ca };
  }
  if (opts.config) {
    const { config } = await loadConfig({ file: opts.config });
    const def = config.upstreams[0];
    if (def) input.serverDefault = { name: def.name, dockerHub: def.dockerHub };
  }
  const files = generateClientConfig(client as ClientKind, input);
  const advice = clientConfigAdvice(client as ClientKind, input);

  if (opts.write !== undefined && opts.write !== false) {
    const root = typeof opts.write === 'string' ? opts.write : undefined;
    const written = await writeClientFiles(files, { root, home });
    for (const w of written) {
      const how = w.unchanged ? 'unchanged' : w.merged ? 'merged into' : 'wrote';
      err(`${how} ${w.path}${w.backup ? ` (previous file saved as ${w.backup})` : ''}`);
    }
    for (const f of files) if (f.note) err(f.note.replace(/^/gm, '  '));
    for (const w of advice.warnings) err(`warning: ${w}`);
    err(`apply: ${advice.restart}`);
    return;
  }

  const printed = files.filter((f) => f.copyOf === undefined);
  for (const f of files) {
    if (f.copyOf !== undefined) err(`# install the CA: sudo install -D -m 0644 ${f.copyOf} ${f.path.replace(/^~\//, '$HOME/')}`);
    else err(`# ${f.path}${printed.length > 1 ? ` (file ${printed.indexOf(f) + 1} of ${printed.length} on stdout)` : ''}`);
    if (f.note) err(f.note.split('\n').map((l) => `#   ${l}`.trimEnd()).join('\n'));
  }
  if (printed.length > 1) err(`# ${printed.length} files follow one after another on stdout; --write installs each where it belongs.`);
  for (const w of advice.warnings) err(`warning: ${w}`);
  err(`# apply: ${advice.restart}`);
  process.stdout.write(renderContents(files));
}
