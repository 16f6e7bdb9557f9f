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
  /** A private CA (PEM) that signed the mirror's certificate; each client is told to trust it for the mirror only. */
  ca?: { pem: string; source?: string };
  /** podman: the rootless user's files (~/.config/containers/...) instead of /etc/containers. */
  rootless?: boolean;
  /** Home directory for `~` and the kind host directory (default: the current user's). */
  home?: string;
  /** containerd/kind: how long to wait for a connection to the mirror before falling back (default 3s). */
  dialTimeout?: string;
  /**
   * The server's default upstream, when known (`--config`): docker, podman and CRI-O send Docker Hub
   * images without a prefix, so that upstream must stand for Docker Hub.
   */
  serverDefault?: { name: string; dockerHub: boolean };
}

export interface GeneratedFile {
  /** Where the file goes on the client machine (`~/` = the user's home). */
  path: string;
  content: string;
  format: 'json' | 'toml' | 'yaml' | 'pem' | 'text';
  /** What to do after writing it (merge, restart, caveats). */
  note?: string;
  /** A copy of this user-supplied file (the CA): not printed on stdout, installed by --write or by hand. */
  copyOf?: string;
  /** `--write` merges into an existing file of this kind instead of replacing it. */
  merge?: 'json-lists';
}

/** Everything `client-config` tells the user besides the file contents. */
export interface ClientAdvice {
  /** Mistakes in the set-up that would make pulls go to the wrong place. */
  warnings: string[];
  /** The command that makes the client read the files, or a statement that none is needed. */
  restart: string;
}
