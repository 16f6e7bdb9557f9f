/** Docker Hub: official images live under `library/` (`alpine` → `library/alpine`). */
export function normalizeRepo(repo: string, dockerHub: boolean): string {
  return dockerHub && !repo.includes('/') ? `library/${repo}` : repo;
}
