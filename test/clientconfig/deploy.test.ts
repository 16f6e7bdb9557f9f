// Static checks of deploy/: every YAML parses, the pieces agree with each other, and the tools that
// exist on this machine (systemd-analyze, sh -n, hadolint if packaged) accept what they can check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { skipUnless } from '../support/skips.js';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const DEPLOY = join(ROOT, 'deploy');
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

function yamlDocs(text: string): any[] {
  const docs = YAML.parseAllDocuments(text, { uniqueKeys: true });
  const errors = docs.flatMap((d) => d.errors.map((e) => e.message));
  assert.deepEqual(errors, []);
  return docs.map((d) => d.toJS());
}

const yaml = (p: string) => {
  const docs = yamlDocs(read(p));
  assert.equal(docs.length, 1, `${p}: one document`);
  return docs[0];
};

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => d && existsSync(join(d, cmd)));
}

test('every YAML file under deploy/ parses (strict, unique keys)', () => {
  const files = filesUnder(DEPLOY).filter((f) => /\.ya?ml$/.test(f));
  assert.ok(files.length >= 10, `found ${files.map((f) => relative(ROOT, f))}`);
  for (const f of files) {
    assert.doesNotThrow(() => yamlDocs(readFileSync(f, 'utf8')), relative(ROOT, f));
  }
});

test('config.example.yml: Docker Hub with credentials, gcr/quay/ECR upstreams, htpasswd, Let\'s Encrypt', () => {
  const c = yaml('deploy/config.example.yml');
  assert.equal(c.version, 0.1);
  assert.equal(c.proxy.remoteurl, 'https://registry-1.docker.io');
  assert.ok(c.proxy.username && c.proxy.password);
  const ups = c.regcache.upstreams as Array<Record<string, string>>;
  assert.deepEqual(ups.map((u) => u.name).slice(0, 2), ['gcr.io', 'quay.io']);
  const ecr = ups.find((u) => /\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com$/.test(u.name!));
  assert.ok(ecr, 'an ECR upstream');
  assert.equal(ecr.credentialhelper, 'docker-credential-ecr-login');
  assert.equal(ecr.remoteurl, `https://${ecr.name}`);
  assert.equal(c.auth.htpasswd.path, '/etc/regcache/htpasswd');
  assert.deepEqual(Object.keys(c.http.tls.letsencrypt).sort(), ['cachefile', 'email', 'hosts']);
  assert.equal(c.http.addr, ':443');
  // Everything the service writes lives in its StateDirectory.
  assert.ok(c.storage.filesystem.rootdirectory.startsWith('/var/lib/regcache/'));
  assert.ok(c.http.tls.letsencrypt.cachefile.startsWith('/var/lib/regcache/'));
});

test('systemd unit: hardening, state directory, stop timeout longer than the drain timeout', () => {
  const unit = read('deploy/systemd/regcache.service');
  const directives = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) directives.set(m[1]!, [...(directives.get(m[1]!) ?? []), m[2]!]);
  }
  const one = (k: string) => directives.get(k)?.at(-1);
  assert.equal(one('ExecStart'), '/usr/bin/env regcache serve --config /etc/regcache/config.yml');
  for (const [k, v] of [
    ['DynamicUser', 'yes'],
    ['StateDirectory', 'regcache'],
    ['ProtectSystem', 'strict'],
    ['ProtectHome', 'yes'],
    ['NoNewPrivileges', 'yes'],
    ['PrivateTmp', 'yes'],
    ['Restart', 'on-failure'],
    ['CapabilityBoundingSet', ''],
    ['AmbientCapabilities', ''],
  ]) {
    assert.equal(one(k!), v, k);
  }
  const stopSeconds = Number(/^(\d+)s$/.exec(one('TimeoutStopSec') ?? '')?.[1]);
  const drain = yaml('deploy/config.example.yml').http.draintimeout as string;
  assert.ok(stopSeconds > Number(drain.replace(/s$/, '')), `TimeoutStopSec ${stopSeconds}s > draintimeout ${drain}`);
});

test('systemd-analyze verify accepts the unit, alone and with the :443 drop-in', { skip: skipUnless(onPath('systemd-analyze'), 'systemd-analyze', 'systemd-analyze not installed') }, async () => {
  const cloud = yaml('deploy/cloud-init.yaml');
  const dropIn = cloud.write_files.find((f: any) => f.path === '/etc/systemd/system/regcache.service.d/bind-443.conf').content;
  const dir = await makeTempDir('regcache-unit-');
  try {
    const unit = read('deploy/systemd/regcache.service');
    for (const text of [unit, `${unit}\n${dropIn}`]) {
      await writeFile(join(dir, 'regcache.service'), text);
      const { stderr } = await run('systemd-analyze', ['verify', join(dir, 'regcache.service')]);
      // verify only warns about unknown keys or bad values: treat any remark on our unit as a failure.
      const remarks = stderr.split('\n').filter((l) => l.includes('regcache.service'));
      assert.deepEqual(remarks, []);
    }
  } finally {
    await removeDir(dir);
  }
});

test('cloud-init: #cloud-config, ships the same unit, config without inline secrets, starts the service', async () => {
  const text = read('deploy/cloud-init.yaml');
  assert.ok(text.startsWith('#cloud-config\n'));
  const c = yaml('deploy/cloud-init.yaml');
  const file = (p: string) => {
    const f = c.write_files.find((x: any) => x.path === p);
    assert.ok(f, `write_files has ${p}`);
    return f;
  };
  assert.equal(file('/etc/systemd/system/regcache.service').content, read('deploy/systemd/regcache.service'));
  const cfg = YAML.parse(file('/etc/regcache/config.yml').content);
  assert.equal(cfg.proxy.remoteurl, 'https://registry-1.docker.io');
  assert.equal(cfg.proxy.password, undefined, 'secrets belong in regcache.env');
  assert.deepEqual(cfg.http.tls.letsencrypt.hosts, ['mirror.example.com']);
  assert.equal(cfg.http.addr, ':443');
  assert.equal(cfg.auth.htpasswd.path, '/etc/regcache/htpasswd');
  const env = file('/etc/regcache/regcache.env');
  assert.equal(env.permissions, '0600');
  assert.match(env.content, /^REGISTRY_PROXY_USERNAME=.+\nREGISTRY_PROXY_PASSWORD=.+\n$/);
  assert.match(file('/etc/systemd/system/regcache.service.d/bind-443.conf').content, /AmbientCapabilities=CAP_NET_BIND_SERVICE/);
  const cmds = (c.runcmd as string[]).join('\n');
  assert.match(cmds, /install-node20/);
  assert.match(cmds, /npm install -g /);
  assert.match(cmds, /htpasswd -cbB \/etc\/regcache\/htpasswd /);
  assert.match(cmds, /systemctl enable --now regcache\.service/);
  assert.ok(c.packages.includes('amazon-ecr-credential-helper'));

  // The Node installer script is valid sh and picks Node >= 20.
  const dir = await makeTempDir('regcache-ci-');
  try {
    const script = join(dir, 'install-node20');
    await writeFile(script, file('/usr/local/sbin/install-node20').content);
    await run('sh', ['-n', script]);
  } finally {
    await removeDir(dir);
  }
});

test('kustomize: resources exist, probes on 5000, PVC, config and credentials wired in', () => {
  const k = yaml('deploy/kubernetes/kustomization.yaml');
  for (const r of k.resources as string[]) assert.ok(existsSync(join(DEPLOY, 'kubernetes', r)), r);
  for (const g of k.configMapGenerator) for (const f of g.files) assert.ok(existsSync(join(DEPLOY, 'kubernetes', f)), f);
  const byKind = new Map<string, any>();
  for (const r of k.resources as string[]) {
    for (const doc of yamlDocs(read(`deploy/kubernetes/${r}`))) byKind.set(doc.kind, doc);
  }
  const dep = byKind.get('Deployment');
  const pod = dep.spec.template.spec;
  const ctr = pod.containers[0];
  assert.deepEqual(dep.spec.selector.matchLabels, dep.spec.template.metadata.labels);
  assert.deepEqual(byKind.get('Service').spec.selector, dep.spec.template.metadata.labels);
  assert.equal(ctr.ports[0].containerPort, 5000);
  assert.equal(ctr.readinessProbe.httpGet.path, '/readyz');
  assert.equal(ctr.livenessProbe.httpGet.path, '/healthz');
  for (const p of [ctr.readinessProbe, ctr.livenessProbe]) assert.equal(p.httpGet.port, ctr.ports[0].name);
  assert.equal(k.images[0].name, ctr.image);

  const volumes = new Map(pod.volumes.map((v: any) => [v.name, v]));
  const mount = (path: string) => ctr.volumeMounts.find((m: any) => m.mountPath === path);
  assert.equal((volumes.get(mount('/var/lib/regcache').name) as any).persistentVolumeClaim.claimName, byKind.get('PersistentVolumeClaim').metadata.name);
  assert.equal((volumes.get(mount('/etc/regcache/config.yml').name) as any).configMap.name, k.configMapGenerator[0].name);
  const secret = byKind.get('Secret');
  assert.equal(ctr.envFrom[0].secretRef.name, secret.metadata.name);
  assert.ok(secret.stringData.REGISTRY_PROXY_USERNAME && secret.stringData.REGISTRY_PROXY_PASSWORD);

  const cfg = yaml('deploy/kubernetes/config.yml');
  assert.equal(cfg.http.addr, ':5000');
  assert.equal(cfg.auth.htpasswd.path, `${mount('/etc/regcache/auth').mountPath}/htpasswd`);
  const drain = Number(String(cfg.http.draintimeout).replace(/s$/, ''));
  assert.ok(pod.terminationGracePeriodSeconds > drain);
  assert.equal(ctr.securityContext.readOnlyRootFilesystem, true);
  assert.equal(pod.securityContext.runAsNonRoot, true);
});

test('Dockerfile: two stages, npm ci + build, production deps only, non-root, volume, port, entrypoint', () => {
  const df = read('deploy/Dockerfile');
  const lines = df.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  const froms = lines.filter((l) => l.startsWith('FROM '));
  assert.deepEqual(froms, ['FROM node:20-bookworm-slim AS build', 'FROM node:20-bookworm-slim']);
  const split = df.indexOf(`\n${froms[1]}\n`);
  const build = df.slice(0, split);
  const runtime = df.slice(split);
  assert.match(build, /RUN npm ci/);
  assert.match(build, /RUN npm run build/);
  assert.match(runtime, /RUN npm ci --omit=dev/);
  assert.match(runtime, /COPY --from=build \/src\/dist \.\/dist/);
  assert.match(runtime, /^USER node$/m);
  assert.match(runtime, /^VOLUME \/var\/lib\/regcache$/m);
  assert.match(runtime, /^EXPOSE 5000$/m);
  const entry = /^ENTRYPOINT (.*)$/m.exec(runtime)?.[1];
  assert.deepEqual(JSON.parse(entry!), ['node', 'bin/regcache.js', 'serve', '--config', '/etc/regcache/config.yml']);

  // Everything COPY'd from the context exists and is not excluded by the Dockerfile's own .dockerignore.
  const ignore = read('deploy/Dockerfile.dockerignore').split('\n').filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/\*\*$/, ''));
  for (const l of lines.filter((x) => x.startsWith('COPY ') && !x.includes('--from='))) {
    const parts = l.split(/\s+/).slice(1, -1);
    for (const src of parts) {
      assert.ok(existsSync(join(ROOT, src)), `COPY source ${src} exists`);
      assert.ok(ignore.includes(src), `COPY source ${src} is let through by Dockerfile.dockerignore`);
    }
  }
  yaml('deploy/docker/config.yml');
});

test('hadolint accepts the Dockerfile', { skip: skipUnless(onPath('hadolint'), 'hadolint', 'hadolint not installed') }, async () => {
  await run('hadolint', ['--failure-threshold', 'error', join(DEPLOY, 'Dockerfile')]);
});
