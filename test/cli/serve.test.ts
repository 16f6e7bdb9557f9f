// The CLI as a user runs it: embedded default, distribution config files, REGISTRY_* overrides, bad input.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { copyToDir, dirDigests } from '../support/skopeo.js';
import { freePort, REPO_ROOT, startRegcacheProcess, runCli } from '../support/regcache.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { DESIGN_YAML } from '../support/designconfig.js';

const cli = runCli;


describe('regcache CLI', () => {
  let upstream: RunningRegistry;
  let work: string;
  let img: BuiltImage;

  before(async () => {
    work = await makeTempDir('cli-');
    upstream = await startRegistry();
    img = await buildImage({ dir: join(work, 'img'), layers: [2048, 4096], seed: 'cli' });
    await pushImage(img, upstream.host, 'library/hello:1');
  });

  after(async () => {
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  it('--help explains the commands and flags', async () => {
    const top = await cli(['--help']);
    assert.equal(top.code, 0);
    for (const word of ['serve', 'config', 'client-config']) assert.match(top.stdout, new RegExp(word));
    const serve = await cli(['serve', '--help']);
    assert.match(serve.stdout, /--config <file>/);
  });

  it('serves with no config file: ./data storage, REGISTRY_* overrides for address and upstream; pulls work', async () => {
    const port = await freePort();
    const cwd = await makeTempDir('cli-default-');
    const srv = await startRegcacheProcess({
      port,
      env: { REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`, REGISTRY_PROXY_REMOTEURL: upstream.url },
      cwd,
    });
    try {
      const dest = join(work, 'default-pull');
      await copyToDir(`docker://127.0.0.1:${port}/library/hello:1`, dest);
      const direct = join(work, 'default-direct');
      await copyToDir(`docker://${upstream.host}/library/hello:1`, direct);
      assert.deepEqual(await dirDigests(dest), await dirDigests(direct));
      assert.ok(existsSync(join(cwd, 'data', 'blobs', 'sha256')), 'default storage is ./data');
    } finally {
      await srv.stop();
      await removeDir(cwd);
    }
  });

  it('environment overrides win over the config file', async () => {
    const port = await freePort();
    const deadPort = await freePort();
    const yaml = `version: 0.1
storage: { filesystem: { rootdirectory: ${join(work, 'env-data')} } }
http: { addr: "127.0.0.1:${deadPort}" }
proxy: { remoteurl: "http://127.0.0.1:${deadPort}" }
`;
    const srv = await startRegcacheProcess({
      port,
      configYaml: yaml,
      env: { REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`, REGISTRY_PROXY_REMOTEURL: upstream.url },
    });
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v2/library/hello/manifests/1`, { headers: { Accept: img.mediaType } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('docker-content-digest'), img.manifestDigest);
    } finally {
      await srv.stop();
    }
  });

  it('loads the distribution config from DESIGN.md unchanged', async () => {
    const file = join(work, 'design.yml');
    await writeFile(file, DESIGN_YAML);
    const r = await cli(['config', 'check', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /OK/);
    assert.match(r.stdout, /upstream docker\.io: https:\/\/registry-1\.docker\.io \(as user\)/);
    assert.doesNotMatch(r.stdout + r.stderr, /\btoken\b/, 'the upstream password is never printed');
  });

  it('the shipped example configs load', async () => {
    for (const f of ['deploy/config.example.yml', 'deploy/docker/config.yml', 'deploy/kubernetes/config.yml']) {
      const r = await cli(['config', 'check', '--config', join(REPO_ROOT, f)]);
      assert.equal(r.code, 0, `${f}: ${r.stderr}`);
      assert.doesNotMatch(r.stdout, /unknown key/, f);
    }
  });

  it('unknown keys are warned about by name', async () => {
    const file = join(work, 'unknown.yml');
    await writeFile(file, 'version: 0.1\nhttp: { addr: ":5000", frobnicate: 1 }\n');
    const r = await cli(['config', 'check', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /http\.frobnicate/);
  });

  it('an invalid value exits non-zero with the key path and reason, without a stack trace', async () => {
    const file = join(work, 'bad.yml');
    await writeFile(file, 'version: 0.1\nhttp: { addr: "abc" }\nproxy: { remoteurl: "ftp://x", ttl: 1x }\n');
    for (const args of [
      ['serve', '--config', file],
      ['config', 'check', '--config', file],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /http\.addr/);
      assert.match(r.stderr, /proxy\.remoteurl/);
      assert.match(r.stderr, /proxy\.ttl/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
    const env = await cli(['config', 'check'], { env: { REGISTRY_HTTP_ADDR: 'nope' } });
    assert.equal(env.code, 2);
    assert.match(env.stderr, /REGISTRY_HTTP_ADDR/);
    const missing = await cli(['serve', '--config', join(work, 'does-not-exist.yml')]);
    assert.notEqual(missing.code, 0);
    assert.doesNotMatch(missing.stderr, /\n\s+at /);
  });

  it('client-config prints a snippet, and refuses bad input clearly', async () => {
    const ok = await cli(['client-config', 'docker', '--mirror', 'https://mirror.example.com']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /registry-mirrors/);
    const bad = await cli(['client-config', 'nerdctl', '--mirror', 'https://mirror.example.com']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /unknown client kind/);
    assert.doesNotMatch(bad.stderr, /\n\s+at /);
  });
});
