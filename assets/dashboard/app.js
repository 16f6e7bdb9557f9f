// regcache dashboard: polls <base>/api/vars (= /debug/vars), <base>/api/history and <base>/api/cache
// (= GET /admin/cache) and renders them. No framework, no build step; uPlot draws the charts.
(function () {
  'use strict';
  const body = document.body;
  const base = body.dataset.base || '';
  const POLL_MS = 2000;
  const CACHE_POLL_MS = 10000;
  const $ = (id) => document.getElementById(id);

  function fmtBytes(n) {
    if (n == null) return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return i === 0 ? n + ' B' : v.toFixed(v < 10 ? 2 : 1) + ' ' + u[i];
  }
  function fmtAgo(ms) {
    if (!ms) return 'never';
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 120) return s + 's ago';
    if (s < 7200) return Math.round(s / 60) + 'm ago';
    if (s < 172800) return Math.round(s / 3600) + 'h ago';
    return Math.round(s / 86400) + 'd ago';
  }
  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else if (v != null) e.setAttribute(k, v);
    }
    for (const c of children || []) e.append(c);
    return e;
  }
  function setText(id, v) { const e = $(id); if (e) e.textContent = v; }

  async function getJson(path, init) {
    const res = await fetch(base + path, Object.assign({ credentials: 'same-origin', cache: 'no-store' }, init || {}));
    let v = null;
    try { v = await res.json(); } catch { /* not JSON */ }
    if (!res.ok) throw new Error((v && v.error) || ('HTTP ' + res.status));
    return v;
  }

  // ---- overview -------------------------------------------------------------------------------------------
  function renderVars(vars) {
    const rc = vars.regcache;
    const c = rc.cache;
    setText('cache-size', fmtBytes(c.bytes));
    $('cache-size').dataset.bytes = String(c.bytes);
    setText('cache-blobs', String(c.blobs));
    const meter = $('cache-meter');
    if (c.maxBytes) {
      const pct = Math.min(100, (c.bytes / c.maxBytes) * 100);
      setText('cache-cap', pct.toFixed(1) + '% of ' + fmtBytes(c.maxBytes) + (c.lowWatermark != null ? '; evicts down to ' + Math.round(c.lowWatermark * 100) + '%' : ''));
      $('cache-fill').style.width = pct + '%';
      meter.setAttribute('aria-valuenow', pct.toFixed(1));
      if (c.lowWatermark != null) {
        const mark = $('cache-watermark');
        mark.style.left = c.lowWatermark * 100 + '%';
        mark.style.display = 'block';
      }
    } else {
      setText('cache-cap', 'no size cap (regcache.cache.maxsize)');
      meter.hidden = true;
    }
    const r = rc.requests;
    for (const k of ['hit', 'miss', 'coalesced', 'stale', 'revalidated']) setText('req-' + k, String(r[k]));
    const fromCache = r.hit + r.revalidated + r.stale;
    const total = fromCache + r.miss + r.coalesced;
    setText('hit-ratio', total ? ((fromCache / total) * 100).toFixed(1) + '%' : '–');
    setText('bytes-saved', fmtBytes(rc.servedBytes.cache));
    $('bytes-saved').dataset.bytes = String(rc.servedBytes.cache);
    setText('bytes-upstream', fmtBytes(rc.servedBytes.upstream));
    const s = rc.savings;
    setText('money-saved', s.amount == null ? '–' : new Intl.NumberFormat(undefined, { style: 'currency', currency: s.currency || 'USD' }).format(s.amount));
    setText('pulls-saved', String(rc.pullsSaved));
    renderUpstreams(rc.upstreams);
    renderDownloads(rc.downloads);
    renderEvictions(rc.evictions.recent);
    $('evictions').hidden = rc.evictions.recent.length === 0;
    const healthy = rc.storageHealthy;
    setText('health', healthy ? 'storage healthy' : 'storage UNHEALTHY');
    setText('updated', new Date().toLocaleTimeString());
  }

  function upstreamState(u) {
    const b = u.breaker;
    if (b && b.state === 'open') return 'open';
    if (b && b.state === 'half-open') return 'half-open';
    const q = u.requests;
    if (q && q.lastError && (!q.lastSuccess || q.lastError > q.lastSuccess)) return 'down';
    return 'up';
  }
  const STATE_TEXT = { up: 'up', down: 'down (last request failed)', open: 'breaker open', 'half-open': 'probing (half-open)' };

  function renderUpstreams(ups) {
    const tbody = $('upstreams').tBodies[0];
    tbody.replaceChildren();
    const limits = [];
    for (const [name, u] of Object.entries(ups)) {
      const st = upstreamState(u);
      const q = u.requests;
      const rl = u.rateLimit;
      if (rl && rl.remaining != null) limits.push({ name, rl });
      tbody.append(el('tr', { 'data-upstream': name }, [
        el('th', { scope: 'row', text: name }),
        el('td', { class: 'state-' + st, text: STATE_TEXT[st] }),
        el('td', { class: 'num', text: q && q.latencyMs != null ? q.latencyMs + ' ms' : '–' }),
        el('td', { class: 'num', text: q ? String(q.requests) : '0' }),
        el('td', { class: 'num', text: q ? String(q.errors) + (q.lastErrorCode ? ' (' + q.lastErrorCode + ')' : '') : '0' }),
        el('td', { text: q ? fmtAgo(q.lastSuccess) : 'never' }),
        el('td', { class: 'num', text: rl && rl.remaining != null ? rl.remaining + (rl.limit != null ? ' / ' + rl.limit : '') : '–' }),
      ]));
    }
    if (limits.length === 0) {
      setText('ratelimit', '–');
      setText('ratelimit-detail', 'no upstream sent RateLimit headers yet');
    } else {
      const low = limits.reduce((a, b) => (b.rl.remaining < a.rl.remaining ? b : a));
      setText('ratelimit', String(low.rl.remaining) + (low.rl.limit != null ? ' / ' + low.rl.limit : ''));
      setText('ratelimit-detail', low.name + ' (RateLimit-Remaining)');
    }
  }

  function renderDownloads(list) {
    const ul = $('downloads');
    ul.replaceChildren();
    $('downloads-empty').hidden = list.length > 0;
    for (const d of list) {
      const secs = Math.max(0.001, (Date.now() - d.startedAt) / 1000);
      const rate = d.bytes / secs;
      const label = d.upstream + '/' + d.repo + ' ' + d.digest.slice(0, 19);
      const bar = el('progress', { max: String(d.size || 1), value: String(d.size ? d.bytes : 0), 'aria-label': 'download of ' + label });
      if (!d.size) bar.removeAttribute('value');
      ul.append(el('li', { 'data-digest': d.digest }, [
        el('div', {}, [el('strong', { text: d.upstream + '/' + d.repo }), ' ', el('code', { text: d.digest })]),
        bar,
        el('div', { class: 'sub', text: fmtBytes(d.bytes) + ' of ' + (d.size ? fmtBytes(d.size) : 'unknown size') + ' · ' + fmtBytes(rate) + '/s · ' + d.clients + (d.clients === 1 ? ' client' : ' clients') }),
      ]));
    }
  }

  function renderEvictions(list) {
    const tbody = $('evictions').tBodies[0];
    tbody.replaceChildren();
    $('evictions-empty').hidden = list.length > 0;
    const why = { ttl: 'TTL expired', lru: 'size (least recently used)', age: 'older than asked', manual: 'removed by an operator', corrupt: 'corrupt' };
    for (const e of list) {
      tbody.append(el('tr', {}, [
        el('td', { text: new Date(e.at).toLocaleString() }),
        el('td', { text: why[e.reason] || e.reason }),
        el('td', { class: 'num', text: String(e.blobs) }),
        el('td', { class: 'num', text: fmtBytes(e.bytes) }),
      ]));
    }
  }

  // ---- repositories -----------------------------------------------------------------------------------------
  let listing = null;
  function renderRepos() {
    if (!listing) return;
    const q = $('repo-filter').value.trim().toLowerCase();
    const tbody = $('repos').tBodies[0];
    tbody.replaceChildren();
    for (const r of listing.repos) {
      const name = r.upstream + '/' + r.repo;
      if (q && !name.toLowerCase().includes(q)) continue;
      const images = r.images || [];
      const details = el('details', {}, [el('summary', { text: images.length + (images.length === 1 ? ' image' : ' images') })]);
      const ul = el('ul', {});
      for (const im of images) {
        const kind = im.platforms > 0 ? im.platforms + ' platforms' : 'single platform';
        ul.append(el('li', {}, [
          el('code', { text: im.digest.slice(0, 19) }),
          ' ' + (im.tags.length ? ':' + im.tags.join(', :') : '(untagged)') + ' · ' + kind + ' · ' + fmtBytes(im.bytes) + ' · ' + fmtAgo(im.lastAccess),
        ]));
      }
      details.append(ul);
      const btn = el('button', { type: 'button', class: 'danger', 'aria-label': 'Remove ' + name, text: 'Remove' });
      btn.addEventListener('click', () => confirmRemove(name, r));
      btn.disabled = body.dataset.removal === 'disabled';
      tbody.append(el('tr', { 'data-repo': name }, [
        el('th', { scope: 'row' }, [el('code', { text: name })]),
        el('td', { text: r.tags.map((t) => t.tag).join(', ') || '–' }),
        el('td', {}, [details]),
        el('td', { class: 'num', 'data-bytes': String(r.bytes), text: fmtBytes(r.bytes) }),
        el('td', { class: 'num', text: String(r.blobs) }),
        el('td', { text: fmtAgo(r.lastAccess) }),
        el('td', {}, [btn]),
      ]));
    }
  }
  $('repo-filter').addEventListener('input', renderRepos);

  const dialog = $('confirm');
  let pending = null;
  function confirmRemove(name, r) {
    pending = name;
    setText('confirm-text', 'Remove ' + name + ' (' + r.tags.length + ' tags, ' + fmtBytes(r.bytes) + ') from the cache? Clients will pull it from upstream again.');
    setText('confirm-error', '');
    dialog.showModal();
  }
  $('confirm-form').addEventListener('submit', async (ev) => {
    if (ev.submitter && ev.submitter.value !== 'remove') { pending = null; return; }
    ev.preventDefault();
    const token = $('admin-token').value.trim();
    const headers = { 'Content-Type': 'application/json' };
    if (token) headers['X-Regcache-Admin-Token'] = token;
    try {
      await getJson('/api/rm', { method: 'POST', headers, body: JSON.stringify({ ref: pending }) });
      dialog.close();
      pending = null;
      await refreshCache();
      await refresh();
    } catch (e) {
      setText('confirm-error', String(e.message));
    }
  });

  // ---- charts -----------------------------------------------------------------------------------------------
  const hist = { last: 0, rows: [] };
  const charts = {};
  function series(cols) {
    // Rates between neighbouring samples of cumulative counters.
    const t = [], ratio = [], bc = [], bu = [], hit = [], miss = [], coal = [], stale = [];
    const R = hist.rows;
    for (let i = 1; i < R.length; i++) {
      const a = R[i - 1], b = R[i];
      const dt = (b[0] - a[0]) / 1000;
      if (dt <= 0) continue;
      const d = (k) => Math.max(0, b[cols[k]] - a[cols[k]]);
      const fc = d('hit') + d('revalidated') + d('stale');
      const all = fc + d('miss') + d('coalesced');
      t.push(b[0] / 1000);
      ratio.push(all ? (fc / all) * 100 : null);
      bc.push(d('servedCache') / dt);
      bu.push(d('servedUpstream') / dt);
      hit.push((d('hit') + d('revalidated')) / dt);
      miss.push(d('miss') / dt);
      coal.push(d('coalesced') / dt);
      stale.push(d('stale') / dt);
    }
    return { ratio: [t, ratio], bytes: [t, bc, bu], rps: [t, hit, miss, coal, stale] };
  }
  function drawCharts(columns) {
    if (typeof uPlot === 'undefined') return;
    const cols = Object.fromEntries(columns.map((c, i) => [c, i]));
    const s = series(cols);
    const width = (id) => Math.max(260, $(id).clientWidth || 300);
    const make = (id, data, ser, yfmt) => {
      if (charts[id]) { charts[id].setData(data); return; }
      charts[id] = new uPlot({
        width: width(id), height: 180,
        series: [{}].concat(ser),
        // At least the last 10 minutes on the x axis, so that a fresh server's few samples read as a timeline.
        scales: {
          x: {
            time: true,
            range: (u) => {
              const xs = u.data[0];
              const end = xs.length ? xs[xs.length - 1] : Date.now() / 1000;
              return [Math.min(xs.length ? xs[0] : end, end - 600), end];
            },
          },
        },
        axes: [{}, { values: (u, v) => v.map(yfmt), size: 84 }],
        legend: { live: false },
      }, data, $(id));
    };
    make('chart-ratio', s.ratio, [{ label: 'hit ratio %', stroke: '#0b5cad', width: 2 }], (v) => v + '%');
    make('chart-bytes', s.bytes, [{ label: 'from cache', stroke: '#1a6b2f', width: 2 }, { label: 'from upstream', stroke: '#a61b1b', width: 2 }], (v) => fmtBytes(v) + '/s');
    make('chart-rps', s.rps, [
      { label: 'hit', stroke: '#1a6b2f', width: 2 }, { label: 'miss', stroke: '#a61b1b', width: 2 },
      { label: 'coalesced', stroke: '#0b5cad', width: 2 }, { label: 'stale', stroke: '#8a5300', width: 2 },
    ], (v) => v.toFixed(1));
  }
  window.addEventListener('resize', () => {
    for (const [id, c] of Object.entries(charts)) c.setSize({ width: Math.max(260, $(id).clientWidth || 300), height: 180 });
  });

  // ---- polling ----------------------------------------------------------------------------------------------
  async function refresh() {
    try {
      const [vars, h] = await Promise.all([getJson('/api/vars'), getJson('/api/history?since=' + hist.last)]);
      renderVars(vars);
      for (const row of h.samples) hist.rows.push(row);
      if (h.samples.length) hist.last = h.samples[h.samples.length - 1][0];
      const keep = 2160;
      if (hist.rows.length > keep) hist.rows.splice(0, hist.rows.length - keep);
      drawCharts(h.columns);
    } catch (e) {
      setText('health', 'cannot reach regcache: ' + e.message);
    }
  }
  async function refreshCache() {
    try {
      listing = await getJson('/api/cache');
      renderRepos();
    } catch (e) {
      const tbody = $('repos').tBodies[0];
      tbody.replaceChildren(el('tr', {}, [el('td', { colspan: '7', text: 'cache listing unavailable: ' + e.message })]));
    }
  }
  refresh();
  refreshCache();
  setInterval(refresh, POLL_MS);
  setInterval(refreshCache, CACHE_POLL_MS);
})();
