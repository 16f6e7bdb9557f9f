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
import { createRequire } from 'node:module';
import { freePort, runCli, startRegcacheProcess } from '../support/regcache.js';

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
  const secrets = new Map<string, any>();
  for (const r of k.resources as string[]) for (const doc of yamlDocs(read(`deploy/kubernetes/${r}`))) if (doc.kind === 'Secret') secrets.set(doc.metadata.name, doc);
  // The htpasswd Secret is mounted as a file and never exported: no envFrom, no env var reads it.
  assert.equal(ctr.envFrom, undefined, 'no envFrom');
  const htpasswdSecret = (volumes.get(mount('/etc/regcache/auth').name) as any).secret.secretName;
  assert.deepEqual(Object.keys(secrets.get(htpasswdSecret).stringData), ['htpasswd']);
  const fromSecrets = ctr.env.filter((e: any) => e.valueFrom?.secretKeyRef);
  assert.deepEqual(fromSecrets.map((e: any) => e.name).sort(), ['REGISTRY_PROXY_PASSWORD', 'REGISTRY_PROXY_USERNAME']);
  for (const e of fromSecrets) {
    assert.notEqual(e.valueFrom.secretKeyRef.name, htpasswdSecret);
    assert.ok(secrets.get(e.valueFrom.secretKeyRef.name).stringData[e.valueFrom.secretKeyRef.key], e.name);
  }

  const cfg = yaml('deploy/kubernetes/config.yml');
  assert.equal(cfg.http.addr, ':5000');
  assert.equal(cfg.auth.htpasswd.path, `${mount('/etc/regcache/auth').mountPath}/htpasswd`);
  const drain = Number(String(cfg.http.draintimeout).replace(/s$/, ''));
  assert.ok(pod.terminationGracePeriodSeconds > drain);
  assert.equal(ctr.securityContext.readOnlyRootFilesystem, true);
  assert.equal(pod.securityContext.runAsNonRoot, true);
});

test('Dockerfile: two stages on a supported Node LTS, npm ci + build, production deps only, non-root, tini, health check follows the config', () => {
  const df = read('deploy/Dockerfile');
  const lines = df.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  const froms = lines.filter((l) => l.startsWith('FROM '));
  assert.deepEqual(froms, ['FROM node:${NODE_VERSION}-bookworm-slim AS build', 'FROM node:${NODE_VERSION}-bookworm-slim']);
  // Node 20 reached end of life in April 2026; 22 (maintenance) and 24 (active) are supported LTS lines.
  assert.match(df, /^ARG NODE_VERSION=(22|24)$/m);
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
  assert.match(runtime, /apt-get install -y --no-install-recommends tini /);
  const entry = /^ENTRYPOINT (.*)$/m.exec(runtime)?.[1];
  assert.deepEqual(JSON.parse(entry!), ['/usr/bin/tini', '--', 'node', 'bin/regcache.js', 'serve', '--config', '/etc/regcache/config.yml']);
  const health = /^\s+CMD (\[.*\])$/m.exec(runtime)?.[1];
  assert.deepEqual(JSON.parse(health!), ['node', 'bin/regcache.js', 'health', '--config', '/etc/regcache/config.yml']);
  assert.doesNotMatch(runtime, /127\.0\.0\.1:5000/, 'no hard-coded port in the health check');

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

test('systemd unit: correct by construction: Node may raise its fd limit (setrlimit/prlimit64 allowed, soft < hard)', { skip: skipUnless(onPath('systemd-analyze'), 'systemd-analyze', 'systemd-analyze not installed') }, async () => {
  const unit = read('deploy/systemd/regcache.service');
  const filters = [...unit.matchAll(/^SystemCallFilter=(.*)$/gm)].map((m) => m[1]!);
  /** systemd's own expansion of a syscall group (systemd-analyze syscall-filter @group). */
  const expand = async (item: string): Promise<string[]> => {
    if (!item.startsWith('@')) return [item];
    const { stdout } = await run('systemd-analyze', ['syscall-filter', '--no-pager', item]);
    const names: string[] = [];
    for (const l of stdout.split('\n').slice(1)) {
      const t = l.trim();
      if (!t || t.startsWith('#')) continue;
      names.push(...(t.startsWith('@') ? await expand(t) : [t]));
    }
    return names;
  };
  // Allow-list mode (the first filter is positive): later lines add to or (~) remove from the set, in order.
  assert.ok(!filters[0]!.startsWith('~'));
  const allowed = new Set<string>();
  for (const f of filters) {
    const deny = f.startsWith('~');
    for (const item of f.replace(/^~/, '').split(/\s+/).filter(Boolean)) {
      for (const name of await expand(item)) deny ? allowed.delete(name) : allowed.add(name);
    }
  }
  for (const call of ['setrlimit', 'prlimit64', 'getrlimit']) assert.ok(allowed.has(call), `${call} is allowed`);
  for (const call of ['mount', 'reboot', 'setuid', 'init_module']) assert.ok(!allowed.has(call), `${call} is denied`);
  assert.match(unit, /^SystemCallErrorNumber=EPERM$/m);
  // soft < hard, so Node's raise actually runs at every start: a filter that broke it would show at once.
  const [soft, hard] = /^LimitNOFILE=(\d+):(\d+)$/m.exec(unit)!.slice(1).map(Number);
  assert.ok(soft! < hard!, `LimitNOFILE soft ${soft} < hard ${hard}`);
});

/** What `kubectl kustomize deploy/kubernetes` renders for this kustomization (namespace, labels, configMapGenerator). */
function renderKustomize(): any[] {
  const k = yaml('deploy/kubernetes/kustomization.yaml');
  const docs: any[] = [];
  for (const r of k.resources as string[]) docs.push(...yamlDocs(read(`deploy/kubernetes/${r}`)));
  for (const g of k.configMapGenerator) {
    const data: Record<string, string> = {};
    for (const f of g.files) data[f] = read(`deploy/kubernetes/${f}`);
    docs.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: g.name }, data });
  }
  const labels = Object.assign({}, ...(k.labels ?? []).map((l: any) => l.pairs));
  for (const d of docs) {
    if (d.kind !== 'Namespace') d.metadata.namespace = k.namespace;
    d.metadata.labels = { ...d.metadata.labels, ...labels };
    if (d.kind === 'Deployment') {
      const img = k.images.find((i: any) => i.name === d.spec.template.spec.containers[0].image);
      if (img) d.spec.template.spec.containers[0].image = `${img.newName}:${img.newTag}`;
    }
  }
  return docs;
}

const KUBERNETES_VALIDATE = join(ROOT, '.tools/k8s-venv/bin/kubernetes-validate');

test('kubernetes: the rendered manifests pass kubernetes-validate --strict (Kubernetes 1.33 and 1.37 schemas)', { skip: skipUnless(existsSync(KUBERNETES_VALIDATE), 'kubernetes-validate', 'run scripts/test.sh to install kubernetes-validate into .tools/k8s-venv') }, async () => {
  const dir = await makeTempDir('regcache-k8s-');
  try {
    const docs = renderKustomize();
    assert.deepEqual(docs.map((d) => d.kind).sort(), ['ConfigMap', 'Deployment', 'Namespace', 'PersistentVolumeClaim', 'Secret', 'Secret', 'Service']);
    const file = join(dir, 'rendered.yaml');
    await writeFile(file, docs.map((d) => YAML.stringify(d)).join('---\n'));
    for (const version of ['1.33.0', '1.37.0']) {
      const { stdout } = await run(KUBERNETES_VALIDATE, ['--strict', '-k', version, file]);
      assert.equal(stdout.split('\n').filter((l) => l.includes('passed')).length, docs.length, stdout);
    }
    // The validator does reject a broken manifest (not vacuous).
    const bad = structuredClone(docs.find((d) => d.kind === 'Deployment'));
    bad.spec.template.spec.containers[0].envFrom = { secretRef: 'x' };
    await writeFile(file, YAML.stringify(bad));
    await assert.rejects(run(KUBERNETES_VALIDATE, ['--strict', file]));
  } finally {
    await removeDir(dir);
  }
});

test('dependencies: every production package admits Node 20.18, 22 and 24; the AWS SDK cannot move to a release that drops Node 20', async () => {
  const semver = createRequire(import.meta.url)('semver') as { satisfies(v: string, r: string): boolean };
  const pkg = JSON.parse(read('package.json'));
  const lock = JSON.parse(read('package-lock.json'));
  for (const v of ['20.18.1', '22.0.0', '24.0.0']) assert.ok(semver.satisfies(v, pkg.engines.node), `engines admits ${v}`);
  const bad: string[] = [];
  for (const [path, p] of Object.entries<any>(lock.packages)) {
    if (!path || p.dev || !p.engines?.node) continue;
    for (const v of ['20.18.1', '22.12.0', '24.0.0']) if (!semver.satisfies(v, p.engines.node)) bad.push(`${path}@${p.version}: engines ${p.engines.node} excludes ${v}`);
  }
  assert.deepEqual(bad, []);
  // AWS drops Node versions in minor releases of v3: a caret range would let a fresh `npm install` take one.
  for (const name of Object.keys(pkg.dependencies).filter((n) => n.startsWith('@aws-sdk/'))) {
    assert.match(pkg.dependencies[name], /^~\d+\.\d+\.\d+$/, `${name} is tilde-ranged`);
  }
});

test('regcache health probes the configured port: 0 while serving, 1 when nothing listens', async () => {
  const dir = await makeTempDir('regcache-health-');
  const port = await freePort();
  const cfg = join(dir, 'config.yml');
  await writeFile(cfg, `version: 0.1\nstorage: { filesystem: { rootdirectory: ${join(dir, 'data')} } }\nhttp: { addr: "127.0.0.1:${port}" }\n`);
  try {
    const down = await runCli(['health', '--config', cfg]);
    assert.equal(down.code, 1);
    assert.match(down.stderr, new RegExp(`127\\.0\\.0\\.1:${port}/healthz`));
    const server = await startRegcacheProcess({ args: ['--config', cfg], port });
    try {
      const up = await runCli(['health', '--config', cfg]);
      assert.equal(up.code, 0, up.stderr);
      assert.match(up.stdout, new RegExp(`ok http://127\\.0\\.0\\.1:${port}/healthz`));
    } finally {
      await server.stop();
    }
  } finally {
    await removeDir(dir);
  }
});
