// ECR-style upstream: credentials come from a docker credential helper program, not the config.
import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { startRegcache, type RunningRegcache } from '../support/regcache.js';
import { makeTempDir, removeDir } from '../support/tmp.js';

const USER = 'AWS';
const SECRET = 'ecr-token-Zq81';

describe('upstream credentials from a credential helper', () => {
  let upstream: RunningRegistry;
  let cache: RunningRegcache;
  let work: string;
  let img: BuiltImage;

  before(async () => {
    work = await makeTempDir('credhelper-e2e-');
    upstream = await startRegistry({ htpasswd: { username: USER, password: SECRET } });
    img = await buildImage({ dir: join(work, 'img'), layers: [1500], seed: 'ecr' });
    await pushImage(img, upstream.host, 'team/svc:1', { creds: `${USER}:${SECRET}` });
    const helper = join(work, 'docker-credential-fake-ecr');
    await writeFile(
      helper,
      `#!/bin/sh\nread -r server\necho "$server" >> "${work}/asked"\nprintf '{"ServerURL":"%s","Username":"${USER}","Secret":"${SECRET}"}' "$server"\n`,
    );
    await chmod(helper, 0o755);
    cache = await startRegcache({
      config: { regcache: { upstreams: [{ name: 'ecr', remoteurl: upstream.url, credentialhelper: helper }] } },
    });
  });

  after(async () => {
    await cache?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  it('pulls from an htpasswd upstream with the helper’s credentials, asking the helper once', async () => {
    const m = await fetch(`${cache.url}/v2/team/svc/manifests/1`, { headers: { Accept: img.mediaType } });
    assert.equal(m.status, 200);
    assert.equal(m.headers.get('docker-content-digest'), img.manifestDigest);
    const layer = img.manifests[0]!.layers[0]!;
    const b = await fetch(`${cache.url}/v2/team/svc/blobs/${layer.digest}`);
    assert.equal(b.status, 200);
    assert.equal((await b.arrayBuffer()).byteLength, layer.size);
    const asked = (await readFile(join(work, 'asked'), 'utf8')).trim().split('\n');
    assert.deepEqual(asked, [upstream.host], 'the helper gets the registry host on stdin, once (cached)');
    assert.ok(!JSON.stringify(cache.logs).includes(SECRET), 'the helper secret is never logged');
  });
});
