// Bitville APM web UI: one page, plain JavaScript, no dependencies.
//
// The page routes on its own URL (/ui/timeline, /ui/spike, /ui/requests,
// /ui/request/<id>, /ui/sql), and keeps the window and the filters in the
// query string, so every view can be shared as a link. It reads the
// processor's JSON API with the token the user signed in with, kept in
// sessionStorage (gone when the tab closes) and sent as a bearer token.
// Times are shown in the viewer's zone; hovering one shows it in UTC.
'use strict';

(() => {
  const TOKEN_KEY = 'bitville.token';
  const WHO_KEY = 'bitville.who';
  const main = document.getElementById('main');
  const top = document.getElementById('top');
  const tip = document.getElementById('tip');

  // ---------------------------------------------------------------- HTML
  // Every interpolated value is escaped unless it was built by `html`
  // itself: record text (URLs, SQL, log lines) never becomes markup.
  class Raw {
    constructor(s) { this.s = s; }
    toString() { return this.s; }
  }
  const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  const esc = (v) => String(v).replace(/[&<>"']/g, (c) => ESC[c]);
  const part = (v) => {
    if (v instanceof Raw) return v.s;
    if (Array.isArray(v)) return v.map(part).join('');
    if (v === null || v === undefined || v === false) return '';
    return esc(v);
  };
  const html = (strings, ...values) => {
    let out = strings[0];
    values.forEach((v, i) => { out += part(v) + strings[i + 1]; });
    return new Raw(out);
  };

  // ---------------------------------------------------------- formatting
  const pad = (n) => String(n).padStart(2, '0');
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';
  /** Milliseconds from an API time (6 fraction digits), an ISO string or ms. */
  const toMs = (v) => {
    if (typeof v === 'number') return v;
    if (!v) return NaN;
    if (/^\d+$/.test(v)) return Number(v) * 1000;
    let s = String(v).replace(' ', 'T').replace(/(\.\d{3})\d+/, '$1');
    if (!/(Z|[+-]\d\d:?\d\d)$/.test(s)) s += 'Z';
    return Date.parse(s);
  };
  /** Whole seconds of UTC: what the URL and the API get. */
  const isoUtc = (ms) => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.000Z$/, 'Z');
  const localDate = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const localClock = (d, secs = true) => `${pad(d.getHours())}:${pad(d.getMinutes())}${secs ? ':' + pad(d.getSeconds()) : ''}`;
  const localText = (ms, withDate = true) => {
    const d = new Date(ms);
    return withDate ? `${localDate(d)} ${localClock(d)}` : localClock(d);
  };
  /** A time in the viewer's zone, with UTC on hover. */
  const when = (v, withDate = true) => {
    const ms = toMs(v);
    if (Number.isNaN(ms)) return html`<span class="muted">–</span>`;
    return html`<time datetime="${isoUtc(ms)}" title="${isoUtc(ms).replace('T', ' ')} UTC">${localText(ms, withDate)}</time>`;
  };
  const span = (fromMs, toMsV) => {
    const sameDay = localDate(new Date(fromMs)) === localDate(new Date(toMsV));
    return html`${when(fromMs)} – ${when(toMsV, !sameDay)} <span class="muted">(${duration((toMsV - fromMs) / 1000)})</span>`;
  };
  const duration = (s) => {
    if (s < 90) return `${Math.round(s)} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${+(s / 3600).toFixed(1)} h`;
    return `${+(s / 86400).toFixed(1)} d`;
  };
  const num = (v, digits = 1) => {
    if (v === null || v === undefined || Number.isNaN(Number(v))) return '–';
    const x = Number(v);
    return x.toLocaleString('en', { maximumFractionDigits: Math.abs(x) >= 100 ? 0 : digits });
  };
  const ms = (v) => {
    if (v === null || v === undefined) return '–';
    const x = Number(v);
    if (x >= 1000) return `${(x / 1000).toFixed(x >= 10000 ? 1 : 2)} s`;
    return `${x >= 10 ? Math.round(x) : +x.toFixed(1)} ms`;
  };
  const bytes = (v) => {
    let x = Number(v || 0);
    for (const u of ['B', 'KiB', 'MiB', 'GiB', 'TiB']) {
      if (x < 1024 || u === 'TiB') return `${+x.toFixed(1)} ${u}`;
      x /= 1024;
    }
    return '';
  };
  const pct = (x) => `${num(x * 100, 1)} %`;
  const short = (id) => String(id || '').slice(0, 8);

  // ---------------------------------------------------------------- URL
  const params = () => new URLSearchParams(location.search);
  /** A /ui/ link with parameters; empty ones are left out. */
  const link = (path, ps = {}) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(ps)) if (v !== null && v !== undefined && v !== '') q.set(k, v);
    const admin = params().get('project');
    if (admin && !q.has('project')) q.set('project', admin);
    const s = q.toString();
    return `/ui/${path}${s ? '?' + s : ''}`;
  };
  /** Changes parameters of the current URL without a new history entry. */
  const setParams = (ps) => {
    const q = params();
    for (const [k, v] of Object.entries(ps)) {
      if (v === null || v === undefined || v === '') q.delete(k); else q.set(k, v);
    }
    const s = q.toString();
    history.replaceState(null, '', location.pathname + (s ? '?' + s : ''));
  };
  const go = (url, replace = false) => {
    if (replace) history.replaceState(null, '', url); else history.pushState(null, '', url);
    render();
  };

  // ---------------------------------------------------------------- API
  class Halt extends Error {}
  class ApiFailure extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  /** The processor did not answer at all (stopped, restarting, network down). */
  class Offline extends Error {}
  const token = () => sessionStorage.getItem(TOKEN_KEY);
  const who = () => JSON.parse(sessionStorage.getItem(WHO_KEY) || 'null');

  async function api(path, ps = {}, as = 'json', withToken = token()) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(ps)) if (v !== null && v !== undefined && v !== '') q.set(k, v);
    const project = params().get('project');
    if (project && !q.has('project')) q.set('project', project);
    const s = q.toString();
    let resp;
    try {
      resp = await fetch(path + (s ? '?' + s : ''), { headers: { Authorization: `Bearer ${withToken}` } });
    } catch (e) {
      throw new Offline(e && e.message ? e.message : String(e));
    }
    if (resp.status === 401 && withToken === token()) {
      signOut('The processor refused the token: sign in again.');
      throw new Halt();
    }
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({}));
      throw new ApiFailure(resp.status, body.error || `${resp.status} ${resp.statusText}`);
    }
    return as === 'blob' ? resp.blob() : resp.json();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(WHO_KEY);
    const next = location.pathname.startsWith('/ui/signin') ? '' : location.pathname + location.search;
    history.replaceState(null, '', `/ui/signin${next ? '?next=' + encodeURIComponent(next) : ''}`);
    render(message);
  }

  // ------------------------------------------------------------- routing
  const routes = [
    [/^\/ui\/signin$/, signinPage],
    [/^\/ui\/timeline$/, timelinePage],
    [/^\/ui\/spike$/, spikePage],
    [/^\/ui\/requests$/, requestsPage],
    [/^\/ui\/request\/([^/]+)$/, requestPage],
    [/^\/ui\/sql$/, sqlPage],
    [/^\/ui\/top$/, topPage],
  ];
  /** The browser tab's title: what the page shows, then the product. */
  const setTitle = (what) => { document.title = what ? `${what} · Bitville APM` : 'Bitville APM'; };
  const TITLES = { signin: 'Sign in', timeline: 'Timeline', spike: 'Spike report', requests: 'Requests', request: 'Request', sql: 'SQL fingerprint', top: 'Top' };
  let generation = 0;
  /** True while the page that asked is still the one shown. */
  const current = (g) => g === generation;

  /**
   * A selector that finds the focused control again once the page is drawn
   * anew: by id, data-test, name or data-fn, in that order. Null when focus
   * is outside the page or on nothing that can be found again.
   */
  function focusKey(el) {
    if (!el || el === document.body || !main.contains(el)) return null;
    if (el.id) return `#${CSS.escape(el.id)}`;
    for (const a of ['data-test', 'name', 'data-fn', 'data-i']) {
      const v = el.getAttribute(a);
      if (v !== null) return `${el.tagName.toLowerCase()}[${a}="${CSS.escape(v)}"]`;
    }
    return null;
  }
  /** Puts the focus back where focusKey found it, when the control is still there. */
  function restoreFocus(key) {
    if (!key || (document.activeElement && document.activeElement !== document.body && main.contains(document.activeElement))) return;
    const el = main.querySelector(key);
    if (el) el.focus({ preventScroll: true });
  }

  /** The path last drawn: focus is kept only when the same page is drawn again. */
  let drawnPath = '';

  async function render(message) {
    const g = ++generation;
    tip.hidden = true;
    const path = location.pathname.replace(/\/+$/, '') || '/ui';
    const focused = path === drawnPath ? focusKey(document.activeElement) : null;
    drawnPath = path;
    if (path === '/ui') return go('/ui/timeline', true);
    if (!token() && path !== '/ui/signin') {
      return go(`/ui/signin?next=${encodeURIComponent(location.pathname + location.search)}`, true);
    }
    renderTop(path);
    setTitle(TITLES[path.split('/')[2]] || 'Not found');
    const route = routes.find(([re]) => re.test(path));
    if (!route) {
      main.innerHTML = part(html`<h1>Not found</h1><p>No page at ${path}. <a href="/ui/timeline">Open the timeline</a>.</p>`);
      return;
    }
    const args = path.match(route[0]).slice(1).map(decodeURIComponent);
    // Kept so that a processor that stops answering leaves the page as it was
    // (without its banner: a Retry or an auto-refresh that fails again keeps it too).
    let previous = '';
    if (!main.querySelector('.loading')) {
      const shown = main.cloneNode(true);
      for (const old of shown.querySelectorAll('.offline')) old.remove();
      previous = shown.innerHTML;
    }
    main.innerHTML = part(html`<p class="muted loading">Loading…</p>`);
    try {
      await route[1](g, ...args, message);
      if (current(g)) { restoreFocus(focused); scheduleRefresh(g); }
    } catch (e) {
      if (e instanceof Halt || !current(g)) return;
      if (e instanceof Offline) { showOffline(previous); scheduleRefresh(g); return; }
      const what = e instanceof ApiFailure ? `${e.message} (HTTP ${e.status})` : String(e && e.message ? e.message : e);
      main.innerHTML = part(html`<div class="error" role="alert"><strong>Could not load this page:</strong> ${what}</div>`);
    }
  }

  /**
   * The processor did not answer: keep what the page shows (or showed
   * before this navigation) under a banner that offers to try again.
   */
  function showOffline(previous) {
    for (const old of main.querySelectorAll('.offline')) old.remove();
    if (main.querySelector('.loading')) main.innerHTML = previous;
    main.insertAdjacentHTML('afterbegin', part(html`<div class="offline error" role="alert" data-test="offline">
      <span><strong>The processor does not answer.</strong> It may be stopped or restarting; what you see was loaded before.</span>
      <button type="button" id="retry">Retry</button></div>`));
    document.getElementById('retry').onclick = () => render();
  }

  function renderTop(path) {
    const w = who();
    const nav = [['timeline', 'Timeline'], ['requests', 'Requests'], ['top', 'Top']];
    const section = path.split('/')[2] || '';
    top.innerHTML = part(html`
      <a class="brand" href="/ui/timeline"><img src="/ui/assets/icon.svg" alt="" width="22" height="22"> Bitville APM</a>
      ${w ? html`<nav>${nav.map(([p, label]) => html`<a href="${link(p, keepWindow())}" class="${section === p ? 'active' : ''}">${label}</a>`)}</nav>` : ''}
      <span class="spacer"></span>
      <span class="zone" title="Hover a time to see it in UTC">Times in ${zone}</span>
      ${w ? html`<span class="who" data-test="who">${w.admin ? 'admin · all projects' : html`project <b>${w.project}</b>`}</span>
        <button type="button" class="ghost" id="signout">Sign out</button>` : ''}`);
    const out = document.getElementById('signout');
    if (out) out.onclick = () => signOut('Signed out.');
  }

  /** The window parameters worth keeping when moving between pages. */
  const keepWindow = () => {
    const p = params();
    if (rangeOf(p.get('range'))) return { range: p.get('range'), refresh: p.get('refresh') };
    return { from: p.get('from'), to: p.get('to'), refresh: p.get('refresh') };
  };

  /** Seconds between reloads when auto-refresh is on (`refresh` in the URL), at least 5. */
  const refreshSeconds = () => {
    const v = Number(params().get('refresh'));
    return v > 0 ? Math.max(5, v) : 0;
  };
  const REFRESH_DEFAULT_S = 30;
  let refreshTimer = 0;
  /** Reloads the page's data every `refresh` seconds while it is shown, to watch a spike as it happens. */
  function scheduleRefresh(g) {
    clearTimeout(refreshTimer);
    const every = refreshSeconds();
    if (!every) return;
    refreshTimer = setTimeout(() => {
      if (!current(g)) return;
      // Hidden tabs wait. A processor that stopped answering is asked again
      // too: a failed load keeps the page, and the view recovers by itself.
      if (document.visibilityState === 'hidden') { scheduleRefresh(g); return; }
      render();
    }, every * 1000);
  }

  /**
   * The range picker of the pages with a window: quick ranges up to the
   * newest record, absolute times (in the viewer's zone), and auto-refresh.
   * `page` is where it links; `keep` the page's other parameters.
   */
  function rangePicker(page, win, keep = {}, absolute = true) {
    const p = params();
    const refresh = p.get('refresh');
    const others = { ...keep, refresh };
    return html`<div class="range-picker card" data-test="range-picker">
      <nav class="quick" aria-label="Quick ranges">${RANGES.map(([k, label]) => html`<a class="button ghost${win.range === k ? ' active' : ''}" href="${link(page, { ...others, range: k })}" data-test="range-${k}" aria-current="${win.range === k ? 'true' : 'false'}">Last ${label}</a>`)}</nav>
      ${absolute ? html`<form class="inline" id="range-form" data-test="range-form">
        <label>From <input type="datetime-local" step="1" name="from" value="${toLocalInput(win.from)}"></label>
        <label>To <input type="datetime-local" step="1" name="to" value="${toLocalInput(win.to)}"></label>
        <span class="muted small">${zone}</span>
        <button type="submit">Apply</button>
      </form>` : ''}
      <label class="live"><input type="checkbox" id="auto-refresh" data-test="auto-refresh" ${refresh ? new Raw('checked') : ''}> Auto-refresh every ${refreshSeconds() || REFRESH_DEFAULT_S} s</label>
    </div>`;
  }
  /** Wires the range picker drawn by rangePicker. */
  function wireRangePicker(page, keep = {}) {
    const form = document.getElementById('range-form');
    if (form) form.onsubmit = (e) => {
      e.preventDefault();
      const d = new FormData(form);
      const a = fromLocalInput(d.get('from'));
      const b = fromLocalInput(d.get('to'));
      if (!(b > a)) return;
      go(link(page, { ...keep, refresh: params().get('refresh'), from: isoUtc(a), to: isoUtc(b) }));
    };
    document.getElementById('auto-refresh').onchange = (e) => {
      setParams({ refresh: e.target.checked ? REFRESH_DEFAULT_S : null });
      renderTop(location.pathname);
      scheduleRefresh(generation);
    };
  }

  document.addEventListener('click', (e) => {
    const a = e.target.closest('a');
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    if (a.target || a.hasAttribute('download') || a.origin !== location.origin || !a.pathname.startsWith('/ui/')) return;
    if (a.pathname.startsWith('/ui/assets/')) return;
    e.preventDefault();
    go(a.pathname + a.search);
  });
  window.addEventListener('popstate', () => render());

  // ------------------------------------------------------------- sign in
  async function signinPage(g, message) {
    main.innerHTML = part(html`
      <section class="signin card">
        <h1>Sign in</h1>
        <p>Paste a processor token. A project token shows that project only; an admin token shows every project.
           The token stays in this tab (session storage) and is sent to this processor only.</p>
        ${message ? html`<p class="notice" role="status">${message}</p>` : ''}
        <form id="signin">
          <label>Token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
          <button type="submit">Sign in</button>
        </form>
        <p id="signin-error" class="error" role="alert" hidden></p>
      </section>`);
    document.getElementById('signin').onsubmit = async (e) => {
      e.preventDefault();
      const t = new FormData(e.target).get('token').trim();
      const err = document.getElementById('signin-error');
      try {
        const me = await api('/v1/ui/whoami', {}, 'json', t);
        sessionStorage.setItem(TOKEN_KEY, t);
        sessionStorage.setItem(WHO_KEY, JSON.stringify(me));
        const next = params().get('next');
        go(next && next.startsWith('/ui/') && !next.startsWith('/ui/signin') ? next : '/ui/timeline', true);
      } catch (x) {
        err.hidden = false;
        err.textContent = x instanceof ApiFailure && x.status === 401 ? 'The processor does not know this token.' : `Sign-in failed: ${x.message}`;
      }
    };
  }

  // -------------------------------------------------------------- charts
  const M = { l: 52, r: 14, t: 10, b: 22 };
  const WAIT_COLORS = {
    CPU: '#16a34a', Lock: '#dc2626', LWLock: '#f97316', IO: '#2563eb', IPC: '#9333ea', Client: '#94a3b8',
    Timeout: '#0d9488', Activity: '#a16207', BufferPin: '#db2777', Extension: '#64748b',
  };
  const niceCeil = (v) => {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  };
  const STEPS_S = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  const axisLabel = (v) => (v >= 1e6 ? `${+(v / 1e6).toFixed(1)}M` : v >= 1e3 ? `${+(v / 1e3).toFixed(1)}k` : `${+v.toFixed(2)}`);
  const chartData = new Map();
  let chartSeq = 0;

  /**
   * An SVG chart over [x0, x1) (ms). `t` holds bucket starts (ms), each
   * series one value per bucket (null: a gap). Types: line, area (stacked in
   * order), bars, and a constant `hline`. `marks` shade spans (spikes).
   */
  function chart({ width, height = 130, x0, x1, t, bucketMs, series, marks = [], unit = '', id = '', selectable = false }) {
    const key = `c${++chartSeq}`;
    const pw = width - M.l - M.r;
    const ph = height - M.t - M.b;
    const X = (v) => M.l + ((v - x0) / (x1 - x0)) * pw;
    const stacked = [];
    let base = t.map(() => 0);
    let ymax = 0;
    for (const s of series) {
      if (s.type === 'area') {
        const upper = s.values.map((v, i) => base[i] + (v || 0));
        stacked.push({ s, lower: base, upper });
        base = upper;
        ymax = Math.max(ymax, ...upper);
      } else if (s.type === 'hline') {
        ymax = Math.max(ymax, s.value);
      } else {
        ymax = Math.max(ymax, ...s.values.filter((v) => v !== null && v !== undefined));
      }
    }
    ymax = niceCeil(ymax * 1.05);
    const Y = (v) => M.t + ph - (v / ymax) * ph;
    const mid = (i) => X(t[i] + bucketMs / 2);
    const out = [];
    for (const f of [0, 0.5, 1]) {
      const y = Y(ymax * f);
      out.push(html`<line class="grid" x1="${M.l}" x2="${width - M.r}" y1="${y}" y2="${y}"/>
        <text class="ylab" x="${M.l - 6}" y="${y + 4}">${axisLabel(ymax * f)}${f === 1 ? unit : ''}</text>`);
    }
    const span_s = (x1 - x0) / 1000;
    const step = (STEPS_S.find((s) => span_s / s <= Math.max(3, Math.floor(pw / 90))) || 86400) * 1000;
    const offset = new Date(x0).getTimezoneOffset() * 60000;
    for (let v = Math.ceil((x0 - offset) / step) * step + offset; v <= x1; v += step) {
      const x = X(v);
      out.push(html`<line class="tick" x1="${x}" x2="${x}" y1="${M.t + ph}" y2="${M.t + ph + 4}"/>
        <text class="xlab" x="${x}" y="${height - 6}">${localClock(new Date(v), step < 60000)}</text>`);
    }
    for (const m of marks) {
      const a = Math.max(X(m.from), M.l);
      const b = Math.min(X(m.to), width - M.r);
      if (b > a) out.push(html`<rect class="mark${m.cls ? ' ' + m.cls : ''}" x="${a}" y="${M.t}" width="${Math.max(b - a, 2)}" height="${ph}"><title>${m.title}</title></rect>`);
    }
    for (const { s, lower, upper } of stacked) {
      let d = '';
      t.forEach((_, i) => { d += `${i ? 'L' : 'M'}${mid(i).toFixed(1)},${Y(upper[i]).toFixed(1)}`; });
      for (let i = t.length - 1; i >= 0; i--) d += `L${mid(i).toFixed(1)},${Y(lower[i]).toFixed(1)}`;
      if (t.length) out.push(html`<path class="area" d="${d}Z" fill="${s.color}" stroke="${s.color}"><title>${s.name}</title></path>`);
    }
    for (const s of series) {
      if (s.type === 'line') {
        let d = '';
        let pen = false;
        s.values.forEach((v, i) => {
          if (v === null || v === undefined) { pen = false; return; }
          d += `${pen ? 'L' : 'M'}${mid(i).toFixed(1)},${Y(v).toFixed(1)}`;
          pen = true;
        });
        out.push(html`<path class="line${s.dash ? ' dash' : ''}" d="${d || 'M0,0'}" stroke="${s.color}"/>`);
      } else if (s.type === 'bars') {
        const w = Math.max(1, X(x0 + bucketMs) - X(x0) - 1);
        s.values.forEach((v, i) => {
          if (v > 0) out.push(html`<rect class="bar" x="${X(t[i]) + 0.5}" y="${Y(v)}" width="${w}" height="${M.t + ph - Y(v)}" fill="${s.color}"/>`);
        });
      } else if (s.type === 'hline') {
        out.push(html`<line class="line dash" x1="${M.l}" x2="${width - M.r}" y1="${Y(s.value)}" y2="${Y(s.value)}" stroke="${s.color}"><title>${s.name}</title></line>`);
      }
    }
    out.push(html`<line class="cursor" x1="0" x2="0" y1="${M.t}" y2="${M.t + ph}" visibility="hidden"/>`);
    out.push(html`<rect class="sel" x="0" y="${M.t}" width="0" height="${ph}"/>`);
    out.push(html`<rect class="hit" x="${M.l}" y="${M.t}" width="${pw}" height="${ph}"/>`);
    chartData.set(key, { x0, x1, width, pw, t, bucketMs, series, unit });
    return html`<svg class="chart${selectable ? ' selectable' : ''}" data-chart="${key}" data-test="${id}" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${id}">${out}</svg>`;
  }

  const legend = (series) => html`<span class="legend">${series.filter((s) => s.name).map((s) => html`<span class="key"><svg width="10" height="10"><rect width="10" height="10" rx="2" fill="${s.color}"/></svg>${s.name}</span>`)}</span>`;

  /** The time under the pointer on a chart, clamped to its window. */
  function chartTime(svg, clientX) {
    const d = chartData.get(svg.dataset.chart);
    const r = svg.getBoundingClientRect();
    const x = ((clientX - r.left) * d.width) / r.width;
    const f = Math.min(1, Math.max(0, (x - M.l) / d.pw));
    return d.x0 + f * (d.x1 - d.x0);
  }
  const chartX = (d, v) => M.l + ((v - d.x0) / (d.x1 - d.x0)) * d.pw;

  /** Hover read-outs on every chart of the page; drag to select on selectable ones. */
  function wireCharts(onSelect, selection) {
    const svgs = [...main.querySelectorAll('svg.chart')];
    const drawSel = (a, b) => {
      for (const svg of svgs) {
        if (!svg.classList.contains('selectable')) continue;
        const d = chartData.get(svg.dataset.chart);
        const rect = svg.querySelector('.sel');
        const xa = Math.max(M.l, chartX(d, Math.min(a, b)));
        const xb = Math.min(M.l + d.pw, chartX(d, Math.max(a, b)));
        rect.setAttribute('x', xa);
        rect.setAttribute('width', Math.max(0, xb - xa));
      }
    };
    if (selection) drawSel(selection.from, selection.to);
    let drag = null;
    /** One crosshair on every chart of the page, at the bucket holding `at` (null hides them). */
    const crosshair = (at) => {
      for (const other of svgs) {
        const od = chartData.get(other.dataset.chart);
        const line = other.querySelector('.cursor');
        const j = at === null ? -1 : od.t.findIndex((v) => at >= v && at < v + od.bucketMs);
        if (j < 0) { line.setAttribute('visibility', 'hidden'); continue; }
        const ox = chartX(od, od.t[j] + od.bucketMs / 2);
        line.setAttribute('x1', ox);
        line.setAttribute('x2', ox);
        line.setAttribute('visibility', 'visible');
      }
    };
    for (const svg of svgs) {
      const d = chartData.get(svg.dataset.chart);
      svg.addEventListener('mousemove', (e) => {
        const at = chartTime(svg, e.clientX);
        if (drag) drawSel(drag.from, at);
        let i = d.t.findIndex((v) => at >= v && at < v + d.bucketMs);
        crosshair(i < 0 ? null : at);
        if (i < 0) { tip.hidden = true; return; }
        const rows = d.series.filter((s) => s.values).map((s) => html`<div>${legend([s])} <b>${s.values[i] === null || s.values[i] === undefined ? '–' : num(s.values[i], 2)}</b>${d.unit}</div>`);
        tip.innerHTML = part(html`<div class="tip-time">${localText(d.t[i])} <span class="muted">(${isoUtc(d.t[i]).slice(11, 19)} UTC)</span></div>${rows}`);
        tip.hidden = false;
        const tx = Math.min(e.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
        tip.style.left = `${tx}px`;
        tip.style.top = `${e.clientY + 14}px`;
      });
      svg.addEventListener('mouseleave', () => { tip.hidden = true; crosshair(null); });
      if (svg.classList.contains('selectable')) {
        svg.addEventListener('mousedown', (e) => {
          if (e.button !== 0) return;
          e.preventDefault();
          drag = { from: chartTime(svg, e.clientX) };
          const up = (u) => {
            window.removeEventListener('mouseup', up);
            const to = chartTime(svg, u.clientX);
            const a = Math.min(drag.from, to);
            const b = Math.max(drag.from, to);
            drag = null;
            if (b - a < 1000) { drawSel(0, 0); onSelect(null); return; }
            drawSel(a, b);
            onSelect({ from: Math.floor(a / 1000) * 1000, to: Math.ceil(b / 1000) * 1000 });
          };
          window.addEventListener('mouseup', up);
        });
      }
    }
    return drawSel;
  }

  const chartWidth = (el) => Math.max(280, Math.floor((el || main).clientWidth));
  /** The width of one cell of a two-column grid, or the whole width when a narrow screen stacks it in one. */
  const cellWidth = (grid, gap) => {
    const columns = getComputedStyle(grid).gridTemplateColumns.split(' ').filter(Boolean).length;
    return columns > 1 ? Math.floor((chartWidth(grid) - gap) / 2) : chartWidth(grid);
  };

  // ------------------------------------------------------------ timeline
  /** Quick ranges of the range picker: a length that ends at the newest record. */
  const RANGES = [['15m', '15 min', 900], ['1h', '1 h', 3600], ['6h', '6 h', 21600], ['24h', '24 h', 86400], ['7d', '7 d', 604800]];
  const rangeOf = (name) => RANGES.find(([k]) => k === name);

  /**
   * The window of the URL: a quick range (`range=1h`: that long, up to the
   * newest record, found again at each load so a live store is followed),
   * else `from` and `to`, else the last hours of data (written back to the URL).
   */
  async function windowOrDefault(g, hours = 1) {
    const p = params();
    const quick = rangeOf(p.get('range'));
    if (quick) {
      const f = await api('/v1/ui/facets');
      if (!f.last) return null;
      const to = Math.ceil((toMs(f.last) + 1000) / 60000) * 60000;
      return { from: to - quick[2] * 1000, to, range: quick[0] };
    }
    let from = toMs(p.get('from'));
    let to = toMs(p.get('to'));
    if (Number.isNaN(from) || Number.isNaN(to) || to <= from) {
      const f = await api('/v1/ui/facets');
      if (!f.last) return null;
      const last = toMs(f.last);
      to = Math.ceil((last + 1000) / 60000) * 60000;
      from = Math.max(Math.floor(toMs(f.first) / 60000) * 60000, to - hours * 3600000);
      if (current(g)) setParams({ from: isoUtc(from), to: isoUtc(to) });
    }
    return { from, to };
  }

  const noData = () => html`<div class="empty card"><h2>No data for this project</h2>
    <p>Nothing has been stored for ${who() && who().project ? html`project <b>${who().project}</b>` : 'any project'} yet,
    or the window holds nothing. Records arrive through <code>POST /v1/ingest</code> from the shipper and pg-watch.</p></div>`;

  /** Lulls shorter than this within one host's spike make one episode. */
  const EPISODE_GAP_US = 60e6;

  /**
   * Spikes of the same host and signal separated by short lulls, as one
   * episode: a lock held every 20 s gives bursts that a person calls one
   * spike, and one report over all of it has the baseline before it all.
   */
  function episodes(spikes) {
    const out = [];
    for (const s of spikes.slice().sort((a, b) => a.start_us - b.start_us)) {
      const e = out.find((x) => x.project === s.project && x.host === s.host && x.signal === s.signal && s.start_us - x.end_us <= EPISODE_GAP_US);
      if (!e) { out.push({ ...s, bursts: 1 }); continue; }
      e.bursts += 1;
      if (s.peak > e.peak) { e.peak = s.peak; e.peak_at_us = s.peak_at_us; }
      e.end_us = Math.max(e.end_us, s.end_us);
      if (toMs(s.report_to) > toMs(e.report_to)) e.report_to = s.report_to;
    }
    return out;
  }

  async function timelinePage(g) {
    const win = await windowOrDefault(g);
    if (!current(g)) return;
    if (!win) { main.innerHTML = part(noData()); return; }
    const { from, to } = win;
    const [tl, sp] = await Promise.all([
      api('/v1/ui/timeline', { from: isoUtc(from), to: isoUtc(to) }),
      api('/v1/spikes', { from: isoUtc(from), to: isoUtc(to) }),
    ]);
    if (!current(g)) return;
    const spikes = episodes(sp.spikes || []);
    const p = params();
    const selFrom = toMs(p.get('sel_from'));
    const selTo = toMs(p.get('sel_to'));
    const sel = selTo > selFrom ? { from: selFrom, to: selTo } : null;
    const len = to - from;
    const shift = (k) => link('timeline', { from: isoUtc(from + k * len), to: isoUtc(to + k * len) });
    const zoomOut = link('timeline', { from: isoUtc(from - len / 2), to: isoUtc(to + len / 2) });

    main.innerHTML = part(html`
      <div class="page-head">
        <h1>Timeline</h1>
        <div class="window">${span(from, to)}</div>
        <div class="buttons">
          <a class="button ghost" href="${shift(-1)}" title="Earlier">◀</a>
          <a class="button ghost" href="${zoomOut}">Zoom out</a>
          <a class="button ghost" href="${shift(1)}" title="Later">▶</a>
        </div>
      </div>
      ${rangePicker('timeline', win)}
      <div id="selection" class="selection card" hidden></div>
      <div class="timeline-layout">
        <section class="card spikes">
          <h2>Spikes <span class="muted">(${spikes.length})</span></h2>
          ${spikes.length ? html`<ol class="spike-list" data-test="spike-list">${spikes.map((s, i) => html`
            <li><a href="${link('spike', { from: s.report_from, to: s.report_to, baseline_from: s.baseline_from, baseline_to: s.baseline_to, host: s.host })}" data-test="spike-${i}">
              <span class="badge ${s.signal}">${s.signal}</span>
              <b>${s.host}</b>${s.project && who() && who().admin ? html` <span class="muted">${s.project}</span>` : ''}${s.bursts > 1 ? html` <span class="bursts">${s.bursts} bursts</span>` : ''}<br>
              ${when(s.start_us / 1000, false)} – ${when(s.end_us / 1000, false)}
              <span class="sub">peak ${num(s.peak, 1)} at ${when(s.peak_at_us / 1000, false)}, baseline ${num(s.baseline, 2)}</span></a></li>`)}</ol>`
            : html`<p class="muted">No spike in this window. Drag across a chart to report on any window.</p>`}
          <p class="hint">Drag across a chart to pick a window.</p>
        </section>
        <section class="charts" id="charts"></section>
      </div>`);

    const box = document.getElementById('charts');
    const width = chartWidth(box) - 2;
    const bucketMs = tl.bucket_s * 1000;
    const marks = spikes.map((s) => ({ from: s.start_us / 1000, to: Math.max(s.end_us / 1000, s.start_us / 1000 + bucketMs), title: `${s.signal} spike on ${s.host}: peak ${s.peak} (baseline ${s.baseline})` }));
    const common = { width, x0: from, x1: to, bucketMs, marks, selectable: true };
    const blocks = [];
    if (!tl.hosts.length) blocks.push(noData());
    // Web hosts first: a person reads from the requests down to the database.
    const hosts = tl.hosts.slice().sort((a, b) => (b.requests.t.length > 0) - (a.requests.t.length > 0));
    for (const h of hosts) {
      const label = who() && who().admin ? `${h.project} / ${h.host}` : h.host;
      const charts = [];
      if (h.load.length) {
        const load = { name: 'load1', color: '#f59e0b', type: 'line', values: h.load.map((p) => p[1]) };
        const s = [load];
        if (h.ncpu) s.push({ name: `${h.ncpu} CPUs`, color: '#94a3b8', type: 'hline', value: h.ncpu });
        charts.push(html`<div class="chart-box"><h3>Load average ${legend(s)}</h3>${chart({ ...common, id: `load-${h.host}`, t: h.load.map((p) => p[0]), series: s })}</div>`);
      }
      if (h.requests.t.length) {
        const r = h.requests;
        const rate = [{ name: 'requests/s', color: '#2563eb', type: 'area', values: r.rate }];
        const lat = [
          { name: 'p50', color: '#0d9488', type: 'line', values: r.p50_ms },
          { name: 'p95', color: '#dc2626', type: 'line', values: r.p95_ms },
        ];
        const conc = [{ name: 'in flight', color: '#7c3aed', type: 'area', values: r.concurrency }];
        charts.push(html`<div class="chart-box"><h3>Request rate ${legend(rate)}</h3>${chart({ ...common, id: `rate-${h.host}`, t: r.t, series: rate, unit: '/s' })}</div>`);
        charts.push(html`<div class="chart-box"><h3>Latency ${legend(lat)}</h3>${chart({ ...common, id: `latency-${h.host}`, t: r.t, series: lat, unit: ' ms' })}</div>`);
        charts.push(html`<div class="chart-box"><h3>Requests in flight ${legend(conc)}</h3>${chart({ ...common, id: `concurrency-${h.host}`, t: r.t, series: conc })}</div>`);
      }
      const types = Object.keys(h.waits.by_type);
      if (types.length) {
        types.sort((a, b) => (a === 'CPU' ? -1 : b === 'CPU' ? 1 : a.localeCompare(b)));
        const s = types.map((ty) => ({ name: ty, color: WAIT_COLORS[ty] || '#64748b', type: 'area', values: h.waits.by_type[ty] }));
        charts.push(html`<div class="chart-box"><h3>Active database backends by wait event type ${legend(s)}</h3>${chart({ ...common, id: `waits-${h.host}`, t: h.waits.t, series: s })}</div>`);
      }
      blocks.push(html`<div class="host card" data-test="host-${h.host}"><h2>${label}</h2>${charts}</div>`);
    }
    box.innerHTML = part(html`${blocks}`);

    const selBox = document.getElementById('selection');
    const showSel = (s) => {
      setParams({ sel_from: s ? isoUtc(s.from) : null, sel_to: s ? isoUtc(s.to) : null });
      selBox.hidden = !s;
      if (!s) return;
      const w = { from: isoUtc(s.from), to: isoUtc(s.to) };
      selBox.innerHTML = part(html`<span>Selected ${span(s.from, s.to)}</span>
        <a class="button" href="${link('spike', w)}" data-test="report-selection">Report on this window</a>
        <a class="button ghost" href="${link('requests', w)}">Requests in it</a>
        <a class="button ghost" href="${link('timeline', w)}">Zoom to it</a>
        <button type="button" class="ghost" id="clear-sel">Clear</button>`);
      document.getElementById('clear-sel').onclick = () => { drawSel(0, 0); showSel(null); };
    };
    const drawSel = wireCharts(showSel, sel);
    if (sel) showSel(sel);
    wireRangePicker('timeline');
  }

  // --------------------------------------------------------------- spike
  const MINOR_SHARE = 0.005;
  const KIND_LABEL = { lock_blocker: 'lock', n_plus_one: 'n+1', sql_fingerprint: 'sql', php_function: 'function', wait_event: 'db wait', php_cpu: 'php cpu', off_cpu: 'off-cpu', host_memory: 'memory', endpoint: 'endpoint' };

  /** True when a suspect's evidence, or the whole report, had no baseline requests. */
  const noBaseline = (ev) => ev && ev.baseline_requests === 0;
  const NO_BASELINE = 'no baseline data';

  /** Evidence keys paired with their baseline_ twins, as rows of window against baseline. */
  function evidenceRows(ev, win) {
    const rows = [];
    const skip = new Set(['blocker_correlation_ids', 'top_fingerprints']);
    const none = noBaseline(ev);
    for (const [k, v] of Object.entries(ev)) {
      // A statement's fingerprint links its text (blocker_query by blocker_fingerprint).
      if (k.startsWith('baseline_') || skip.has(k) || k.endsWith('_fingerprint')) continue;
      const b = ev[`baseline_${k}`];
      const base = b === undefined ? '' : none ? html`<span data-test="no-baseline">${NO_BASELINE}</span>` : fmtValue(b);
      const fp = k.endsWith('_query') ? ev[k.replace(/_query$/, '_fingerprint')] : null;
      const shown = fp && win ? html`<a class="code" href="${link('sql', { fp, ...win })}" data-test="evidence-${k}">${fmtValue(v)}</a>` : fmtValue(v);
      rows.push(html`<tr><th>${k.replace(/_/g, ' ')}</th><td class="${typeof v === 'number' ? 'num' : 'text'}">${shown}</td><td class="num muted">${base}</td></tr>`);
    }
    for (const [k, v] of Object.entries(ev)) {
      if (k.startsWith('baseline_') && !(k.slice(9) in ev)) rows.push(html`<tr><th>${k.slice(9).replace(/_/g, ' ')}</th><td class="num">–</td><td class="num muted">${fmtValue(v)}</td></tr>`);
    }
    return rows;
  }
  const fmtValue = (v) => {
    if (typeof v === 'number') return num(v, 3);
    if (v === null || v === undefined) return '–';
    if (typeof v === 'object') return JSON.stringify(v);
    return v;
  };
  const secs = (s) => {
    const a = Math.abs(s);
    return `${a >= 100 ? s.toFixed(0) : a >= 10 ? s.toFixed(1) : s.toFixed(2)} s`;
  };

  const shareBar = (share) => html`<svg class="share" viewBox="0 0 100 8" width="100" height="8" role="img" aria-label="${pct(share)}"><rect width="100" height="8" rx="2" class="track"/><rect width="${Math.max(0, Math.min(100, share * 100))}" height="8" rx="2" class="fill"/></svg>`;

  async function spikePage(g) {
    const p = params();
    const from = toMs(p.get('from'));
    const to = toMs(p.get('to'));
    if (!(to > from)) {
      main.innerHTML = part(html`<div class="error">A spike report needs a window: pick a spike or drag across the <a href="${link('timeline')}">timeline</a>.</div>`);
      return;
    }
    const r = await api('/v1/report', { from: isoUtc(from), to: isoUtc(to), baseline_from: p.get('baseline_from'), baseline_to: p.get('baseline_to') });
    if (!current(g)) return;
    const bFrom = toMs(r.baseline_from);
    const bTo = toMs(r.baseline_to);
    const t = r.totals;
    // Suspect #1 is open unless another is asked for (s=0 closes them all).
    const open = Number(p.get('s') ?? 1);
    const noBase = !(t.baseline_requests > 0);
    const baselineOf = (_, text) => (noBase ? html`<span data-test="no-baseline">${NO_BASELINE}</span>` : text);
    // The first few always show; beyond them only suspects worth reading, unless asked.
    const shown = p.get('all') ? r.suspects : r.suspects.filter((x, i) => i < 5 || x.share >= MINOR_SHARE || x.rank === open);
    const hidden = r.suspects.length - shown.length;
    const win = { from: isoUtc(from), to: isoUtc(to) };
    const around = Math.max(to - from, 600000);
    const timelineLink = link('timeline', { from: isoUtc(bFrom - around / 2), to: isoUtc(to + around / 2), sel_from: win.from, sel_to: win.to });
    const hostLine = (h) => html`<tr><th>${h.host} <span class="muted">${h.source}</span></th>
      <td class="num">${num(h.load1_max, 2)}</td><td class="num muted">${num(h.baseline_load1_max, 2)}</td>
      <td class="num">${num(h.cpu_pct, 1)} %</td><td class="num muted">${num(h.baseline_cpu_pct, 1)} %</td>
      <td class="num">${num(h.iowait_pct, 1)} %</td><td class="num muted">${num(h.baseline_iowait_pct, 1)} %</td>
      <td class="num">${bytes(h.swap_used_bytes)}</td><td class="num muted">${bytes(h.baseline_swap_used_bytes)}</td></tr>`;

    main.innerHTML = part(html`
      <div class="page-head">
        <h1>Spike report</h1>
        <div class="window">${span(from, to)} <span class="muted">against the baseline</span> ${span(bFrom, bTo)}</div>
        <div class="buttons">
          <a class="button ghost" href="${timelineLink}">Timeline around it</a>
          <a class="button ghost" href="${link('requests', { ...win, sort: 'slowest' })}">Requests in the window</a>
        </div>
      </div>
      <p class="verdict card" data-test="verdict"><strong>Verdict:</strong> ${r.verdict}</p>
      <div class="cards">
        <div class="card stat"><span class="label">Requests</span><b>${num(t.requests, 0)}</b><span class="muted">${baselineOf(t, `baseline ${num(t.baseline_requests, 0)}`)}</span></div>
        <div class="card stat"><span class="label">Request-seconds</span><b>${num(t.request_seconds, 1)}</b><span class="muted">${baselineOf(t, `baseline ${num(t.baseline_request_seconds, 1)}`)}</span></div>
        <div class="card stat"><span class="label">Excess request-seconds</span><b>${num(t.excess_request_seconds, 1)}</b><span class="muted">what the suspects share</span></div>
      </div>
      ${(t.notes || []).length ? html`<section class="card" data-test="report-notes">${t.notes.map((n) => html`<p class="muted">Note: ${n}</p>`)}</section>` : ''}
      <section class="card">
        <h2>Suspects, ranked by the excess load they explain</h2>
        ${r.suspects.length ? html`<table class="suspects" data-test="suspects">
          <thead><tr><th>#</th><th>kind</th><th>suspect</th><th>share of excess</th><th class="num">excess s</th><th class="num">window s</th><th class="num">baseline s</th></tr></thead>
          <tbody>${shown.map((s) => html`
            <tr class="suspect${s.rank === open ? ' open' : ''}" data-rank="${s.rank}" data-test="suspect-${s.rank}" tabindex="0" aria-expanded="${s.rank === open}">
              <td>${s.rank}</td><td><span class="badge ${s.kind}">${KIND_LABEL[s.kind] || s.kind}</span></td>
              <td class="name"><span class="${s.kind === 'sql_fingerprint' ? 'code' : ''}">${s.name}</span>${s.endpoint && s.endpoint !== s.name ? html`<div class="muted small">${s.kind === 'lock_blocker' ? 'its waiters mostly in' : 'mostly in'} ${s.endpoint}</div>` : ''}</td>
              <td>${shareBar(s.share)} ${pct(s.share)}</td><td class="num">${num(s.score_s, 1)}</td><td class="num">${num(s.window_s, 1)}</td><td class="num muted">${noBase || noBaseline(s.evidence) ? html`<span data-test="no-baseline">${NO_BASELINE}</span>` : num(s.baseline_s, 1)}</td></tr>
            ${s.rank === open ? html`<tr class="detail"><td colspan="7"><div id="suspect-detail" data-test="suspect-detail"></div></td></tr>` : ''}`)}
          ${hidden ? html`<tr class="more"><td colspan="7"><a href="${link('spike', { ...Object.fromEntries(params()), all: '1' })}">Show ${hidden} more suspect${hidden === 1 ? '' : 's'}, each under ${pct(MINOR_SHARE)} of the excess</a></td></tr>` : ''}</tbody></table>
          ${r.suspects.length > 1 ? html`<p class="hint" data-test="overlap-note">Suspects overlap: a lock blocker's waiters include other suspects' time (the statements that waited, the endpoints they ran in), so the shares need not add up to 100 %.</p>` : ''}`
          : html`<p class="muted">No suspect: the window carries no more load than its baseline.</p>`}
      </section>
      <section class="card"><h2>Baseline, then the window <span class="muted small">(grey: baseline, amber: window)</span></h2><div class="grid2" id="spike-charts"><p class="muted">Loading…</p></div></section>
      <div class="two">
        <section class="card"><h2>Hosts</h2>
          <table><thead><tr><th></th><th class="num" colspan="2">load1 max</th><th class="num" colspan="2">CPU</th><th class="num" colspan="2">iowait</th><th class="num" colspan="2">swap used</th></tr>
          <tr class="sub"><th></th>${[1, 2, 3, 4].map(() => html`<th class="num">window</th><th class="num muted">baseline</th>`)}</tr></thead>
          <tbody>${r.hosts.map(hostLine)}</tbody></table></section>
        <section class="card"><h2>Database events</h2>
          ${r.events.length ? html`<table><thead><tr><th>class</th><th class="num">window</th><th class="num">baseline</th><th class="num">bytes</th></tr></thead>
          <tbody>${r.events.map((e) => html`<tr><th>${e.class}</th><td class="num">${num(e.count, 0)}</td><td class="num muted">${num(e.baseline_count, 0)}</td><td class="num">${e.bytes ? bytes(e.bytes) : ''}</td></tr>`)}</tbody></table>`
          : html`<p class="muted">No deadlock, lock wait, temp file or checkpoint logged.</p>`}</section>
      </div>`);

    for (const row of main.querySelectorAll('tr.suspect')) {
      const toggle = () => {
        const rank = Number(row.dataset.rank);
        setParams({ s: rank === open ? 0 : rank === 1 ? null : rank });
        render();
      };
      row.onclick = (e) => { if (!e.target.closest('a')) toggle(); };
      row.onkeydown = (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggle(); } };
    }
    const s = r.suspects.find((x) => x.rank === open);
    await Promise.all([s ? suspectDetail(g, s, win) : null, spikeCharts(g, bFrom, bTo, from, to)]);
  }

  /** Small charts of each host over the baseline and the window, the window shaded. */
  async function spikeCharts(g, bFrom, bTo, from, to) {
    const tl = await api('/v1/ui/timeline', { from: isoUtc(bFrom), to: isoUtc(to) });
    if (!current(g)) return;
    const box = document.getElementById('spike-charts');
    const width = cellWidth(box, 24);
    const bucketMs = tl.bucket_s * 1000;
    const marks = [{ from: bFrom, to: bTo, title: 'baseline', cls: 'baseline' }, { from, to, title: 'window' }];
    const c = { width, height: 110, x0: bFrom, x1: to, bucketMs, marks };
    const cells = [];
    for (const h of tl.hosts) {
      if (h.load.length) {
        const s = [{ name: 'load1', color: '#f59e0b', type: 'line', values: h.load.map((p) => p[1]) }];
        cells.push(html`<div class="chart-box"><h3>${h.host}: load average</h3>${chart({ ...c, id: `spike-load-${h.host}`, t: h.load.map((p) => p[0]), series: s })}</div>`);
      }
      if (h.requests.t.length) {
        const s = [{ name: 'in flight', color: '#7c3aed', type: 'area', values: h.requests.concurrency }];
        cells.push(html`<div class="chart-box"><h3>${h.host}: requests in flight</h3>${chart({ ...c, id: `spike-conc-${h.host}`, t: h.requests.t, series: s })}</div>`);
      }
      const types = Object.keys(h.waits.by_type).sort();
      if (types.length) {
        const s = types.map((ty) => ({ name: ty, color: WAIT_COLORS[ty] || '#64748b', type: 'area', values: h.waits.by_type[ty] }));
        cells.push(html`<div class="chart-box"><h3>${h.host}: active backends ${legend(s)}</h3>${chart({ ...c, id: `spike-waits-${h.host}`, t: h.waits.t, series: s })}</div>`);
      }
    }
    box.innerHTML = part(cells.length ? html`${cells}` : html`<p class="muted">No series in this window.</p>`);
    wireCharts(() => {}, null);
  }

  async function suspectDetail(g, s, win) {
    const box = document.getElementById('suspect-detail');
    const links = [];
    if (s.kind === 'sql_fingerprint') links.push(html`<a class="button" href="${link('sql', { fp: s.name, ...win })}">Open this SQL fingerprint</a>`);
    if (s.endpoint) links.push(html`<a class="button ghost" href="${link('requests', { ...win, endpoint: s.endpoint, sort: 'slowest' })}">All requests of ${s.endpoint}</a>`);
    let requests = [];
    let title = '';
    const ids = s.evidence.blocker_correlation_ids;
    if (s.kind === 'lock_blocker' && ids && ids.length) {
      title = 'Blocking requests (they held the lock the others waited for)';
      const found = await Promise.all(ids.map((id) => api(`/v1/ui/requests/${encodeURIComponent(id)}`).catch(() => null)));
      requests = found.filter(Boolean).map((d) => ({ ...d.request, correlation_id: d.correlation_id })).sort((a, b) => toMs(a.ts) - toMs(b.ts));
    } else if (s.endpoint) {
      title = `Slowest requests of ${s.endpoint} in the window`;
      const list = await api('/v1/requests', { ...win, endpoint: s.endpoint, sort: 'slowest', limit: 8 });
      requests = list.requests;
    }
    if (!current(g)) return;
    const top = s.evidence.top_fingerprints;
    box.innerHTML = part(html`
      <div class="detail-grid">
        <div><h3>Evidence <span class="muted small">window against baseline</span></h3>
          <table class="evidence"><thead><tr><th></th><th>window</th><th class="muted">baseline</th></tr></thead><tbody>${evidenceRows(s.evidence, win)}</tbody></table>
          ${top && top.length ? html`<h3>Statements that waited</h3><ul class="plain">${top.map((f) => html`<li>${num(f.seconds, 1)} s · ${f.fingerprint ? html`<a class="code" href="${link('sql', { fp: f.fingerprint, ...win })}">${f.fingerprint}</a>` : html`<span class="muted">(no statement)</span>`}</li>`)}</ul>` : ''}
        </div>
        <div><h3>${title || 'Requests'}</h3>
          ${requests.length ? requestTable(requests, { compact: true }) : html`<p class="muted">No request to show for this suspect.</p>`}
          <div class="buttons">${links}</div>
        </div>
      </div>`);
  }

  // ------------------------------------------------------------ requests
  function requestTable(rows, { compact = false } = {}) {
    const max = Math.max(1, ...rows.map((r) => r.duration_ms || 0));
    return html`<table class="requests" data-test="requests-table"><thead><tr><th>time</th>${compact ? '' : html`<th>host</th>`}<th>endpoint</th><th>URL</th><th class="num">status</th><th class="num">duration</th>${compact ? '' : html`<th class="num">SQL</th><th>record</th>`}</tr></thead>
      <tbody>${rows.map((r) => html`<tr>
        <td>${when(r.ts)}</td>${compact ? '' : html`<td>${r.host}</td>`}
        <td><a href="${link(`request/${r.correlation_id}`)}" data-test="request-link">${r.endpoint}</a></td>
        <td class="url" title="${r.url || ''}">${r.url || ''}</td>
        <td class="num ${r.status >= 500 ? 'bad' : ''}">${r.status ?? ''}</td>
        <td class="num"><svg class="dur" viewBox="0 0 60 6" width="60" height="6"><rect width="${(60 * (r.duration_ms || 0)) / max}" height="6" rx="1"/></svg> ${ms(r.duration_ms)}</td>
        ${compact ? '' : html`<td class="num">${r.sql_total_ms === null || r.sql_total_ms === undefined ? '' : ms(r.sql_total_ms)}</td><td>${r.record_type || ''}${r.profiler ? html` <span class="muted">· ${r.profiler}</span>` : ''}</td>`}</tr>`)}</tbody></table>`;
  }

  /** A datetime-local input value (viewer's zone) from ms, and back. */
  const toLocalInput = (v) => { const d = new Date(v); return `${localDate(d)}T${localClock(d)}`; };
  const fromLocalInput = (s) => (s ? new Date(s).getTime() : NaN);

  async function requestsPage(g) {
    const win = await windowOrDefault(g);
    if (!current(g)) return;
    if (!win) { main.innerHTML = part(noData()); return; }
    const p = params();
    const f = { host: p.get('host') || '', endpoint: p.get('endpoint') || '', status: p.get('status') || '', min_ms: p.get('min_ms') || '', limit: p.get('limit') || '200', sort: p.get('sort') || 'newest' };
    const offset = Math.max(0, Number(p.get('offset')) || 0);
    // The store sorts and pages, so "slowest first" is the window's slowest, not the newest page's.
    const [facets, list] = await Promise.all([
      api('/v1/ui/facets', { from: isoUtc(win.from), to: isoUtc(win.to) }),
      api('/v1/requests', { from: isoUtc(win.from), to: isoUtc(win.to), host: f.host, endpoint: f.endpoint, status: f.status, min_ms: f.min_ms, limit: f.limit, sort: f.sort, offset }),
    ]);
    if (!current(g)) return;
    const rows = list.requests;
    const pageLink = (o) => link('requests', { ...Object.fromEntries(params()), offset: o || '' });
    const pager = html`<div class="buttons pager" data-test="pager">
      ${offset > 0 ? html`<a class="button ghost" href="${pageLink(Math.max(0, offset - Number(f.limit)))}" data-test="prev-page">◀ Previous ${f.limit}</a>` : ''}
      ${list.next_offset ? html`<a class="button ghost" href="${pageLink(list.next_offset)}" data-test="next-page">Next ${f.limit} ▶</a>` : ''}</div>`;
    const opt = (v, cur, label = v) => html`<option value="${v}" ${v === cur ? new Raw('selected') : ''}>${label}</option>`;
    main.innerHTML = part(html`
      <div class="page-head"><h1>Requests</h1><div class="window">${span(win.from, win.to)}</div></div>
      ${rangePicker('requests', win, { host: f.host, endpoint: f.endpoint, status: f.status, min_ms: f.min_ms, sort: p.get('sort'), limit: p.get('limit') }, false)}
      <form class="card filters" id="filters" data-test="filters">
        <label>From <input type="datetime-local" step="1" name="from" value="${toLocalInput(win.from)}"></label>
        <label>To <input type="datetime-local" step="1" name="to" value="${toLocalInput(win.to)}"></label>
        ${who() && who().admin ? html`<label>Project <select name="project">${opt('', p.get('project') || '', 'all')}${facets.projects.map((x) => opt(x, p.get('project') || ''))}</select></label>` : ''}
        <label>Host <select name="host">${opt('', f.host, 'any')}${facets.hosts.map((x) => opt(x, f.host))}</select></label>
        <label class="wide">Endpoint <select name="endpoint">${opt('', f.endpoint, 'any')}${facets.endpoints.map((x) => opt(x, f.endpoint))}</select></label>
        <label>Status <input name="status" inputmode="numeric" size="4" value="${f.status}" placeholder="any"></label>
        <label>Min duration (ms) <input name="min_ms" inputmode="decimal" size="6" value="${f.min_ms}" placeholder="0"></label>
        <label>Order <select name="sort">${opt('newest', f.sort, 'newest first')}${opt('oldest', f.sort, 'oldest first')}${opt('slowest', f.sort, 'slowest first')}${opt('fastest', f.sort, 'fastest first')}</select></label>
        <label>Limit <select name="limit">${['50', '200', '1000', '5000'].map((x) => opt(x, f.limit))}</select></label>
        <button type="submit">Apply</button>
      </form>
      <section class="card">
        <h2 data-test="requests-count">${rows.length ? `Requests ${offset + 1}–${offset + rows.length}` : 'No request'}
          <span class="muted">(${f.sort} first${list.next_offset ? ', more on the next page' : ''})</span></h2>
        ${rows.length ? requestTable(rows) : html`<p class="muted">No request matches.</p>`}
        ${pager}
      </section>`);
    document.getElementById('filters').onsubmit = (e) => {
      e.preventDefault();
      const d = new FormData(e.target);
      const a = fromLocalInput(d.get('from'));
      const b = fromLocalInput(d.get('to'));
      const q = { from: Number.isNaN(a) ? '' : isoUtc(a), to: Number.isNaN(b) ? '' : isoUtc(b) };
      for (const k of ['project', 'host', 'endpoint', 'status', 'min_ms', 'sort', 'limit']) q[k] = d.get(k) || '';
      q.refresh = params().get('refresh') || '';
      if (q.sort === 'newest') q.sort = '';
      if (q.limit === '200') q.limit = '';
      const s = new URLSearchParams(Object.entries(q).filter(([, v]) => v)).toString();
      go(`/ui/requests${s ? '?' + s : ''}`);
    };
    wireRangePicker('requests');
  }

  // ------------------------------------------------------------- request
  async function requestPage(g, id) {
    const d = await api(`/v1/ui/requests/${encodeURIComponent(id)}`).catch((e) => {
      if (e instanceof ApiFailure && e.status === 404) return null;
      throw e;
    });
    if (!current(g)) return;
    if (!d) {
      main.innerHTML = part(html`<div class="empty card" data-test="not-found"><h2>Request not found</h2>
        <p>No request <code>${id}</code> in ${who() && who().project ? html`project <b>${who().project}</b>` : 'the store'}.</p></div>`);
      return;
    }
    const r = d.request;
    const end = toMs(r.ts);
    const start = toMs(r.started_at);
    const around = { from: isoUtc(start - 300000), to: isoUtc(end + 300000) };
    const fact = (label, v) => html`<div><span class="label">${label}</span><span>${v}</span></div>`;
    // The endpoint starts with the method (or the SAPI of a script): shown once, as a badge.
    const cut = String(r.endpoint || '').indexOf(' ');
    const [verb, route] = cut > 0 ? [r.endpoint.slice(0, cut), r.endpoint.slice(cut + 1)] : [r.method || r.sapi || '', r.endpoint || ''];
    setTitle(`${r.endpoint} · Request`);
    // A sampling profiler counts samples with the function on the stack; an instrumenting one counts calls.
    const sampled = d.profile.profiler === 'excimer';
    main.innerHTML = part(html`
      <div class="page-head">
        <h1 data-test="request-heading">${verb ? html`<span class="badge endpoint">${verb}</span> ` : ''}${route}</h1>
        <div class="window url">${r.url || ''}</div>
        <div class="buttons">
          <a class="button ghost" href="${link('requests', { ...around, endpoint: r.endpoint })}">Same endpoint around it</a>
          <a class="button ghost" href="${link('timeline', { ...around, sel_from: isoUtc(start), sel_to: isoUtc(end) })}">Timeline around it</a>
        </div>
      </div>
      <section class="card facts">
        ${fact('started', when(start))}${fact('duration', ms(r.duration_ms))}${fact('status', r.status ?? '–')}
        ${fact('host', r.host)}${fact('project', r.project)}${fact('CPU user / system', `${ms(r.cpu_user_ms)} / ${ms(r.cpu_system_ms)}`)}
        ${fact('memory peak', r.memory_peak_bytes ? bytes(r.memory_peak_bytes) : '–')}
        ${fact('SQL', `${r.sql_total_count ?? 0} statements, ${ms(r.sql_total_ms || 0)}`)}
        ${fact('profiler', r.profiler || 'none')}${fact('record', r.record_type || '')}
        ${fact('correlation ID', html`<code>${d.correlation_id}</code>`)}
        ${r.error_message ? fact('error', html`<span class="bad">${r.error_message}</span>`) : ''}
      </section>
      <section class="card" id="flame-card">
        <div class="section-head"><h2>Flame graph</h2>
          ${d.profile.folded.length ? html`<form id="flame-search" class="inline" role="search">
            <input name="q" type="search" placeholder="Search functions (regular expression)" value="${params().get('fq') || ''}" aria-label="Search functions">
            <span id="flame-match" class="muted" data-test="flame-match"></span>
            <button type="button" class="ghost" id="flame-reset" disabled>Reset zoom</button>
            <button type="button" class="ghost" id="flame-svg">Download SVG</button></form>` : ''}</div>
        ${d.profile.folded.length ? html`<p class="hint">Click a frame to zoom into it; click the top row to zoom out. Width is time (${d.profile.profiler}).</p><div id="flame" data-test="flamegraph"></div>`
          : html`<p class="muted">No profile: the agent profiles requests over its threshold only.</p>`}
      </section>
      ${d.profile.calls.length ? html`<section class="card" id="calls-card"><div class="section-head"><h2>Functions</h2>
          <form class="inline" id="calls-filter" role="search"><input type="search" name="ft" value="${params().get('ft') || ''}" placeholder="Filter functions" aria-label="Filter functions" data-test="calls-filter">
          <span class="muted" id="calls-count" data-test="calls-count"></span></form></div>
        <div class="scroll"><table class="calls" data-test="calls"><thead><tr>${[['function', 'function'], ['count', sampled ? 'samples' : 'calls'], ['inclusive_ms', 'inclusive'], ['exclusive_ms', 'exclusive']].map(([k, label]) => html`<th class="${k === 'function' ? '' : 'num'}" data-sort="${k}"${k === 'count' && sampled ? new Raw(` title="Excimer samples with this function on the stack${r.profile_period_ms ? `, one every ${esc(r.profile_period_ms)} ms` : ''}"`) : ''}><button type="button" class="sort" data-test="calls-sort-${k}">${label}</button></th>`)}</tr></thead>
        <tbody id="calls-body"></tbody></table></div>
        <p class="hint">A name searches the flame graph; “callers and callees” shows who called it and what it called, from the profile's stacks.</p>
        <div id="calls-graph" data-test="calls-graph"></div></section>` : ''}
      <section class="card" data-test="sql-list"><h2>SQL <span class="muted">(${d.sql.length})</span></h2>
        ${d.sql.length ? sqlTable(d.sql, r.duration_ms, around) : html`<p class="muted">No statement captured.</p>`}</section>
      ${d.lock_tree && d.lock_tree.roots.length ? lockTree(d.lock_tree, around) : ''}
      <section class="card" data-test="db-activity"><h2>Database activity <span class="muted">(pg_stat_activity samples of its backend)</span></h2>
        ${d.activity.length ? activityTable(d.activity, around) : html`<p class="muted">No sample of its backend: it ran between samples, or its connection carried no correlation ID.</p>`}</section>
      <section class="card"><h2>Log events</h2>
        ${d.logs.length ? html`<table><thead><tr><th>time</th><th>class</th><th>severity</th><th>message</th><th class="num">duration</th></tr></thead>
          <tbody>${d.logs.map((l) => html`<tr><td>${when(l.ts, false)}</td><td><span class="badge">${l.class}</span></td><td>${l.severity || ''}</td>
            <td class="text">${l.message || ''}${l.detail ? html`<div class="muted small">${l.detail}</div>` : ''}${l.fingerprint ? html`<div><a class="code small" href="${link('sql', { fp: l.fingerprint, ...around })}">${l.fingerprint}</a></div>` : ''}</td>
            <td class="num">${l.duration_ms ? ms(Number(l.duration_ms)) : l.lock_waited_ms ? ms(Number(l.lock_waited_ms)) : ''}</td></tr>`)}</tbody></table>`
          : html`<p class="muted">No PostgreSQL log event carries its correlation ID.</p>`}</section>`);

    if (d.profile.folded.length) {
      const fg = flameGraph(document.getElementById('flame'), d.profile.folded, (path) => setParams({ fz: path }));
      if (params().get('fz')) fg.zoomPath(params().get('fz'));
      const form = document.getElementById('flame-search');
      const input = form.elements.q;
      const apply = () => { setParams({ fq: input.value }); fg.search(input.value); };
      form.onsubmit = (e) => { e.preventDefault(); apply(); };
      input.addEventListener('input', apply);
      document.getElementById('flame-reset').onclick = () => fg.zoom(null);
      document.getElementById('flame-svg').onclick = async () => {
        const blob = await api(`/v1/requests/${encodeURIComponent(d.correlation_id)}/flamegraph.svg`, {}, 'blob');
        const a = document.createElement('a');
        a.href = URL.createObjectURL(blob);
        a.download = `flamegraph-${short(d.correlation_id)}.svg`;
        a.click();
        setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      };
      if (input.value) fg.search(input.value);
    }
    if (d.profile.calls.length) functionTable(d, sampled, (fn) => {
      const input = document.querySelector('#flame-search input[name=q]');
      if (!input) return;
      input.value = fn.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      input.dispatchEvent(new Event('input'));
      // scroll-margin-top in app.css keeps the card clear of the sticky header.
      document.getElementById('flame-card').scrollIntoView({ block: 'start' });
    });
  }

  /** Limit of rows the function table draws; the count says how many match. */
  const CALLS_SHOWN = 200;

  /**
   * The request's function table, as XHGui users expect it: sortable by
   * any column (`cs`, `cd` in the URL), filtered by name (`ft`), and the
   * callers and callees of one function (`fn`), from the folded stacks.
   */
  function functionTable(d, sampled, searchFlame) {
    const rows = d.profile.calls.map((c) => ({ ...c, count: sampled ? c.samples : c.calls }));
    const state = () => {
      const q = params();
      const key = ['function', 'count', 'inclusive_ms', 'exclusive_ms'].includes(q.get('cs')) ? q.get('cs') : 'exclusive_ms';
      return { key, up: q.get('cd') === 'asc', filter: (q.get('ft') || '').toLowerCase(), fn: q.get('fn') || '' };
    };
    const body = document.getElementById('calls-body');
    const draw = () => {
      const { key, up, filter, fn } = state();
      // The rows are drawn anew: a focused button or name gets the focus back.
      const a = document.activeElement;
      const again = a && body.contains(a) ? (a.dataset.graph !== undefined ? `button[data-graph="${CSS.escape(a.dataset.graph)}"]` : a.dataset.fn !== undefined ? `a[data-fn="${CSS.escape(a.dataset.fn)}"]` : null) : null;
      const shown = rows.filter((c) => !filter || c.function.toLowerCase().includes(filter));
      shown.sort((a, b) => {
        const c = key === 'function' ? a.function.localeCompare(b.function) : (a[key] ?? -Infinity) - (b[key] ?? -Infinity);
        return up ? c : -c;
      });
      body.innerHTML = part(html`${shown.slice(0, CALLS_SHOWN).map((c) => html`<tr class="${c.function === fn ? 'picked' : ''}">
        <td class="text"><a href="#" class="code fn" data-fn="${c.function}">${c.function}</a>
          <button type="button" class="ghost small graph" data-graph="${c.function}" aria-pressed="${c.function === fn}" data-test="calls-graph-button">callers and callees</button></td>
        <td class="num">${num(c.count, 0)}</td><td class="num">${ms(c.inclusive_ms)}</td><td class="num">${ms(c.exclusive_ms)}</td></tr>`)}`);
      if (again && body.querySelector(again)) body.querySelector(again).focus({ preventScroll: true });
      document.getElementById('calls-count').textContent = `${Math.min(shown.length, CALLS_SHOWN)} of ${rows.length}${shown.length > CALLS_SHOWN ? ` (${shown.length} match)` : ''}`;
      for (const th of main.querySelectorAll('#calls-card th[data-sort]')) {
        th.setAttribute('aria-sort', th.dataset.sort === key ? (up ? 'ascending' : 'descending') : 'none');
      }
      drawGraph(fn);
    };
    const drawGraph = (fn) => {
      const box = document.getElementById('calls-graph');
      if (!fn) { box.innerHTML = ''; return; }
      const { callers, callees, total } = neighbours(d.profile.folded, fn);
      const list = (title, m, test) => {
        const entries = [...m.entries()].sort((a, b) => b[1] - a[1]);
        return html`<div><h3>${title} <span class="muted">(${entries.length})</span></h3>${entries.length ? html`<table data-test="${test}"><tbody>${entries.map(([name, us]) => html`<tr>
          <td class="text">${name === ROOT_CALLER ? html`<span class="muted">${name}</span>` : html`<a href="#" class="code" data-pick="${name}">${name}</a>`}</td>
          <td class="num">${ms(us / 1000)}</td><td class="num">${pct(total ? us / total : 0)}</td></tr>`)}</tbody></table>` : html`<p class="muted">None.</p>`}</div>`;
      };
      box.innerHTML = part(html`<div class="graph-head"><h3>Around <code>${fn}</code> <span class="muted">(${ms(total / 1000)} inclusive)</span></h3>
        <button type="button" class="ghost" id="calls-graph-close">Close</button></div>
        <div class="two">${list('Called from', callers, 'callers')}${list('Calls', callees, 'callees')}</div>`);
    };
    const card = document.getElementById('calls-card');
    card.addEventListener('click', (e) => {
      const sort = e.target.closest('th[data-sort] button');
      const fn = e.target.closest('a.fn');
      const graph = e.target.closest('button[data-graph]');
      const pick = e.target.closest('a[data-pick]');
      if (sort) {
        const k = sort.parentElement.dataset.sort;
        const { key, up } = state();
        const dir = key === k ? (up ? 'desc' : 'asc') : (k === 'function' ? 'asc' : 'desc');
        setParams({ cs: k === 'exclusive_ms' && dir === 'desc' ? null : k, cd: dir === 'desc' ? null : dir });
        draw();
      } else if (fn) {
        e.preventDefault();
        searchFlame(fn.dataset.fn);
      } else if (graph) {
        setParams({ fn: state().fn === graph.dataset.graph ? null : graph.dataset.graph });
        draw();
      } else if (pick) {
        e.preventDefault();
        setParams({ fn: pick.dataset.pick });
        draw();
        document.getElementById('calls-graph').scrollIntoView({ block: 'nearest' });
      } else if (e.target.id === 'calls-graph-close') {
        setParams({ fn: null });
        draw();
      }
    });
    const input = card.querySelector('#calls-filter input');
    input.addEventListener('input', () => { setParams({ ft: input.value }); draw(); });
    card.querySelector('#calls-filter').onsubmit = (e) => e.preventDefault();
    draw();
  }

  const ROOT_CALLER = '(the request itself)';
  /**
   * Callers and callees of a function from folded stacks (µs): each stack's
   * time goes to the frame above the function's first place in it and the
   * frame below, so recursion counts once.
   */
  function neighbours(folded, fn) {
    const callers = new Map();
    const callees = new Map();
    let total = 0;
    for (const line of folded) {
      const cut = line.lastIndexOf(' ');
      const v = Number(line.slice(cut + 1));
      if (!(v > 0)) continue;
      const frames = line.slice(0, cut).split(';');
      const i = frames.indexOf(fn);
      if (i < 0) continue;
      total += v;
      const up = i > 0 ? frames[i - 1] : ROOT_CALLER;
      callers.set(up, (callers.get(up) || 0) + v);
      if (i + 1 < frames.length) callees.set(frames[i + 1], (callees.get(frames[i + 1]) || 0) + v);
    }
    return { callers, callees, total };
  }

  function sqlTable(statements, requestMs, around) {
    const total = Math.max(requestMs || 0, ...statements.map((s) => s.start_ms + s.duration_ms), 1);
    return html`<table class="sql"><thead><tr><th class="num">#</th><th>when in the request</th><th class="num">duration</th><th>statement</th><th>called from</th></tr></thead>
      <tbody>${statements.map((s) => html`<tr class="${s.status === 'failed' ? 'failed' : ''}">
        <td class="num">${s.idx}</td>
        <td><svg class="waterfall" viewBox="0 0 120 8" width="120" height="8"><rect class="track" width="120" height="8"/><rect class="fill" x="${Math.min(118, (120 * s.start_ms) / total)}" width="${Math.max(2, (120 * s.duration_ms) / total)}" height="8"/></svg><div class="muted small">+${ms(s.start_ms)}</div></td>
        <td class="num">${ms(s.duration_ms)}</td>
        <td class="text"><span class="badge">${s.op}</span>${s.rows !== null && s.rows !== undefined ? html` <span class="muted small">${s.rows} row${s.rows === 1 ? '' : 's'}</span>` : ''}
          ${sqlBlock(s.sql)}
          ${s.params ? html`<div class="small"><span class="muted">bound values (redacted at the source):</span> <code>${s.params}</code></div>` : ''}
          ${s.error ? html`<div class="bad small">${s.error}</div>` : ''}
          ${s.fingerprint ? html`<a class="small" href="${link('sql', { fp: s.fingerprint, ...around })}">fingerprint →</a>` : ''}</td>
        <td class="text small">${s.caller ? html`<code>${s.caller}</code>` : ''}${s.caller_file ? html`<div class="muted">${s.caller_file}:${s.caller_line ?? ''}</div>` : ''}
          ${Array.isArray(s.frames) && s.frames.length > 1 ? html`<details><summary>${s.frames.length} frames</summary><ol class="frames">${s.frames.map((f) => html`<li><code>${f.function || ''}</code> <span class="muted">${f.file || ''}:${f.line ?? ''}</span></li>`)}</ol></details>` : ''}</td>
      </tr>`)}</tbody></table>`;
  }

  /** "5 of 9" when a list was trimmed, "9" when all of it shows. */
  const ofTotal = (shown, total) => (shown < total ? `${shown} of ${total}` : `${total}`);

  /**
   * The whole lock chain of the request's backend: each root blocker (it
   * waited on nobody) with every backend queued behind it, as a tree, first
   * seen first; trimmed levels say how many they hold. Statements link to
   * their fingerprint pages, requests to their own pages.
   */
  function lockTree(tree, around) {
    const node = (n, root) => {
      const who = n.this_request ? html`<b>this request</b>`
        : n.correlation_id ? html`<a href="${link(`request/${n.correlation_id}`)}" data-test="lock-request">${n.endpoint || short(n.correlation_id)}</a>`
          : html`<span class="muted">no request</span>`;
      const role = root ? html`<span class="badge lock-root">holds the lock</span>` : html`<span class="badge wait-Lock">waits</span>`;
      const sql = n.query ? (n.fingerprint ? html`<a class="code small" href="${link('sql', { fp: n.fingerprint, ...around })}" data-test="lock-sql">${n.query}</a>` : html`<span class="code small">${n.query}</span>`) : '';
      const seen = n.first_seen === n.last_seen ? when(n.first_seen, false) : html`${when(n.first_seen, false)} – ${when(n.last_seen, false)}`;
      return html`<li class="${n.this_request ? 'me' : ''}" data-test="lock-node" data-pid="${n.pid}">
        <div class="lock-node">${role} ${who} <span class="muted small">pid ${n.pid}${n.state ? ` · ${n.state}` : ''}${n.wait_event ? ` · ${n.wait_event_type}:${n.wait_event}` : ''} · seen ${seen}, ${n.samples} sample${n.samples === 1 ? '' : 's'}</span>
          ${n.url ? html`<div class="url muted small">${n.url}</div>` : ''}${sql ? html`<div>${sql}</div>` : ''}</div>
        ${n.waiters_total ? html`<div class="muted small" data-test="lock-count">${ofTotal(n.waiters.length, n.waiters_total)} waiting on it directly${n.below_total > n.waiters_total ? `, ${n.below_total} below it in all` : ''}</div>
          <ul class="lock-tree">${n.waiters.map((w) => node(w, false))}</ul>` : ''}</li>`;
    };
    return html`<section class="card" data-test="lock-tree"><h2>Lock chain <span class="muted">(${ofTotal(tree.roots.length, tree.roots_total)} root blocker${tree.roots_total === 1 ? '' : 's'}, first seen first)</span></h2>
      <p class="hint">Each root held a lock and waited on nobody; below it, every backend queued behind it in the samples of this request.</p>
      <ul class="lock-tree root">${tree.roots.map((r) => node(r, true))}</ul></section>`;
  }

  function activityTable(samples, around) {
    const peer = (x) => html`<div>pid ${x.pid}${x.correlation_id ? html` · <a href="${link(`request/${x.correlation_id}`)}">${x.endpoint || short(x.correlation_id)}</a>` : ''}${x.url ? html` <span class="muted small">${x.url}</span>` : ''}${x.fingerprint ? html`<div><a class="code small" href="${link('sql', { fp: x.fingerprint, ...around })}">${x.query || x.fingerprint}</a></div>` : ''}</div>`;
    return html`<table class="activity"><thead><tr><th>time</th><th class="num">pid</th><th>state</th><th>waiting on</th><th class="num">query for</th><th>blocked by</th><th>blocking</th></tr></thead>
      <tbody>${samples.map((a) => html`<tr>
        <td>${when(a.ts, false)}</td><td class="num">${a.pid}</td><td>${a.state || ''}</td>
        <td>${a.wait_event_type ? html`<span class="badge wait-${a.wait_event_type}">${a.wait_event_type}</span> ${a.wait_event || ''}` : html`<span class="muted">running</span>`}</td>
        <td class="num">${ms(a.query_ms)}</td>
        <td>${a.blocked_by.map(peer)}</td><td>${a.blocking.map(peer)}</td></tr>`)}</tbody></table>`;
  }

  // ---------------------------------------------------------- flame graph
  /** The frames from the root's child down to a node, joined by ';': a zoom point in the URL. */
  const framePath = (n) => { const out = []; for (let p = n; p && p.parent; p = p.parent) out.unshift(p.name); return out.join(';'); };

  /**
   * A flame graph (root on top) of folded stacks: click or Enter on a frame
   * to zoom, search by regular expression. Frames are focusable; `onZoom`
   * gets the zoom point's path (empty at the root) to keep in the URL.
   */
  function flameGraph(el, folded, onZoom = () => {}) {
    const root = { name: 'all', value: 0, children: new Map(), depth: 0, parent: null };
    for (const line of folded) {
      const cut = line.lastIndexOf(' ');
      const v = Number(line.slice(cut + 1));
      if (!(v > 0)) continue;
      root.value += v;
      let node = root;
      for (const f of line.slice(0, cut).split(';')) {
        let c = node.children.get(f);
        if (!c) { c = { name: f, value: 0, children: new Map(), depth: node.depth + 1, parent: node }; node.children.set(f, c); }
        c.value += v;
        node = c;
      }
    }
    const nodes = [];
    let maxDepth = 0;
    const place = (n, x) => {
      n.x = x;
      n.i = nodes.length;
      nodes.push(n);
      maxDepth = Math.max(maxDepth, n.depth);
      let cx = x;
      for (const c of [...n.children.values()].sort((a, b) => a.name.localeCompare(b.name))) { place(c, cx); cx += c.value; }
    };
    place(root, 0);
    const ROW = 18;
    let focus = root;
    let pattern = null;
    const hue = (name) => {
      let h = 0;
      for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
      return h;
    };
    const color = (n) => {
      if (n === root) return '#cbd5e1';
      const h = hue(n.name);
      if (/^(PDO|PDOStatement|pg_|Phalcon\\Db|mysqli)/.test(n.name)) return `hsl(${205 + (h % 20)}, 65%, ${62 + (h % 10)}%)`;
      return `hsl(${10 + (h % 40)}, ${75 + (h % 15)}%, ${58 + (h % 12)}%)`;
    };
    const isAncestor = (a, n) => { for (let p = n; p; p = p.parent) if (p === a) return true; return false; };
    const draw = () => {
      const W = Math.max(320, el.clientWidth);
      const scale = W / focus.value;
      const parts = [];
      for (const n of nodes) {
        let x;
        let w;
        if (isAncestor(n, focus) && n !== focus) { x = 0; w = W; } else if (isAncestor(focus, n)) { x = (n.x - focus.x) * scale; w = n.value * scale; } else continue;
        if (w < 0.4) continue;
        const y = n.depth * ROW;
        const matched = pattern && pattern.test(n.name);
        const label = w > 30 ? n.name.slice(0, Math.floor((w - 8) / 6.6)) : '';
        parts.push(html`<g class="frame${matched ? ' match' : ''}${isAncestor(n, focus) && n !== focus ? ' above' : ''}" data-i="${n.i}" tabindex="0" role="button" aria-label="${n.name}: ${pct(n.value / root.value)}${n === focus && n !== root ? ', zoomed in (Enter zooms out)' : ''}">
          <rect x="${x.toFixed(1)}" y="${y}" width="${Math.max(w - 0.6, 0.4).toFixed(1)}" height="${ROW - 1}" rx="2" fill="${color(n)}"/>
          ${label ? html`<text x="${(x + 4).toFixed(1)}" y="${y + 13}">${label.length < n.name.length ? label.slice(0, -1) + '…' : label}</text>` : ''}
          <title>${n.name}\n${num(n.value / 1000, 2)} ms, ${pct(n.value / root.value)} of the request's samples</title></g>`);
      }
      const H = (maxDepth + 1) * ROW;
      // Drawing anew drops the focused frame: keep the keyboard where it was.
      const had = el.contains(document.activeElement) ? document.activeElement.getAttribute('data-i') : null;
      el.innerHTML = part(html`<svg class="flame" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="flame graph">${parts}</svg>`);
      if (had !== null) { const again = el.querySelector(`g.frame[data-i="${had}"]`); if (again) again.focus({ preventScroll: true }); }
      const reset = document.getElementById('flame-reset');
      if (reset) reset.disabled = focus === root;
      const info = document.getElementById('flame-match');
      if (info) {
        let matchedValue = 0;
        const walk = (n) => { if (pattern && pattern.test(n.name)) { matchedValue += n.value; return; } n.children.forEach(walk); };
        if (pattern) walk(root);
        info.textContent = pattern ? `matched ${pct(matchedValue / root.value)} of the time` : '';
      }
    };
    const zoomTo = (n) => { focus = n; onZoom(focus === root ? '' : framePath(focus)); draw(); };
    const toggle = (g) => {
      const n = nodes[Number(g.dataset.i)];
      zoomTo(n === focus && n.parent ? n.parent : n);
    };
    el.addEventListener('click', (e) => {
      const g = e.target.closest('g.frame');
      if (g) toggle(g);
    });
    el.addEventListener('keydown', (e) => {
      const g = e.target.closest('g.frame');
      if (!g || (e.key !== 'Enter' && e.key !== ' ')) return;
      e.preventDefault();
      toggle(g);
    });
    let resizeTimer = 0;
    window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => { if (el.isConnected) draw(); }, 150); });
    draw();
    return {
      zoom(n) { zoomTo(n || root); },
      /** Zooms to the node at a path of framePath, when the profile has it. */
      zoomPath(path) {
        let n = root;
        for (const f of path ? path.split(';') : []) { n = n.children.get(f); if (!n) return; }
        focus = n;
        draw();
      },
      search(text) {
        if (!text) pattern = null;
        else {
          try { pattern = new RegExp(text, 'i'); } catch { pattern = new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'i'); }
        }
        draw();
      },
    };
  }

  // ----------------------------------------------------------------- SQL
  /** Clauses that start a line in formatted SQL; AND and OR are indented under their WHERE. */
  const SQL_BREAKS = /(?<!\b(?:FOR|NO KEY|DO))\s+(?=(?:SELECT|FROM|WHERE|GROUP BY|HAVING|ORDER BY|LIMIT|OFFSET|UNION(?: ALL)?|(?:LEFT |RIGHT |FULL |INNER |CROSS )?(?:OUTER )?JOIN|ON|SET|VALUES|RETURNING|FOR UPDATE|FOR SHARE|ON CONFLICT|INSERT INTO|UPDATE|DELETE FROM|WITH)\b)/gi;
  /**
   * SQL laid out one clause a line, for reading; quoted text is left as it
   * is. A plain layout, not a parser: what it cannot place stays on its line.
   */
  function formatSql(sql) {
    const parts = String(sql).split(/('(?:[^']|'')*'|"(?:[^"]|"")*")/);
    const out = parts.map((p, i) => (i % 2 ? p : p.replace(/\s+/g, ' ').replace(SQL_BREAKS, '\n').replace(/\s+(?=(?:AND|OR)\b)/gi, '\n  '))).join('');
    return out.trim();
  }
  /** A block of SQL with a copy button and a formatted / as-sent switch. */
  function sqlBlock(sql, test = '') {
    return html`<div class="sql-block"><div class="sql-tools">
        <button type="button" class="ghost small" data-copy data-test="${test ? `${test}-copy` : 'copy'}">Copy</button>
        <button type="button" class="ghost small" data-format aria-pressed="true">As sent</button>
        <span class="muted small" role="status" data-copied></span></div>
      <pre class="code${test === 'fingerprint' ? ' fingerprint' : ''}" data-test="${test}" data-sql="${sql}">${formatSql(sql)}</pre></div>`;
  }
  /** Copy and format buttons of every sqlBlock on the page, by delegation. */
  document.addEventListener('click', async (e) => {
    const b = e.target.closest('.sql-block button');
    if (!b) return;
    const block = b.closest('.sql-block');
    const pre = block.querySelector('pre');
    if (b.hasAttribute('data-copy')) {
      const say = block.querySelector('[data-copied]');
      try {
        await navigator.clipboard.writeText(pre.dataset.sql);
        say.textContent = 'Copied';
      } catch {
        // No clipboard (plain HTTP off localhost): select the text to copy by hand.
        getSelection().selectAllChildren(pre);
        say.textContent = 'Selected: press Ctrl+C';
      }
    } else if (b.hasAttribute('data-format')) {
      const formatted = b.getAttribute('aria-pressed') === 'true';
      pre.textContent = formatted ? pre.dataset.sql : formatSql(pre.dataset.sql);
      b.setAttribute('aria-pressed', String(!formatted));
      b.textContent = formatted ? 'Formatted' : 'As sent';
    }
  });

  async function sqlPage(g) {
    const p = params();
    const fp = p.get('fp') || '';
    const win = await windowOrDefault(g, 24);
    if (!current(g)) return;
    if (!win) { main.innerHTML = part(noData()); return; }
    const d = await api('/v1/ui/fingerprint', { fp, from: isoUtc(win.from), to: isoUtc(win.to) });
    if (!current(g)) return;
    setTitle(`${fp.slice(0, 60)} · SQL`);
    const w = { from: isoUtc(win.from), to: isoUtc(win.to) };
    const stat = (label, v, sub = '') => html`<div class="card stat"><span class="label">${label}</span><b>${v}</b><span class="muted">${sub}</span></div>`;
    const ps = d.pgss;
    main.innerHTML = part(html`
      <div class="page-head"><h1>SQL fingerprint</h1><div class="window">${span(win.from, win.to)}</div>
        <div class="buttons"><a class="button ghost" href="${link('timeline', w)}">Timeline of the window</a></div></div>
      <section class="card">${sqlBlock(d.fingerprint, 'fingerprint')}
        ${d.examples.length ? html`<details><summary>As sent by PHP (${d.examples.length} text${d.examples.length === 1 ? '' : 's'})</summary>${d.examples.map((e) => html`${sqlBlock(e.sql)}<div class="muted small">${e.calls} calls</div>`)}</details>` : ''}</section>
      ${(d.plans || []).length ? html`<section class="card" data-test="plans"><h2>Plans logged by auto_explain <span class="muted">(slowest first)</span></h2>
        ${d.plans.map((x) => html`<h3>${when(x.ts)} · ${ms(x.duration_ms)}${x.outline ? html` · <span class="muted">${x.outline}</span>` : ''}</h3><pre class="code plan">${typeof x.plan === 'string' ? x.plan : JSON.stringify(x.plan, null, 2)}</pre>`)}</section>` : ''}
      <div class="cards">
        ${stat('Calls captured by PHP', num(d.php.calls, 0), `${d.php.failed} failed`)}
        ${stat('Total time in PHP', ms(d.php.total_ms), `mean ${ms(d.php.mean_ms)}, max ${ms(d.php.max_ms)}`)}
        ${stat('pg_stat_statements calls', num(ps.calls, 0), ps.queryids.length ? `queryid ${ps.queryids.join(', ')}` : 'no queryid seen')}
        ${stat('Server execution time', ms(ps.total_exec_time_ms), `mean ${ms(ps.mean_exec_time_ms)}, ${num(ps.rows, 0)} rows`)}
        ${stat('Blocks hit / read', `${num(ps.shared_blks_hit, 0)} / ${num(ps.shared_blks_read, 0)}`, `${num(ps.temp_blks_written, 0)} temp blocks written`)}
      </div>
      <section class="card" id="sql-charts"></section>
      <div class="two">
        <section class="card"><h2>Called from</h2>${d.callers.length ? html`<table><thead><tr><th>function</th><th class="num">calls</th><th class="num">total</th></tr></thead>
          <tbody>${d.callers.map((c) => html`<tr><td class="text"><code>${c.caller || '–'}</code>${c.file ? html`<div class="muted small">${c.file}:${c.line ?? ''}</div>` : ''}</td><td class="num">${c.calls}</td><td class="num">${ms(c.total_ms)}</td></tr>`)}</tbody></table>` : html`<p class="muted">PHP captured no call in the window.</p>`}</section>
        <section class="card"><h2>On the server</h2>
          ${d.waits.length ? html`<h3>Active backends running it</h3><table><tbody>${d.waits.map((x) => html`<tr><td><span class="badge wait-${x.wait_event_type}">${x.wait_event_type}</span> ${x.wait_event}</td><td class="num">${x.samples} samples</td></tr>`)}</tbody></table>` : ''}
          ${d.logs.length ? html`<h3>Log events</h3><table><tbody>${d.logs.map((x) => html`<tr><td>${x.class}</td><td class="num">${x.count}</td><td class="num">${x.total_ms ? ms(x.total_ms) : ''}</td></tr>`)}</tbody></table>` : ''}
          ${d.waits.length || d.logs.length ? '' : html`<p class="muted">No sample or log event of it in the window.</p>`}</section>
      </div>
      <section class="card"><h2>Requests that ran it <span class="muted">(by time spent in it)</span></h2>
        ${d.requests.length ? html`<table class="requests"><thead><tr><th>time</th><th>endpoint</th><th>URL</th><th class="num">calls</th><th class="num">in this SQL</th><th class="num">request</th></tr></thead>
          <tbody>${d.requests.map((r) => html`<tr><td>${when(r.ts)}</td><td><a href="${link(`request/${r.correlation_id}`)}">${r.endpoint}</a></td><td class="url">${r.url || ''}</td>
            <td class="num">${r.calls}</td><td class="num">${ms(r.sql_ms)}</td><td class="num">${ms(r.duration_ms)}</td></tr>`)}</tbody></table>`
          : html`<p class="muted">No captured request ran it in the window.</p>`}</section>`);

    const box = document.getElementById('sql-charts');
    box.innerHTML = part(html`<h2>Over time <span class="muted">(${duration(d.bucket_s)} buckets)</span></h2><div class="grid2" id="sql-grid"></div>`);
    const grid = document.getElementById('sql-grid');
    const width = cellWidth(grid, 24);
    const bucketMs = d.bucket_s * 1000;
    const c = { width, x0: win.from, x1: win.to, bucketMs, height: 120 };
    const fill = (series, key) => {
      // Buckets without a call are zeros, so bars and lines show the quiet.
      const t = [];
      const v = [];
      const at = new Map(series.t.map((x, i) => [x, series[key][i]]));
      for (let x = Math.floor(win.from / bucketMs) * bucketMs; x < win.to; x += bucketMs) { t.push(x); v.push(at.get(x) ?? 0); }
      return { t, v };
    };
    const cell = (title, s, key, color, type, unit = '') => {
      const { t, v } = fill(s, key);
      return html`<div class="chart-box"><h3>${title}</h3>${chart({ ...c, id: `${key}-${title}`, t, unit, series: [{ name: title, color, type, values: v }] })}</div>`;
    };
    grid.innerHTML = part(html`
      ${cell('PHP calls', d.php_series, 'calls', '#2563eb', 'bars')}
      ${cell('PHP total time', d.php_series, 'total_ms', '#f59e0b', 'bars', ' ms')}
      ${cell('PHP mean time', d.php_series, 'mean_ms', '#dc2626', 'line', ' ms')}
      ${cell('Server execution time (pg_stat_statements)', d.pgss_series, 'total_ms', '#7c3aed', 'bars', ' ms')}`);
    wireCharts(() => {}, null);
  }

  // ----------------------------------------------------------------- top
  const TOP_KINDS = [['sql', 'SQL fingerprints'], ['endpoints', 'Endpoints'], ['functions', 'PHP functions']];
  /** Extra columns per top list, from each entry's evidence. */
  const TOP_COLUMNS = {
    sql: [['max_ms', 'max', (v) => ms(v)], ['caller', 'called from', (v) => html`<code>${v || ''}</code>`]],
    endpoints: [['p50_ms', 'p50', (v) => ms(v)], ['p95_ms', 'p95', (v) => ms(v)], ['errors', 'errors', (v) => num(v, 0)]],
    functions: [['requests', 'requests', (v) => num(v, 0)]],
  };

  /**
   * A top list of the window (GET /v1/top): sortable by any column,
   * filtered by a text, each entry linked to where it can be followed.
   * The sort, its direction and the filter live in the URL.
   */
  async function topPage(g) {
    const win = await windowOrDefault(g);
    if (!current(g)) return;
    if (!win) { main.innerHTML = part(noData()); return; }
    const p = params();
    const by = TOP_KINDS.some(([k]) => k === p.get('by')) ? p.get('by') : 'sql';
    const w = { from: isoUtc(win.from), to: isoUtc(win.to) };
    const top = await api('/v1/top', { ...w, by, limit: 200 });
    if (!current(g)) return;
    setTitle(`Top ${TOP_KINDS.find(([k]) => k === by)[1]}`);
    const total = top.entries.reduce((a, e) => a + e.seconds, 0) || 1;
    const rows = top.entries.map((e) => ({ ...e.evidence, ...e, mean_ms: e.count ? (e.seconds * 1000) / e.count : null, share: e.seconds / total }));
    const extra = TOP_COLUMNS[by];
    const nameLabel = { sql: 'fingerprint', endpoints: 'endpoint', functions: 'function' }[by];
    const columns = [['name', nameLabel], ['seconds', 'total'], ['share', 'share'], ['count', by === 'functions' ? 'requests seen' : 'calls'], ['mean_ms', 'mean'], ...extra.map(([k, label]) => [k, label])];
    const textual = (k) => k === 'name' || k === 'caller';
    const entryLink = (e) => {
      if (by === 'sql') return link('sql', { fp: e.name, ...w });
      if (by === 'endpoints') return link('requests', { ...w, endpoint: e.name, sort: 'slowest' });
      return null;
    };
    const state = () => {
      const q = params();
      const key = columns.some(([k]) => k === q.get('sort')) ? q.get('sort') : 'seconds';
      return { key, up: q.get('dir') === 'asc', filter: (q.get('q') || '').toLowerCase() };
    };
    const draw = () => {
      const { key, up, filter } = state();
      const shown = rows.filter((e) => !filter || e.name.toLowerCase().includes(filter));
      shown.sort((a, b) => {
        const x = a[key];
        const y = b[key];
        const c = textual(key) ? String(x ?? '').localeCompare(String(y ?? '')) : (x ?? -Infinity) - (y ?? -Infinity);
        return up ? c : -c;
      });
      document.getElementById('top-body').innerHTML = part(html`${shown.map((e) => {
        const to = entryLink(e);
        const name = by === 'sql' ? html`<span class="code">${e.name}</span>` : e.name;
        return html`<tr><td class="text">${to ? html`<a href="${to}" data-test="top-link">${name}</a>` : name}</td>
          <td class="num">${secs(e.seconds)}</td><td class="num">${shareBar(e.share)} ${pct(e.share)}</td><td class="num">${num(e.count, 0)}</td>
          <td class="num">${e.mean_ms === null ? '–' : ms(e.mean_ms)}</td>${extra.map(([k, , f]) => html`<td class="${textual(k) ? 'text small' : 'num'}">${e[k] === undefined ? '' : f(e[k])}</td>`)}</tr>`;
      })}`);
      document.getElementById('top-count').textContent = `${shown.length} of ${rows.length}`;
      for (const th of main.querySelectorAll('th[data-sort]')) {
        th.setAttribute('aria-sort', th.dataset.sort === key ? (up ? 'ascending' : 'descending') : 'none');
      }
    };
    main.innerHTML = part(html`
      <div class="page-head"><h1>Top</h1><div class="window">${span(win.from, win.to)}</div>
        <div class="buttons"><a class="button ghost" href="${link('timeline', w)}">Timeline of the window</a></div></div>
      ${rangePicker('top', win, { by, sort: p.get('sort'), dir: p.get('dir'), q: p.get('q') })}
      <nav class="tabs" data-test="top-tabs">${TOP_KINDS.map(([k, label]) => html`<a href="${link('top', { ...w, by: k })}" class="${k === by ? 'active' : ''}" data-test="top-${k}">${label}</a>`)}</nav>
      <section class="card">
        <form class="inline" id="top-filter" role="search">
          <input type="search" name="q" value="${p.get('q') || ''}" placeholder="Filter by name" aria-label="Filter by name" data-test="top-filter">
          <span class="muted" id="top-count" data-test="top-count"></span>
        </form>
        <div class="scroll"><table class="top" data-test="top-table"><thead><tr>${columns.map(([k, label]) => html`<th class="${textual(k) ? '' : 'num'}" data-sort="${k}"><button type="button" class="sort" data-test="sort-${k}">${label}</button></th>`)}</tr></thead>
        <tbody id="top-body"></tbody></table></div>
        ${by === 'functions' ? html`<p class="hint">Exclusive time from the profiles of the window's kept requests; internal functions count in their user-land caller. A function has no page of its own: open a request to see it in its flame graph.</p>` : ''}
      </section>`);
    for (const th of main.querySelectorAll('th[data-sort]')) {
      th.querySelector('button').onclick = () => {
        const k = th.dataset.sort;
        const { key, up } = state();
        const dir = key === k ? (up ? 'desc' : 'asc') : (textual(k) ? 'asc' : 'desc');
        setParams({ sort: k === 'seconds' && dir === 'desc' ? null : k, dir: dir === 'desc' ? null : dir });
        draw();
      };
    }
    wireRangePicker('top', { by, sort: p.get('sort'), dir: p.get('dir'), q: p.get('q') });
    const input = main.querySelector('#top-filter input');
    input.addEventListener('input', () => { setParams({ q: input.value }); draw(); });
    main.querySelector('#top-filter').onsubmit = (e) => e.preventDefault();
    draw();
  }

  // ------------------------------------------------------------------ go
  let resizeTimer = 0;
  let lastWidth = window.innerWidth;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      // Charts are drawn to the width they have; redraw them when it changes.
      if (Math.abs(window.innerWidth - lastWidth) > 40 && main.querySelector('svg.chart')) { lastWidth = window.innerWidth; render(); }
    }, 250);
  });
  render();
})();
