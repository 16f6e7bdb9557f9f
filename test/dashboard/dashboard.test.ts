// The web dashboard in a real browser (Debian chromium driven by playwright-core): its numbers against /metrics
// and storage after real pulls, a progress bar during a dripped download, removal through the page, the refusal
// without credentials on the main listener, axe-core's accessibility rules, phone width. Screenshots go to
// test-artifacts/dashboard/ (git-ignored); assertions read the DOM, never pixels.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startFaultProxy, type FaultProxy } from '../support/faultproxy.js';
import { buildImage, pushImage, type BuiltImage } from '../support/images.js';
import { REPO_ROOT, startRegcache, type RunningRegcache } from '../support/regcache.js';
import { startRegistry, type RunningRegistry } from '../support/registry.js';
import { copyToDir } from '../support/skopeo.js';
import { skipUnless } from '../support/skips.js';
import { makeTempDir, removeDir } from '../support/tmp.js';
import { scrape, value } from '../observability/prom.js';

const CHROMIUM = process.env.REGCACHE_TEST_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = join(REPO_ROOT, 'test-artifacts', 'dashboard');
const skip = skipUnless(existsSync(CHROMIUM), 'chromium', `no ${CHROMIUM} (apt-get install chromium)`);
const require = createRequire(import.meta.url);

async function shot(page: Page, name: string): Promise<void> {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Waits until the page's text at `selector` satisfies `ok` (the page polls every 2 s). */
async function waitText(page: Page, selector: string, ok: (text: string) => boolean, what: string): Promise<string> {
  let last = '';
  for (let i = 0; i < 150; i++) {
    last = (await page.locator(selector).first().textContent()) ?? '';
    if (ok(last)) return last;
    await page.waitForTimeout(200);
  }
  throw new Error(`${what}: page shows ${JSON.stringify(last)}`);
}

describe('web dashboard', { skip }, () => {
  let work: string;
  let upstream: RunningRegistry;
  let proxy: FaultProxy;
  let cache: RunningRegcache;
  let browser: Browser;
  let small: BuiltImage;
  let big: BuiltImage;
  const BIG_LAYER = 3 * 1024 * 1024;

  before(async () => {
    work = await makeTempDir('dashboard-');
    upstream = await startRegistry();
    small = await buildImage({ dir: join(work, 'small'), layers: [40_000, 20_000], seed: 'dash-small' });
    big = await buildImage({ dir: join(work, 'big'), layers: [BIG_LAYER], seed: 'dash-big' });
    await pushImage(small, upstream.host, 'library/alpine:3.20');
    await pushImage(big, upstream.host, 'team/big:1');
    proxy = await startFaultProxy(upstream.url);
    cache = await startRegcache({
      upstreamUrl: proxy.url,
      config: {
        http: { debug: { addr: '127.0.0.1:0', prometheus: { enabled: true, path: '/metrics' } } },
        regcache: { freshness: '1h', cache: { maxsize: '1GiB', lowwatermark: '80%' }, dashboard: { egressprice: 0.09 } },
      },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });

  after(async () => {
    await browser?.close();
    await cache?.stop();
    await proxy?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  const metrics = () => scrape(`${cache.app.debugUrl}/metrics`);

  it('shows cache size, hits, bytes saved and the repositories exactly as /metrics and storage say', async () => {
    await copyToDir(`docker://${cache.host}/library/alpine:3.20`, join(work, 'pull1'));
    await copyToDir(`docker://${cache.host}/library/alpine:3.20`, join(work, 'pull2'));
    const m = await metrics();
    const size = value(m, 'regcache_cache_size_bytes');
    const hits = value(m, 'regcache_cache_requests_total', { result: 'hit' });
    const saved = value(m, 'regcache_served_bytes_total', { source: 'cache' });
    const pulls = value(m, 'regcache_upstream_pulls_saved_total');
    assert.ok(hits >= small.blobs.length, `warm pull hit every blob (${hits})`);
    // Storage: the cache size is the sum of the stored blobs.
    let stored = 0;
    for (const b of [...small.blobs, { digest: small.manifestDigest, size: small.manifestSize }]) {
      const st = await cache.app.storage.statBlob(b.digest);
      assert.ok(st, `${b.digest} stored`);
      stored += st.size;
    }
    assert.equal(size, stored);

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (msg) => msg.type() === 'error' && errors.push(msg.text()));
    const res = await page.goto(`${cache.app.debugUrl}/dashboard`);
    assert.equal(res?.status(), 200);
    // Two independent polls fill the page: the counters (/api/vars) and the repository list (/api/cache).
    await page.waitForSelector('#repos tbody tr[data-repo]');
    await page.waitForSelector('#cache-size[data-bytes]');
    assert.equal(await page.locator('#cache-size').getAttribute('data-bytes'), String(size));
    assert.equal(await page.locator('#req-hit').textContent(), String(hits));
    assert.equal(await page.locator('#bytes-saved').getAttribute('data-bytes'), String(saved));
    assert.equal(await page.locator('#pulls-saved').textContent(), String(pulls));
    const money = Math.round((saved / 1e9) * 0.09 * 100) / 100;
    assert.match((await page.locator('#money-saved').textContent()) ?? '', new RegExp(money.toFixed(2).replace('.', '\\.')));
    assert.match((await page.locator('#egress-price').textContent()) ?? '', /0\.09 USD/);
    // The repository list is the metadata index's (= GET /admin/cache).
    const listing = (await (await fetch(`${cache.app.debugUrl}/admin/cache`)).json()) as { repos: Array<{ upstream: string; repo: string; bytes: number }> };
    const shown = await page.locator('#repos tbody tr[data-repo]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-repo')));
    assert.deepEqual(shown, listing.repos.map((r) => `${r.upstream}/${r.repo}`));
    assert.deepEqual(shown, [`${cache.config.upstreams[0]!.name}/library/alpine`]);
    const repoBytes = await page.locator('#repos tbody tr[data-repo] td[data-bytes]').first().getAttribute('data-bytes');
    assert.equal(Number(repoBytes), listing.repos[0]!.bytes);
    assert.equal(listing.repos[0]!.bytes, stored);
    // Upstream row: up, with requests counted.
    const state = await page.locator('#upstreams tbody tr td').first().textContent();
    assert.equal(state, 'up');
    // The cap and the eviction watermark.
    assert.match((await page.locator('#cache-cap').textContent()) ?? '', /% of 1\.00 GiB; evicts down to 80%/);
    assert.equal(await page.locator('#cache-watermark').evaluate((e) => (e as HTMLElement).style.left), '80%');
    await shot(page, 'overview');

    // Accessibility: axe-core's WCAG 2 A/AA rules (labels, contrast, names) on the rendered page.
    // Evaluated through the DevTools protocol: the page's CSP (script-src 'self') rightly refuses inline scripts.
    await page.evaluate(await readFile(require.resolve('axe-core/axe.min.js'), 'utf8'));
    const result = (await page.evaluate(`axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] } })`)) as {
      violations: Array<{ id: string; nodes: Array<{ target: string[] }> }>;
    };
    assert.deepEqual(result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`), []);

    // Phone width: one column, nothing wider than the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    const wide = await page.evaluate(() =>
      [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5 && !e.closest('.scroll'))
        .map((e) => `${e.tagName}#${e.id}.${e.className}`)
        .slice(0, 5),
    );
    assert.ok(overflow <= 0, `page is ${overflow}px wider than a phone: ${wide.join(' ')}`);
    await shot(page, 'phone');
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('shows a progress bar with bytes of size while a slow download runs', async () => {
    const layer = big.blobs.find((b) => b.size >= BIG_LAYER)!;
    proxy.setRules([{ method: 'GET', path: new RegExp(layer.digest.replace('sha256:', '')), fault: { kind: 'drip', bytesPerTick: 64 * 1024, tickMs: 100 } }]);
    const page = await browser.newPage();
    await page.goto(`${cache.app.debugUrl}/dashboard`);
    const pull = copyToDir(`docker://${cache.host}/team/big:1`, join(work, 'big-pull'));
    try {
      const bar = page.locator(`#downloads li[data-digest="${layer.digest}"] progress`);
      await bar.waitFor({ timeout: 60_000 });
      assert.equal(await bar.getAttribute('max'), String(layer.size));
      const v = Number(await bar.getAttribute('value'));
      assert.ok(v >= 0 && v < layer.size, `progress ${v} of ${layer.size}`);
      assert.match((await page.locator(`#downloads li[data-digest="${layer.digest}"] .sub`).textContent()) ?? '', /of 3\.00 MiB · .*\/s · 1 client/);
      // The same download is in /debug/vars.
      const vars = (await (await fetch(`${cache.app.debugUrl}/debug/vars`)).json()) as { regcache: { downloads: Array<{ digest: string; size: number }> } };
      assert.ok(vars.regcache.downloads.some((d) => d.digest === layer.digest && d.size === layer.size));
      await shot(page, 'download');
    } finally {
      await pull;
      proxy.clearRules();
    }
    await page.locator(`#downloads li[data-digest="${layer.digest}"]`).waitFor({ state: 'detached', timeout: 30_000 });
    await page.close();
  });

  it('removes an image through the page, after a confirmation', async () => {
    const layer = big.blobs.find((b) => b.size >= BIG_LAYER)!;
    assert.ok(await cache.app.storage.statBlob(layer.digest), 'the big layer is cached');
    const name = `${cache.config.upstreams[0]!.name}/team/big`;
    const page = await browser.newPage();
    await page.goto(`${cache.app.debugUrl}/dashboard`);
    const row = page.locator(`#repos tbody tr[data-repo="${name}"]`);
    await row.waitFor();
    await row.getByRole('button', { name: `Remove ${name}` }).click();
    const dialog = page.locator('#confirm');
    await dialog.waitFor();
    assert.match((await page.locator('#confirm-text').textContent()) ?? '', /Remove .*team\/big/);
    // Cancel first: nothing happens.
    await page.locator('#confirm-cancel').click();
    assert.ok(await cache.app.storage.statBlob(layer.digest), 'cancel removes nothing');
    await row.getByRole('button', { name: `Remove ${name}` }).click();
    await page.locator('#confirm-remove').click();
    await row.waitFor({ state: 'detached', timeout: 30_000 });
    assert.equal(await cache.app.storage.statBlob(layer.digest), null, 'the layer is gone from storage');
    const listing = (await (await fetch(`${cache.app.debugUrl}/admin/cache`)).json()) as { repos: Array<{ repo: string }> };
    assert.deepEqual(listing.repos.map((r) => r.repo), ['library/alpine']);
    // The removal is listed as a recent eviction, and counted in /metrics.
    await waitText(page, '#evictions tbody tr td:nth-child(2)', (t) => t === 'removed by an operator', 'recent evictions');
    assert.ok(value(await metrics(), 'regcache_evicted_blobs_total', { reason: 'manual' }) >= 1);
    await shot(page, 'removed');
    await page.close();
  });
});

describe('web dashboard on the main listener with client auth', { skip }, () => {
  let work: string;
  let upstream: RunningRegistry;
  let cache: RunningRegcache;
  let browser: Browser;

  before(async () => {
    work = await makeTempDir('dashboard-auth-');
    upstream = await startRegistry();
    const htpasswd = join(work, 'htpasswd');
    await writeFile(htpasswd, `ops:${bcrypt.hashSync('s3cret', 5)}\n`);
    cache = await startRegcache({
      upstreamUrl: upstream.url,
      config: {
        auth: { htpasswd: { realm: 'regcache', path: htpasswd } },
        regcache: { dashboard: { path: '/ui', mainlistener: true } },
      },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });

  after(async () => {
    await browser?.close();
    await cache?.stop();
    await upstream?.stop();
    if (work) await removeDir(work);
  });

  it('refuses without credentials and works with them', async () => {
    const anon = await browser.newContext();
    const page = await anon.newPage();
    // Headless chromium has no one to ask for a password: the navigation fails on the 401 challenge.
    const [res, nav] = await Promise.all([
      page.waitForResponse(`${cache.url}/ui`),
      page.goto(`${cache.url}/ui`).then(
        () => undefined,
        (e: Error) => e,
      ),
    ]);
    assert.equal(res.status(), 401);
    assert.match(res.headers()['www-authenticate'] ?? '', /^Basic realm="regcache"/);
    assert.match(String(nav), /ERR_INVALID_AUTH_CREDENTIALS/);
    assert.equal(await page.locator('#cache-size').count(), 0, 'no dashboard was rendered');
    for (const path of ['/ui/api/vars', '/ui/api/cache', '/ui/static/app.js']) {
      assert.equal((await fetch(`${cache.url}${path}`)).status, 401, path);
    }
    await anon.close();

    const authed = await browser.newContext({ httpCredentials: { username: 'ops', password: 's3cret' } });
    const p2 = await authed.newPage();
    const ok = await p2.goto(`${cache.url}/ui`);
    assert.equal(ok?.status(), 200);
    await waitText(p2, '#cache-size', (t) => t === '0 B', 'cache size');
    await shot(p2, 'mainlistener');
    // Removal on the main listener needs regcache.admin.tokenfile: refused here even with client credentials.
    const basic = `Basic ${Buffer.from('ops:s3cret').toString('base64')}`;
    const rm = await fetch(`${cache.url}/ui/api/rm`, {
      method: 'POST',
      headers: { Authorization: basic, 'Content-Type': 'application/json' },
      body: JSON.stringify({ ref: 'library/alpine' }),
    });
    assert.equal(rm.status, 403);
    assert.match(((await rm.json()) as { error: string }).error, /regcache\.admin\.tokenfile/);
    await authed.close();
  });
});
