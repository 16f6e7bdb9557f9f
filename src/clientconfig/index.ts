/**
 * `regcache client-config`: the files a client needs to pull through a regcache mirror. Pure: returns
 * file paths and contents; the CLI prints or writes them.
 */
import type { ClientConfigOptions, ClientKind, GeneratedFile } from './types.js';
import { ClientConfigError, type NormalizedOptions, normalizeOptions } from './options.js';
import { dockerFiles } from './docker.js';
import { containerdFiles } from './containerd.js';
import { buildkitFiles, earthlyFiles } from './buildkit.js';
import { crioFiles, podmanFiles } from './registriesconf.js';
import { k3sFiles } from './k3s.js';
import { kindFiles } from './kind.js';

export type { ClientConfigOptions, ClientKind, GeneratedFile } from './types.js';
export { ClientConfigError } from './options.js';

const GENERATORS: Record<ClientKind, (o: NormalizedOptions) => GeneratedFile[]> = {
  docker: dockerFiles,
  containerd: containerdFiles,
  buildkit: buildkitFiles,
  earthly: earthlyFiles,
  podman: podmanFiles,
  k3s: k3sFiles,
  kind: kindFiles,
  'cri-o': crioFiles,
};

export const CLIENT_KINDS = Object.keys(GENERATORS) as ClientKind[];

export function isClientKind(s: string): s is ClientKind {
  return Object.prototype.hasOwnProperty.call(GENERATORS, s);
}

/** Throws ClientConfigError (message fit to print as is) for an unknown kind or bad options. */
export function generateClientConfig(kind: ClientKind, opts: ClientConfigOptions): GeneratedFile[] {
  if (typeof kind !== 'string' || !isClientKind(kind)) {
    throw new ClientConfigError(`unknown client kind "${String(kind)}"; expected one of: ${CLIENT_KINDS.join(', ')}`);
  }
  return GENERATORS[kind](normalizeOptions(opts));
}

/** `# <path>` then the content for each file, then its note as `# ` comment lines. */
export function renderForTerminal(files: GeneratedFile[]): string {
  return files
    .map((f) => {
      let block = `# ${f.path}\n${f.content.endsWith('\n') ? f.content : f.content + '\n'}`;
      if (f.note) block += f.note.split('\n').map((l) => `# ${l}`.trimEnd()).join('\n') + '\n';
      return block;
    })
    .join('\n');
}
