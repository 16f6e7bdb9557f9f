import type { Logger } from 'pino';
import { RegistryError } from '../errors.js';
import { isValidName } from '../oci/names.js';
import type { UpstreamHandle } from '../proxy/index.js';

/** Where a request came from, for choosing the upstream. */
export interface RouteContext {
  /** Upstream bound to the listener that took the request (one-port-per-registry layout). */
  listenerUpstream?: string;
  /** Host header (without port). */
  host?: string;
  /** containerd's `ns` query parameter: the registry host the client wanted. */
  ns?: string;
}

export interface ResolvedRepo {
  upstream: UpstreamHandle;
  /** Repository name at the upstream (Docker Hub single names get `library/`). */
  repo: string;
}

function globToRegExp(glob: string): RegExp {
  const re = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${re}$`);
}

interface Route {
  handle: UpstreamHandle;
  allow: RegExp[];
  deny: RegExp[];
}

/**
 * Chooses the upstream for a repository name: listener binding, then containerd's `ns=`, then the
 * Host header, then a path prefix (`ghcr.io/owner/app` or an alias), else the default upstream.
 * Enforces each upstream's allow/deny list.
 *
 * `ns=` naming a registry no upstream stands for: with one upstream, served from it anyway (as
 * distribution does; the first such request is logged at info); with several, refused (NAME_UNKNOWN)
 * rather than silently sent to another registry, where the same name may be someone else's image.
 */
export class UpstreamRouter {
  private readonly routes: Route[];
  private readonly byName = new Map<string, Route>();
  private readonly byHost = new Map<string, Route>();
  private readonly prefixes: Array<{ prefix: string; route: Route }> = [];
  private nsMismatchLogged = false;

  constructor(
    upstreams: UpstreamHandle[],
    private readonly logger?: Logger,
  ) {
    if (upstreams.length === 0) throw new Error('at least one upstream is required');
    this.routes = upstreams.map((handle) => ({
      handle,
      allow: handle.config.allow.map(globToRegExp),
      deny: handle.config.deny.map(globToRegExp),
    }));
    for (const r of this.routes) {
      this.byName.set(r.handle.config.name, r);
      for (const h of r.handle.config.hosts) this.byHost.set(h.toLowerCase(), r);
      for (const p of r.handle.config.prefixes) this.prefixes.push({ prefix: p.replace(/\/+$/, ''), route: r });
    }
    // Longest prefix first so `ghcr.io/x` beats `ghcr.io`.
    this.prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  get upstreams(): UpstreamHandle[] {
    return this.routes.map((r) => r.handle);
  }

  get(name: string): UpstreamHandle | undefined {
    return this.byName.get(name)?.handle;
  }

  resolve(name: string, ctx: RouteContext = {}): ResolvedRepo {
    let route: Route | undefined;
    let rest = name;
    if (ctx.listenerUpstream) {
      route = this.byName.get(ctx.listenerUpstream);
    } else if (ctx.ns) {
      route = this.byHost.get(ctx.ns.toLowerCase()) ?? this.unknownNs(ctx.ns);
    } else if (ctx.host && this.byHost.has(ctx.host.toLowerCase())) {
      route = this.byHost.get(ctx.host.toLowerCase());
    } else {
      for (const { prefix, route: r } of this.prefixes) {
        if (name.startsWith(prefix + '/')) {
          route = r;
          rest = name.slice(prefix.length + 1);
          break;
        }
      }
    }
    route ??= this.routes[0]!;
    if (!isValidName(rest)) {
      throw new RegistryError('NAME_INVALID', 'invalid repository name', { detail: { name } });
    }
    const repo = route.handle.client.normalizeRepo(rest);
    if (!isValidName(repo)) throw new RegistryError('NAME_INVALID', 'invalid repository name', { detail: { name } });
    if (route.deny.some((re) => re.test(repo)) || (route.allow.length > 0 && !route.allow.some((re) => re.test(repo)))) {
      throw new RegistryError('DENIED', `repository ${repo} is not mirrored from ${route.handle.config.name}`);
    }
    return { upstream: route.handle, repo };
  }

  private unknownNs(ns: string): Route {
    if (this.routes.length === 1) {
      const only = this.routes[0]!;
      if (!this.nsMismatchLogged) {
        this.nsMismatchLogged = true;
        this.logger?.info(
          { ns, upstream: only.handle.config.name, hosts: only.handle.config.hosts },
          'a client asked for another registry (ns=); serving it from the only upstream, as distribution does ' +
            '(logged once; declare the registry in hosts, or dockerhub: true for a Docker Hub mirror)',
        );
      }
      return only;
    }
    const hint =
      ns.toLowerCase() === 'docker.io' || ns.toLowerCase().endsWith('.docker.io')
        ? 'set dockerhub: true on the upstream that mirrors Docker Hub (regcache.dockerhub for the proxy: upstream, regcache.upstreams[].dockerhub otherwise), or add'
        : 'add';
    throw new RegistryError(
      'NAME_UNKNOWN',
      `this mirror has no upstream for registry ${JSON.stringify(ns)} (containerd's ns=): ${hint} ${JSON.stringify(ns)} to ` +
        'the hosts of the upstream that serves it (regcache.hosts for the proxy: upstream, regcache.upstreams[].hosts otherwise)',
      { detail: { ns } },
    );
  }

  /** The name a client would use for a cached repository (with the upstream's prefix unless default). */
  publicName(upstreamName: string, repo: string): string | undefined {
    const route = this.byName.get(upstreamName);
    if (!route) return undefined;
    if (route === this.routes[0]) return repo;
    return `${route.handle.config.prefixes[0] ?? route.handle.config.name}/${repo}`;
  }
}
