// An upstream's Docker-Content-Digest on a manifest HEAD is validated: a malformed one falls back to a GET of
// the manifest (whose bytes give the digest), never a 400 for the client.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { sha256 } from '../support/digest.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { startStandIn, type StandIn } from '../support/standin.js';

const MANIFEST = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 2 },
    layers: [],
  }),
);
const TYPE = 'application/vnd.oci.image.manifest.v1+json';

describe('upstream HEAD with a malformed Docker-Content-Digest', () => {
  let upstream: StandIn;
  let cache: RunningRegcache;

  before(async () => {
    upstream = await startStandIn((req, res) => {
      if (!/\/manifests\//.test(req.url ?? '')) {
        res.writeHead(req.url?.startsWith('/v2/') && req.url.length <= 4 ? 200 : 404, { 'Content-Type': 'application/json' }).end('{}');
        return;
      }
      const headers = { 'Content-Type': TYPE, 'Content-Length': String(MANIFEST.length) };
      if (req.method === 'HEAD') res.writeHead(200, { ...headers, 'Docker-Content-Digest': 'sha256:not-a-digest' }).end();
      else res.writeHead(200, { ...headers, 'Docker-Content-Digest': sha256(MANIFEST) }).end(MANIFEST);
    });
    cache = await startRegcache({ upstreamUrl: upstream.url });
  });

  after(async () => {
    await cache?.stop();
    await upstream?.close();
  });

  it('falls back to GET and serves the manifest with its real digest', async () => {
    for (const method of ['HEAD', 'GET'] as const) {
      const res = await request(`${cache.url}/v2/team/app/manifests/1`, { method, headers: { Accept: TYPE } });
      const body = await res.body.text();
      assert.equal(res.statusCode, 200, `${method}: ${body}`);
      assert.equal(res.headers['docker-content-digest'], sha256(MANIFEST));
    }
    assert.ok(upstream.requests.some((r) => r.method === 'GET' && r.path.includes('/manifests/')), 'fell back to GET');
  });
});
