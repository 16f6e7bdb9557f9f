// An OCI 1.1 upstream with the referrers API, for clients that push (oras attach): a real distribution 2.8
// behind a small stand-in that forwards every request to it and adds what 2.8 lacks: on a manifest PUT with a
// `subject`, the `OCI-Subject` header (so clients know the API is there and push no sha256-<hex> tag index),
// and `GET /v2/<name>/referrers/<digest>` answered from the manifests that went through it. distribution v3.1.2,
// the latest v3 release, has no referrers API either.
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { startRegistry, type RunningRegistry } from './registry.js';
import { startStandIn, type StandIn } from './standin.js';

const INDEX = 'application/vnd.oci.image.index.v1+json';

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface ReferrersUpstream {
  url: string;
  host: string;
  /** the stand-in's request log */
  requests: StandIn['requests'];
  registry: RunningRegistry;
  /** stops the stand-in and the registry; idempotent */
  stop(): Promise<void>;
}

export async function startReferrersUpstream(): Promise<ReferrersUpstream> {
  const registry = await startRegistry();
  // "<repo>@<subject digest>" -> referrers
  const referrers = new Map<string, Descriptor[]>();
  const target = new URL(registry.url);

  const forward = (req: IncomingMessage, res: ServerResponse, body: Buffer | undefined) => {
    const headers = { ...req.headers, host: target.host };
    const out = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (up) => {
      const h = { ...up.headers };
      // Locations are absolute URLs of the registry: rewrite them to the stand-in.
      if (typeof h.location === 'string') h.location = h.location.replace(registry.url, standIn.url);
      res.writeHead(up.statusCode ?? 502, h);
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    if (body) out.end(body);
    else req.pipe(out);
  };

  const standIn: StandIn = await startStandIn((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const list = /^\/v2\/(.+)\/referrers\/([^/]+)$/.exec(url.pathname);
    if (list && req.method === 'GET') {
      const all = referrers.get(`${list[1]}@${list[2]}`) ?? [];
      const want = url.searchParams.get('artifactType');
      const manifests = want === null ? all : all.filter((d) => d.artifactType === want);
      res.writeHead(200, { 'Content-Type': INDEX, ...(want !== null && { 'OCI-Filters-Applied': 'artifactType' }) });
      res.end(JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests }));
      return;
    }
    const put = /^\/v2\/(.+)\/manifests\/[^/]+$/.exec(url.pathname);
    if (!put || req.method !== 'PUT') {
      forward(req, res, undefined);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      let doc: { mediaType?: string; artifactType?: string; config?: { mediaType?: string }; annotations?: Record<string, string>; subject?: { digest?: string } };
      try {
        doc = JSON.parse(body.toString('utf8')) as typeof doc;
      } catch {
        forward(req, res, body);
        return;
      }
      const subject = doc.subject?.digest;
      if (!subject) {
        forward(req, res, body);
        return;
      }
      // The digest comes from the registry's answer; recorded once it accepted the manifest.
      const record = (digest: string) => {
        const key = `${put[1]}@${subject}`;
        const list = (referrers.get(key) ?? []).filter((d) => d.digest !== digest);
        list.push({
          mediaType: doc.mediaType ?? req.headers['content-type'] ?? '',
          digest,
          size: body.length,
          artifactType: doc.artifactType ?? doc.config?.mediaType,
          ...(doc.annotations && { annotations: doc.annotations }),
        });
        referrers.set(key, list);
      };
      const headers = { ...req.headers, host: target.host, 'content-length': String(body.length) };
      const out = request({ host: target.hostname, port: target.port, method: 'PUT', path: req.url, headers }, (up) => {
        const digest = up.headers['docker-content-digest'];
        if (up.statusCode === 201 && typeof digest === 'string') record(digest);
        const h = { ...up.headers, ...(up.statusCode === 201 && { 'OCI-Subject': subject }) };
        if (typeof h.location === 'string') h.location = h.location.replace(registry.url, standIn.url);
        res.writeHead(up.statusCode ?? 502, h);
        up.pipe(res);
      });
      out.on('error', () => res.destroy());
      out.end(body);
    });
  });

  let stopped = false;
  return {
    url: standIn.url,
    host: standIn.host,
    requests: standIn.requests,
    registry,
    async stop() {
      if (stopped) return;
      stopped = true;
      await standIn.close();
      await registry.stop();
    },
  };
}
