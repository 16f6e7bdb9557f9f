import type { GeneratedFile } from './types.js';
import { DOCKER_HUB, type NormalizedOptions, pathPrefixed } from './options.js';

export function dockerFiles(o: NormalizedOptions): GeneratedFile[] {
  const daemon: Record<string, string[]> = {};
  if (o.upstreams.includes(DOCKER_HUB)) daemon['registry-mirrors'] = [o.mirror.origin];
  // insecure-registries covers both plain http and unverifiable https for that host:port.
  if (o.untrusted) daemon['insecure-registries'] = [o.mirror.host];
  const others = o.upstreams.filter((u) => u !== DOCKER_HUB);
  const note = [
    'Merge these keys into an existing /etc/docker/daemon.json (--write does), then: sudo systemctl restart docker',
    'Check with: docker info (look for "Registry Mirrors").',
    'dockerd uses registry-mirrors only for Docker Hub images and falls back to Docker Hub when the mirror fails.',
  ];
  if (others.length > 0) {
    note.push(
      `dockerd cannot mirror ${others.join(', ')}: pull those through the mirror's path prefix instead, e.g.`,
      ...others.map((u) => `  docker pull ${pathPrefixed(o.mirror, u)}/OWNER/IMAGE:TAG   (instead of ${u}/OWNER/IMAGE:TAG)`),
    );
  }
  const files: GeneratedFile[] = [
    {
      path: '/etc/docker/daemon.json',
      content: JSON.stringify(daemon, null, 2) + '\n',
      format: 'json',
      note: note.join('\n'),
      merge: 'json-lists',
    },
  ];
  if (o.ca) {
    // dockerd reads certs.d/<host:port>/ca.crt on every connection: no restart for the CA itself.
    files.push({
      path: `/etc/docker/certs.d/${o.mirror.host}/ca.crt`,
      content: o.ca.pem,
      format: 'pem',
      copyOf: o.ca.source,
      note: `dockerd trusts ${o.ca.source} for ${o.mirror.host} only (read on each connection, no restart needed for it).`,
    });
  }
  return files;
}
