/** Docker Hub quirks. */
const DOCKER_HUB_HOSTS = new Set(['registry-1.docker.io', 'docker.io', 'index.docker.io', 'registry.hub.docker.com']);

/** Docker Hub's token service; trusted with credentials when the upstream is Docker Hub itself. */
export const DOCKER_HUB_AUTH_HOST = 'auth.docker.io';

export function isDockerHubHost(hostname: string): boolean {
  return DOCKER_HUB_HOSTS.has(hostname.toLowerCase());
}

/** Official images live under `library/` on Docker Hub: `alpine` → `library/alpine`. */
export function normalizeRepo(repo: string, dockerHub: boolean): string {
  return dockerHub && !repo.includes('/') ? `library/${repo}` : repo;
}
