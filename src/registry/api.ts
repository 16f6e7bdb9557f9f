import type { Readable } from 'node:stream';
import { RegistryError } from '../errors.js';
import { isDigest } from '../oci/digest.js';
import { isValidTag } from '../oci/names.js';
import type { PullThroughCache } from '../proxy/index.js';
import type { CacheResult } from '../seams.js';
import { parseRange } from './range.js';
import { parseRoute } from './routes.js';
import type { RouteContext, UpstreamRouter } from './router.js';

export interface ApiRequest {
  method: string;
  pathname: string;
  query: URLSearchParams;
  range?: string;
  ifNoneMatch?: string;
  ctx: RouteContext;
}

export interface ApiResponse {
  status: number;
  headers: Record<string, string>;
  /** Buffer, or a stream factory (opened only for GET, after the status is decided). */
  body?: Buffer | (() => Promise<Readable> | Readable);
  cache?: CacheResult;
  repo?: string;
  upstream?: string;
}

const API_HEADERS = { 'Docker-Distribution-API-Version': 'registry/2.0' };
const READ_METHODS = new Set(['GET', 'HEAD']);
const DEFAULT_PAGE = 1000;
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
/** A tag of the OCI 1.1 referrers tag schema: the referrers index of the manifest `sha256:<hex>`. */
const SCHEMA_TAG = /^sha256-[0-9a-f]{64}$/;

function json(status: number, value: unknown, extra: Record<string, string> = {}): ApiResponse {
  const body = Buffer.from(JSON.stringify(value));
  return {
    status,
    headers: { ...API_HEADERS, 'Content-Type': 'application/json', 'Content-Length': String(body.length), ...extra },
    body,
  };
}

/** `n`/`last` pagination over a sorted list, as distribution does, with a Link header for the next page. */
function paginate(items: string[], query: URLSearchParams, linkBase: string): { page: string[]; link?: string } {
  const nRaw = query.get('n');
  let n = DEFAULT_PAGE;
  if (nRaw !== null) {
    if (!/^\d{1,9}$/.test(nRaw)) throw new RegistryError('PAGINATION_NUMBER_INVALID', 'invalid number of results requested');
    n = Number(nRaw);
  }
  const last = query.get('last');
  const sorted = [...items].sort();
  const from = last ? sorted.findIndex((t) => t > last) : 0;
  const rest = from < 0 ? [] : sorted.slice(from);
  const page = rest.slice(0, n);
  if (rest.length > n && page.length > 0) {
    const next = new URLSearchParams({ n: String(n), last: page[page.length - 1]! });
    return { page, link: `<${linkBase}?${next.toString()}>; rel="next"` };
  }
  return { page };
}

/** The read side of the OCI distribution API over the cache policy. */
export class RegistryApi {
  constructor(
    private readonly proxy: PullThroughCache,
    private readonly router: UpstreamRouter,
  ) {}

  async handle(req: ApiRequest): Promise<ApiResponse | undefined> {
    const route = parseRoute(req.pathname);
    if (!route) return undefined;
    if (!READ_METHODS.has(req.method)) {
      throw new RegistryError('UNSUPPORTED', 'this registry is a read-only pull-through cache', {
        headers: { Allow: 'GET, HEAD' },
      });
    }
    switch (route.kind) {
      case 'base':
        return json(200, {});
      case 'catalog':
        return this.catalog(req);
      case 'upload':
        throw new RegistryError('UNSUPPORTED', 'this registry is a read-only pull-through cache');
      case 'manifest':
        return this.manifest(req, route.name, route.reference);
      case 'blob':
        return this.blob(req, route.name, route.digest);
      case 'tags':
        return this.tagList(req, route.name);
      case 'referrers':
        return this.referrers(req, route.name, route.digest);
    }
  }

  private async manifest(req: ApiRequest, name: string, reference: string): Promise<ApiResponse> {
    if (!isDigest(reference) && !isValidTag(reference)) {
      if (reference.includes(':')) throw new RegistryError('DIGEST_INVALID', 'invalid digest', { detail: { reference } });
      throw new RegistryError('MANIFEST_INVALID', 'invalid tag', { detail: { reference } });
    }
    const { upstream, repo } = this.router.resolve(name, req.ctx);
    // The referrers tag schema (an upstream without the referrers API): what the upstream said about the tag is
    // noted, so that a tag it did not have is answered 404 again when it is down (clients read that as "no
    // referrers"; a 503 makes `oras discover` fail on every artifact without referrers).
    const schemaDigest = SCHEMA_TAG.test(reference) ? reference.replace('-', ':') : undefined;
    let m;
    try {
      m = await this.proxy.manifests.get(upstream.client, upstream.config.freshnessMs, repo, reference);
    } catch (e) {
      if (schemaDigest) {
        if (e instanceof RegistryError && e.status === 404) await this.proxy.referrers.noteSchemaTag(upstream.client, repo, schemaDigest, false);
        else if ((!(e instanceof RegistryError) || e.status >= 500) && (await this.proxy.referrers.schemaTagAbsent(upstream.client, repo, schemaDigest, e))) {
          throw new RegistryError('MANIFEST_UNKNOWN', `manifest unknown: upstream ${upstream.config.name} had no tag ${reference} when last asked (it is unreachable now)`, {
            detail: { tag: reference },
          });
        }
      }
      throw e;
    }
    if (schemaDigest && m.result !== 'hit' && m.result !== 'stale') await this.proxy.referrers.noteSchemaTag(upstream.client, repo, schemaDigest, true);
    const etag = `"${m.digest}"`;
    const headers = {
      ...API_HEADERS,
      'Content-Type': m.mediaType,
      'Content-Length': String(m.bytes.length),
      'Docker-Content-Digest': m.digest,
      ETag: etag,
    };
    const base = { cache: m.result, repo, upstream: upstream.config.name };
    if (req.ifNoneMatch && req.ifNoneMatch.split(',').some((t) => t.trim() === etag)) {
      const { ['Content-Length']: _omit, ...rest } = headers;
      return { status: 304, headers: rest, ...base };
    }
    return { status: 200, headers, body: m.bytes, ...base };
  }

  private async blob(req: ApiRequest, name: string, digest: string): Promise<ApiResponse> {
    if (!isDigest(digest)) throw new RegistryError('DIGEST_INVALID', 'invalid digest', { detail: { digest } });
    const { upstream, repo } = this.router.resolve(name, req.ctx);
    const common = {
      ...API_HEADERS,
      'Docker-Content-Digest': digest,
      ETag: `"${digest}"`,
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'max-age=31536000',
    };
    const base = { repo, upstream: upstream.config.name };
    if (req.method === 'HEAD') {
      const st = await this.proxy.blobs.stat(upstream.client, repo, digest);
      return {
        status: 200,
        headers: { ...common, 'Content-Type': 'application/octet-stream', 'Content-Length': String(st.size) },
        cache: st.result,
        ...base,
      };
    }
    const src = await this.proxy.blobs.get(upstream.client, repo, digest);
    // storage.redirect: a stored blob is fetched by the client from the object store itself.
    const location = src.kind === 'stored' ? await this.proxy.storage.blobRedirectUrl(digest) : undefined;
    if (location) {
      // The URL expires: the redirect must not be cached like the immutable blob itself.
      const headers = {
        ...API_HEADERS,
        'Docker-Content-Digest': digest,
        Location: location,
        'Content-Length': '0',
        'Cache-Control': 'no-store',
      };
      return { status: 307, headers, cache: src.result, ...base };
    }
    const size = src.size;
    const range = size === null ? undefined : parseRange(req.range, size);
    const headers: Record<string, string> = { ...common, 'Content-Type': 'application/octet-stream' };
    let status = 200;
    if (range && size !== null) {
      status = 206;
      headers['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`;
      headers['Content-Length'] = String(range.end - range.start + 1);
    } else if (size !== null) {
      headers['Content-Length'] = String(size);
    }
    return {
      status,
      headers,
      body: () => src.open(range),
      cache: src.result,
      ...base,
    };
  }

  /**
   * OCI 1.1 referrers: the upstream's list (cached with the tag freshness rules), filtered here by
   * artifactType. An upstream without the API gets the answer of a registry without it (404), so
   * clients fall back to the `sha256-<hex>` tag schema, which the mirror serves as ordinary tags.
   */
  private async referrers(req: ApiRequest, name: string, digest: string): Promise<ApiResponse> {
    if (!isDigest(digest)) throw new RegistryError('DIGEST_INVALID', 'invalid digest', { detail: { digest } });
    const { upstream, repo } = this.router.resolve(name, req.ctx);
    const { manifests, result } = await this.proxy.referrers.list(upstream.client, upstream.config.freshnessMs, repo, digest);
    const base = { cache: result, repo, upstream: upstream.config.name };
    if (manifests === undefined) {
      const e = new RegistryError(
        'UNSUPPORTED',
        `upstream ${upstream.config.name} has no referrers API; use the tag schema (${digest.replace(':', '-')})`,
        { status: 404 },
      );
      return { ...json(404, e.toJSON()), ...base };
    }
    const artifactType = req.query.get('artifactType');
    const picked = artifactType === null ? manifests : manifests.filter((m) => m.artifactType === artifactType);
    const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: picked };
    const res = json(200, index, {
      'Content-Type': OCI_INDEX,
      ...(artifactType !== null && { 'OCI-Filters-Applied': 'artifactType' }),
    });
    return { ...res, ...base };
  }

  private async tagList(req: ApiRequest, name: string): Promise<ApiResponse> {
    const { upstream, repo } = this.router.resolve(name, req.ctx);
    const { tags, result } = await this.proxy.tags.list(upstream.client, upstream.config.freshnessMs, repo);
    const { page, link } = paginate(tags, req.query, `/v2/${name}/tags/list`);
    const res = json(200, { name, tags: page }, link ? { Link: link } : {});
    return { ...res, cache: result, repo, upstream: upstream.config.name };
  }

  private async catalog(req: ApiRequest): Promise<ApiResponse> {
    const names: string[] = [];
    for (const { upstream, repo } of await this.proxy.cachedRepositories()) {
      const n = this.router.publicName(upstream, repo);
      if (n) names.push(n);
    }
    const { page, link } = paginate(names, req.query, '/v2/_catalog');
    return json(200, { repositories: page }, link ? { Link: link } : {});
  }
}
