/**
 * `regcache client-config`: the files a client needs to pull through a regcache mirror. Pure: returns
 * file paths and contents; the CLI prints or writes them.
 */
import type { ClientAdvice, ClientConfigOptions, ClientKind, GeneratedFile } from './types.js';
import { ClientConfigError, DOCKER_HUB, type NormalizedOptions, normalizeOptions } from './options.js';
import { dockerFiles } from './docker.js';
import { containerdFiles } from './containerd.js';
import { buildkitFiles, earthlyFiles } from './buildkit.js';
import { crioFiles, podmanFiles } from './registriesconf.js';
import { k3sFiles } from './k3s.js';
import { kindFiles } from './kind.js';

export type { ClientAdvice, ClientConfigOptions, ClientKind, GeneratedFile } from './types.js';
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

const RESTART: Record<ClientKind, string> = {
  docker: 'sudo systemctl restart docker',
  containerd: 'none for hosts.toml edits; after setting config_path once: sudo systemctl restart containerd',
  buildkit: 'standalone buildkitd: sudo systemctl restart buildkit; buildx: docker buildx rm regcache, then docker buildx create ... again',
  earthly: 'docker rm -f earthly-buildkitd (the next earthly run starts it with the new settings)',
  podman: 'none: podman, buildah and skopeo read the files on every run',
  k3s: 'sudo systemctl restart k3s (agents: sudo systemctl restart k3s-agent)',
  kind: 'kind create cluster --config kind-regcache.yaml (existing clusters: recreate them)',
  'cri-o': 'sudo systemctl reload crio',
};

/** Clients that send Docker Hub images to the mirror without a prefix: the mirror's default upstream answers them. */
const UNPREFIXED_HUB: ReadonlySet<ClientKind> = new Set<ClientKind>(['docker', 'podman', 'cri-o']);

/** Warnings about the set-up (never part of a file) and the command that applies the files. */
export function clientConfigAdvice(kind: ClientKind, opts: ClientConfigOptions): ClientAdvice {
  if (typeof kind !== 'string' || !isClientKind(kind)) {
    throw new ClientConfigError(`unknown client kind "${String(kind)}"; expected one of: ${CLIENT_KINDS.join(', ')}`);
  }
  const o = normalizeOptions(opts);
  const warnings: string[] = [];
  if (UNPREFIXED_HUB.has(kind) && o.upstreams.includes(DOCKER_HUB)) {
    if (o.serverDefault === undefined) {
      warnings.push(
        `${kind} asks the mirror for Docker Hub images without a prefix (/v2/library/alpine/...), so the mirror's DEFAULT upstream answers them: ` +
          'it must be Docker Hub (or declare dockerhub: true). Pass --config <server config.yml> to check.',
      );
    } else if (!o.serverDefault.dockerHub) {
      warnings.push(
        `the mirror's default upstream "${o.serverDefault.name}" does not stand for Docker Hub, but ${kind} sends docker.io images ` +
          `to it without a prefix: "${o.serverDefault.name}" would answer pulls of docker.io/... . Make Docker Hub the default upstream ` +
          '(proxy: or the first regcache.upstreams entry), or set dockerhub: true on the default upstream if it mirrors Docker Hub, ' +
          'or leave docker.io out of --upstream.',
      );
    }
  }
  return { warnings, restart: RESTART[kind] };
}

/** The text for stdout: only the files' contents (CA copies excluded), so `> daemon.json` is the file. */
export function renderContents(files: GeneratedFile[]): string {
  return files
    .filter((f) => f.copyOf === undefined)
    .map((f) => (f.content.endsWith('\n') ? f.content : f.content + '\n'))
    .join('');
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
