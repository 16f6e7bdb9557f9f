export type ClientKind = 'docker' | 'containerd' | 'buildkit' | 'earthly' | 'podman' | 'k3s' | 'kind' | 'cri-o';

export interface ClientConfigOptions {
  /** Base URL of the mirror, scheme required: https://mirror.example.com or http://10.0.0.5:5000. */
  mirror: string;
  /**
   * Registry hosts to route through the mirror; default ['docker.io'].
   * Clients built on containerd's resolver (containerd, k3s, kind, BuildKit, Earthly) tell the mirror
   * the upstream with `?ns=<host>`; the others (podman, CRI-O, docker) address a non-Docker-Hub
   * upstream through the path prefix `<mirror>/<host>/...`.
   */
  upstreams?: string[];
  /** https mirror with a certificate the client cannot verify: skip verification. */
  insecure?: boolean;
}

export interface GeneratedFile {
  /** Where the file goes on the client machine. */
  path: string;
  content: string;
  format: 'json' | 'toml' | 'yaml' | 'text';
  /** What to do after writing it (merge, restart, caveats). */
  note?: string;
}
