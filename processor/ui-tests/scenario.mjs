// The web UI scenario in headless Chromium (Debian's), driven by playwright-core.
//
// A person hunting the recorded lock-contention spike: signs in, opens the
// timeline, picks a window by dragging and then the spike from the list,
// opens the top suspect (the lock blocker) and one of its requests, sees its
// flame graph (zooms, searches) and its SQL, follows a fingerprint, filters
// the request list and pages through it slowest first, reads the top lists,
// loses the processor for a moment, and looks at it all on a phone-sized
// screen and in dark mode. Then another project's token signs in and must
// see none of it. A screenshot of every page goes to SCREENSHOT_DIR.
//
// Run through run.sh, which starts the processor and sets the environment.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is not set (run this through run.sh)`);
  return v;
};
const BASE = env('BASE_URL');
const SHOP = env('SHOP_TOKEN');
const BLOG = env('BLOG_TOKEN');
const FIXTURE = env('FIXTURE_DIR');
const SHOTS = env('SCREENSHOT_DIR');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The fixture's blocker, as fixtures/spike/README.md plants it.
const BLOCKER_URL = '/admin/stock/recount?sku=A-77';
// A zone an hour off UTC in November, so local times differ from UTC ones.
const ZONE = 'Europe/Berlin';

let step = 0;
const log = (what) => console.log(`ok ${++step} - ${what}`);

/** The horizontal overflow of the page: 0 when nothing is wider than the screen. */
const overflow = (page) => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);

/** Loads every spool file of the fixture through the ingest API, as the shipper would. */
async function loadFixture() {
  let lines = 0;
  for (const name of readdirSync(FIXTURE).filter((f) => f.endsWith('.ndjson')).sort()) {
    const all = readFileSync(path.join(FIXTURE, name), 'utf8').split('\n').filter(Boolean);
    for (let i = 0; i < all.length; i += 2000) {
      const chunk = all.slice(i, i + 2000);
      const resp = await fetch(`${BASE}/v1/ingest`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${SHOP}`, 'Content-Type': 'application/x-ndjson' },
        body: chunk.join('\n') + '\n',
      });
      const body = await resp.json();
      assert.equal(resp.status, 200, `ingest of ${name}: ${JSON.stringify(body)}`);
      assert.deepEqual(body.rejected, [], `${name}: refused lines`);
      assert.equal(body.accepted + body.duplicates, chunk.length, `${name}: every line stored`);
      lines += chunk.length;
    }
  }
  return lines;
}

async function apiGet(token, p) {
  const resp = await fetch(`${BASE}${p}`, { headers: { Authorization: `Bearer ${token}` } });
  return { status: resp.status, body: await resp.json() };
}

const profile = mkdtempSync(path.join(tmpdir(), 'bitville-ui-chromium-'));
const problems = [];
let context;

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** True while the scenario cuts the processor off on purpose. */
let offline = false;

/** Watches a page for script errors and CSP refusals: either fails the run. */
function watch(page) {
  page.on('pageerror', (e) => problems.push(`page error on ${page.url()}: ${e.message}`));
  page.on('console', (m) => {
    // A 401 or 404 answer is logged by Chromium as a failed resource; the
    // scenario asks for those on purpose (wrong token, another project),
    // and for failed requests while it plays a stopped processor.
    const expected = /Failed to load resource: the server responded with a status of (401|404)/.test(m.text())
      || (offline && /Failed to load resource: net::ERR_FAILED/.test(m.text()));
    if (m.type() === 'error' && !expected) {
      problems.push(`console error on ${page.url()}: ${m.text()}`);
    }
  });
}

async function signIn(page, token) {
  await page.waitForSelector('form#signin');
  await page.fill('input[name=token]', token);
  await page.click('form#signin button[type=submit]');
}

try {
  const lines = await loadFixture();
  log(`fixture loaded through POST /v1/ingest (${lines} records)`);

  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    viewport: { width: 1366, height: 800 },
    timezoneId: ZONE,
    locale: 'en-GB',
  });
  // Nothing but the processor: any request elsewhere (a CDN) fails the run.
  await context.route((url) => !url.href.startsWith(BASE) && !url.href.startsWith('blob:') && !url.href.startsWith('data:'), (route) => {
    problems.push(`request outside the processor: ${route.request().url()}`);
    return route.abort();
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  const page = context.pages()[0] || (await context.newPage());
  watch(page);

  // --- sign in
  await page.goto(`${BASE}/`);
  await page.waitForURL(/\/ui\/signin/);
  await signIn(page, 'not-a-token-of-this-processor');
  await page.waitForSelector('#signin-error:not([hidden])');
  assert.match(await page.textContent('#signin-error'), /does not know this token/);
  await shot(page, '01-signin-refused');
  await signIn(page, SHOP);
  await page.waitForURL(/\/ui\/timeline\?/);
  assert.match(await page.textContent('[data-test=who]'), /project shop/);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('bitville.token')), SHOP, 'token kept in sessionStorage');
  log('sign-in refuses an unknown token and accepts the shop token');

  // --- timeline
  await page.waitForSelector('[data-test=spike-list]');
  await page.waitForSelector('svg.chart[data-test="load-web-1"]');
  await page.waitForSelector('svg.chart[data-test="waits-db-1"]');
  const url = new URL(page.url());
  assert.ok(url.searchParams.get('from') && url.searchParams.get('to'), 'the window lives in the URL');
  // Times in the viewer's zone, UTC on hover.
  const t = await page.$eval('[data-test=spike-list] time', (el) => ({ text: el.textContent, title: el.title, iso: el.getAttribute('datetime') }));
  assert.match(t.title, /UTC$/);
  const utcHour = Number(t.iso.slice(11, 13));
  assert.equal(Number(t.text.slice(0, 2)), (utcHour + 1) % 24, `local time ${t.text} is ${ZONE} for ${t.iso}`);
  assert.ok((await page.$$('svg.chart rect.mark')).length > 0, 'spikes are marked on the charts');
  const spikeCount = await page.$$eval('[data-test=spike-list] li', (l) => l.length);
  await shot(page, '02-timeline');
  log(`timeline shows web-1 and db-1 series and ${spikeCount} spike(s), times in ${ZONE} with UTC on hover`);

  // Drag across the load chart to pick a window.
  const box = await page.locator('svg.chart[data-test="load-web-1"]').boundingBox();
  await page.mouse.move(box.x + box.width * 0.62, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.7, box.y + box.height / 2, { steps: 5 });
  await page.mouse.move(box.x + box.width * 0.8, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  await page.waitForSelector('#selection:not([hidden])');
  const sel = new URL(page.url()).searchParams;
  assert.ok(sel.get('sel_from') < sel.get('sel_to'), `the selection is in the URL: ${page.url()}`);
  const selWidth = Number(await page.getAttribute('svg.chart[data-test="rate-web-1"] rect.sel', 'width'));
  assert.ok(selWidth > 10, 'the selection shows on every chart');
  await page.hover('svg.chart[data-test="latency-web-1"]');
  // One crosshair across the charts: hovering one shows the time on all.
  const crosshairs = await page.$$eval('svg.chart', (svgs) => svgs.map((s) => s.querySelector('.cursor').getAttribute('visibility')));
  assert.ok(crosshairs.length > 3 && crosshairs.every((v) => v === 'visible'), `a crosshair on every chart: ${crosshairs}`);
  const [xa, xb] = await page.$$eval('svg.chart[data-test="latency-web-1"] .cursor, svg.chart[data-test="rate-web-1"] .cursor', (l) => l.map((x) => Number(x.getAttribute('x1'))));
  assert.ok(Math.abs(xa - xb) < 1, `the crosshairs line up (${xa}, ${xb})`);
  await shot(page, '03-timeline-selection');
  const selectionReport = await page.getAttribute('[data-test=report-selection]', 'href');
  assert.match(selectionReport, /^\/ui\/spike\?from=.*&to=/);
  log('dragging across a chart picks a window, kept in the URL, with a report link');

  // --- pick the spike from the list
  // The processor joins the lock's bursts (8 s held every 20 s) into one spike.
  const webSpikes = page.locator('[data-test=spike-list] a', { hasText: 'web-1' });
  assert.equal(await webSpikes.count(), 1, 'the lock bursts of the spike are one spike');
  const spikeLink = webSpikes.first();
  await spikeLink.click();
  await page.waitForURL(/\/ui\/spike\?/);
  const picked = new URL(page.url()).searchParams;
  const span = (Date.parse(picked.get('to')) - Date.parse(picked.get('from'))) / 1000;
  assert.ok(span >= 150, `the report covers the whole spike, not one burst (${span} s)`);
  await page.waitForSelector('[data-test=suspects]');
  const first = page.locator('[data-test="suspect-1"]');
  assert.equal((await first.locator('.badge').textContent()).trim(), 'lock', 'the lock blocker ranks first');
  assert.match(await first.textContent(), /stock-recount/);
  // The verdict says in one line what held what and what waited.
  const verdictText = await page.textContent('[data-test=verdict]');
  assert.match(verdictText, /^Verdict: POST stock-recount \(\/admin\/stock\/recount\?sku=A-77\) held a lock \(SELECT \* FROM stock WHERE sku = \$1 FOR UPDATE, idle in transaction up to 8\.00 s\); UPDATE stock SET qty = qty - \$1 WHERE sku = \$2 waited/, verdictText);
  assert.match(await page.textContent('[data-test=overlap-note]'), /Suspects overlap: .* need not add up to 100 %/);
  assert.equal(await page.title(), 'Spike report · Bitville APM');
  await shot(page, '04-spike');
  log('the spike report opens with its verdict, ranks the lock blocker (POST stock-recount) first and says suspects overlap');

  // --- the top suspect is open by default; it closes and opens again
  await page.waitForSelector('[data-test=suspect-detail] [data-test=requests-table]');
  assert.equal(await first.getAttribute('aria-expanded'), 'true', 'suspect #1 is open without a click');
  await first.click();
  await page.waitForFunction(() => !document.querySelector('[data-test=suspect-detail]'));
  assert.equal(new URL(page.url()).searchParams.get('s'), '0', 'closing it is in the URL');
  await page.locator('[data-test="suspect-1"]').click();
  await page.waitForSelector('[data-test=suspect-detail] [data-test=requests-table]');
  assert.equal(new URL(page.url()).searchParams.get('s'), null, 'open again: the default');
  // By keyboard: Enter closes and opens it, and the focus stays on the row the page drew anew.
  await page.focus('[data-test="suspect-1"]');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => !document.querySelector('[data-test=suspect-detail]') && document.querySelector('[data-test=spike-charts] svg, #spike-charts svg'));
  await page.waitForFunction(() => document.activeElement.dataset.test === 'suspect-1', null, { timeout: 5000 }).catch(() => {});
  assert.equal(await page.evaluate(() => document.activeElement.dataset.test), 'suspect-1', 'the focus is kept after the render');
  await page.keyboard.press('Enter');
  await page.waitForSelector('[data-test=suspect-detail] [data-test=requests-table]');
  await page.waitForFunction(() => document.activeElement.dataset.test === 'suspect-1', null, { timeout: 5000 }).catch(() => {});
  assert.equal(await page.evaluate(() => document.activeElement.dataset.test), 'suspect-1', 'and kept again');
  const detailText = await page.textContent('[data-test=suspect-detail]');
  for (const k of ['blocker_query', 'waiter_query']) {
    assert.match(await page.getAttribute(`[data-test=evidence-${k}]`, 'href'), /^\/ui\/sql\?fp=/, `${k} links to its fingerprint page`);
  }
  assert.ok(detailText.includes(BLOCKER_URL), 'the evidence names the blocking URL');
  assert.match(detailText, /baseline/);
  await shot(page, '05-top-suspect');
  log('the top suspect shows its evidence against the baseline and its blocking requests');

  // --- open one of its requests
  await page.locator('[data-test=suspect-detail] [data-test=request-link]').first().click();
  await page.waitForURL(/\/ui\/request\//);
  await page.waitForSelector('[data-test=flamegraph] svg g.frame');
  assert.equal((await page.textContent('[data-test=request-heading]')).trim(), 'POST stock-recount', 'the method is shown once');
  assert.equal(await page.title(), 'POST stock-recount · Request · Bitville APM');
  // Excimer samples, not calls: the function table says so.
  assert.deepEqual(await page.$$eval('[data-test=calls] thead th', (th) => th.map((h) => h.textContent.trim())), ['function', 'samples', 'inclusive', 'exclusive']);
  const frames = await page.$$eval('[data-test=flamegraph] g.frame', (g) => g.length);
  assert.ok(frames >= 2, `the flame graph has frames (${frames})`);
  // Statements are shown formatted, one clause a line: read them as words.
  const sqlText = (await page.textContent('[data-test=sql-list]')).replace(/\s+/g, ' ');
  assert.match(sqlText, /SELECT \* FROM stock WHERE sku = :sku FOR UPDATE/);
  assert.match(sqlText, /UPDATE stock SET qty/);
  assert.match(sqlText, /StockCounter::recount/, 'each statement names its calling function');
  const activity = await page.textContent('[data-test=db-activity]');
  assert.match(activity, /pid \d+/, 'the database activity names the backends it blocked');
  await shot(page, '06-request');
  log(`the blocking request shows its flame graph (${frames} frames), its SQL with callers and whom it blocked`);

  // Search and zoom the flame graph.
  await page.fill('#flame-search input[name=q]', 'recount');
  await page.waitForSelector('[data-test=flamegraph] g.frame.match');
  assert.match(await page.textContent('[data-test=flame-match]'), /matched [1-9][\d.]* % of the time/);
  assert.equal(new URL(page.url()).searchParams.get('fq'), 'recount', 'the search is in the URL');
  const before = await page.$$eval('[data-test=flamegraph] g.frame', (g) => g.length);
  await page.locator('[data-test=flamegraph] g.frame.match').last().click();
  assert.equal(await page.isEnabled('#flame-reset'), true, 'zoomed in: reset is offered');
  await shot(page, '07-flame-zoomed');
  // Frames above the zoom point that match are solid, so their white text reads.
  await page.fill('#flame-search input[name=q]', '.');
  await page.waitForSelector('[data-test=flamegraph] g.frame.match.above');
  const above = await page.$eval('[data-test=flamegraph] g.frame.match.above rect', (r) => getComputedStyle(r).fillOpacity);
  assert.equal(above, '1', 'a matched frame above the zoom point is opaque');
  await shot(page, '07b-flame-zoomed-match-above');
  await page.fill('#flame-search input[name=q]', 'recount');
  await page.click('#flame-reset');
  assert.equal(await page.$$eval('[data-test=flamegraph] g.frame', (g) => g.length), before);
  log('the flame graph searches (matched share shown) and zooms; matches above the zoom point stay readable');

  // A function of the table opens the flame graph clear of the sticky header.
  await page.locator('[data-test=calls] a.fn').first().click();
  await page.waitForFunction(() => window.scrollY > 0);
  const gap = await page.evaluate(() => document.getElementById('flame-card').getBoundingClientRect().top - document.querySelector('header.top').getBoundingClientRect().bottom);
  assert.ok(gap >= 0, `the flame graph starts below the header (${gap} px)`);
  await shot(page, '07c-flame-from-function-table');
  log('a function of the table scrolls to the flame graph below the sticky header');

  // The function table as XHGui users know it: sorted by any column, searched, callers and callees.
  await page.click('[data-test=calls-sort-inclusive_ms]');
  assert.equal(new URL(page.url()).searchParams.get('cs'), 'inclusive_ms', 'the sort is in the URL');
  const inclusive = await page.$$eval('[data-test=calls] tbody tr', (rows) => rows.map((r) => r.children[2].textContent.trim()));
  const msOf = (t) => (t.endsWith(' s') ? parseFloat(t) * 1000 : parseFloat(t));
  assert.deepEqual(inclusive.map(msOf), inclusive.map(msOf).slice().sort((a, b) => b - a), `sorted by inclusive time: ${inclusive}`);
  await page.fill('[data-test=calls-filter]', 'recount');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-test=calls] tbody tr')].every((r) => /recount/i.test(r.children[0].textContent)));
  assert.match(await page.textContent('[data-test=calls-count]'), /^\d+ of \d+/);
  assert.equal(new URL(page.url()).searchParams.get('ft'), 'recount');
  await page.locator('[data-test=calls] tbody tr', { hasText: 'StockCounter::recount' }).first().locator('[data-test=calls-graph-button]').click();
  await page.waitForSelector('[data-test=callers] tbody tr');
  assert.match(new URL(page.url()).searchParams.get('fn'), /StockCounter::recount/, 'the picked function is in the URL');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.test), 'calls-graph-button', 'the focus stays on the button');
  // Its caller, picked in turn, lists it among what it called.
  const caller = page.locator('[data-test=callers] a[data-pick]').first();
  const callerName = (await caller.textContent()).trim();
  await caller.click();
  await page.waitForFunction((n) => new URL(location.href).searchParams.get('fn') === n, callerName);
  assert.match(await page.textContent('[data-test=callees]'), /StockCounter::recount/, `${callerName} called it`);
  await shot(page, '07d-function-table-callers-callees');
  log('the function table sorts by any column, filters by name and shows callers and callees, all in the URL');

  // The flame graph's zoom is in the URL and survives a reload; frames take the keyboard.
  const frame = page.locator('[data-test=flamegraph] g.frame.match').first();
  await frame.focus();
  await page.keyboard.press('Enter');
  const fz = new URL(page.url()).searchParams.get('fz');
  assert.ok(fz, 'the zoom point is in the URL');
  assert.equal(await page.evaluate(() => document.activeElement.classList.contains('frame')), true, 'the zoomed frame keeps the focus');
  await page.reload();
  await page.waitForSelector('[data-test=flamegraph] svg g.frame');
  assert.equal(await page.isEnabled('#flame-reset'), true, 'reloaded: still zoomed');
  assert.equal(await page.inputValue('#flame-search input[name=q]'), new URL(page.url()).searchParams.get('fq'), 'and still searched');
  await shot(page, '07e-flame-zoom-from-url');
  await page.click('#flame-reset');
  assert.equal(new URL(page.url()).searchParams.get('fz'), null, 'reset: the zoom leaves the URL');
  log('the flame graph keeps its zoom and search in the URL, and its frames take the keyboard');

  // --- SQL fingerprint
  await page.locator('[data-test=sql-list] tr', { hasText: 'FOR UPDATE' }).locator('a', { hasText: 'fingerprint' }).click();
  await page.waitForURL(/\/ui\/sql\?/);
  await page.waitForSelector('[data-test=fingerprint]');
  const fpText = await page.textContent('[data-test=fingerprint]');
  assert.match(fpText, /\nFROM stock\nWHERE sku = \$1\nFOR UPDATE/i, 'the SQL is formatted one clause a line');
  await page.click('[data-test=fingerprint-copy]');
  await page.waitForFunction(() => /Copied|Selected/.test(document.querySelector('[data-copied]').textContent));
  const copied = await page.evaluate(() => navigator.clipboard.readText().catch(() => null));
  if (copied !== null) assert.match(copied, /^SELECT \* FROM stock WHERE sku = \$1 FOR UPDATE$/i, 'the copy is the fingerprint as one line');
  await page.click('.sql-block:has([data-test=fingerprint]) [data-format]');
  assert.match(await page.textContent('[data-test=fingerprint]'), /^SELECT \* FROM stock WHERE sku = \$1 FOR UPDATE$/i, 'as sent: one line');
  await page.waitForSelector('#sql-charts svg.chart');
  const ranIt = await page.$$eval('table.requests tbody tr', (r) => r.length);
  assert.ok(ranIt >= 1, 'the requests that ran it are listed');
  await shot(page, '08-sql-fingerprint');
  log(`the SQL fingerprint page shows its figures over time and ${ranIt} request(s) that ran it`);

  // --- requests, filtered
  await page.click('header nav a:has-text("Requests")');
  await page.waitForSelector('[data-test=filters]');
  await page.selectOption('select[name=endpoint]', 'POST checkout-submit');
  await page.fill('input[name=min_ms]', '1000');
  await page.selectOption('select[name=sort]', 'slowest');
  await page.click('[data-test=filters] button[type=submit]');
  await page.waitForURL(/endpoint=POST\+checkout-submit/);
  await page.waitForSelector('[data-test=requests-table]');
  const listed = await page.$$eval('[data-test=requests-table] tbody tr', (rows) => rows.map((r) => r.children[2].textContent.trim()));
  assert.ok(listed.length > 0, 'slow checkouts are listed');
  assert.ok(listed.every((e) => e === 'POST checkout-submit'), `only the filtered endpoint: ${listed}`);
  await shot(page, '09-requests-filtered');
  const durationsShown = await page.$$eval('[data-test=requests-table] tbody tr', (rows) => rows.map((r) => r.children[5].textContent.trim()));
  assert.ok(durationsShown.length > 0);
  const shopRequest = page.url().replace(/\/ui\/requests.*/, '') + (await page.getAttribute('[data-test=requests-table] [data-test=request-link]', 'href'));
  await page.click('[data-test=requests-table] [data-test=request-link]');
  await page.waitForSelector('[data-test=db-activity]');
  assert.match(await page.textContent('[data-test=db-activity]'), /Lock/, 'a slow checkout waited on a lock');
  // The whole chain, not only the next link: the blocker at the root, this request below it.
  await page.waitForSelector('[data-test=lock-tree]');
  const rootNode = page.locator('[data-test=lock-tree] ul.root > li').first();
  assert.match(await rootNode.locator('.lock-node').first().textContent(), /holds the lock\s+POST stock-recount/);
  assert.ok(await page.$('[data-test=lock-tree] li.me'), 'this request is in the tree');
  assert.match(await page.textContent('[data-test=lock-tree] h2'), /root blockers?, first seen first/);
  assert.match(await rootNode.locator('[data-test=lock-count]').first().textContent(), /^(\d+ of )?\d+ waiting on it directly/);
  const blockerSql = await rootNode.locator('[data-test=lock-sql]').first().getAttribute('href');
  assert.match(decodeURIComponent(blockerSql.replace(/\+/g, ' ')), /\/ui\/sql\?fp=.*FOR UPDATE/, 'the blocker\'s statement links to its fingerprint page');
  await shot(page, '10-request-waiting');
  log(`the request list filters by endpoint and duration (${listed.length} rows), in the URL; a waiting checkout shows its whole lock chain, the blocker at the root`);

  // --- slowest first over the whole window, a page at a time
  await page.goto(`${BASE}/ui/requests?from=${picked.get('from')}&to=${picked.get('to')}&sort=slowest&limit=50`);
  await page.waitForSelector('[data-test=requests-table]');
  const slowest = await apiGet(SHOP, `/v1/requests?from=${picked.get('from')}&to=${picked.get('to')}&sort=slowest&limit=100`);
  const firstIds = await page.$$eval('[data-test=requests-table] [data-test=request-link]', (a) => a.map((x) => x.getAttribute('href').split('/').pop().split('?')[0]));
  assert.deepEqual(firstIds, slowest.body.requests.slice(0, 50).map((r) => r.correlation_id), 'the first page is the window\'s 50 slowest');
  const blockerRows = await page.$$eval('[data-test=requests-table] td.url', (u) => u.filter((x) => x.textContent.includes('/admin/stock/recount')).length);
  assert.ok(blockerRows >= 5, `the blockers (8 s each) are among the slowest (${blockerRows})`);
  await shot(page, '09b-requests-slowest');
  await page.click('[data-test=next-page]');
  await page.waitForURL(/offset=50/);
  await page.waitForSelector('[data-test=requests-table]');
  const nextIds = await page.$$eval('[data-test=requests-table] [data-test=request-link]', (a) => a.map((x) => x.getAttribute('href').split('/').pop().split('?')[0]));
  assert.deepEqual(nextIds, slowest.body.requests.slice(50, 100).map((r) => r.correlation_id), 'the next page goes on where the first stopped');
  assert.match(await page.textContent('[data-test=requests-count]'), /Requests 51–100/);
  await shot(page, '09c-requests-slowest-page-2');
  log(`slowest first is sorted in the store: the first page is the window's 50 slowest (${blockerRows} blockers), the next page the next 50`);

  // --- top lists
  await page.click('header nav a:has-text("Top")');
  await page.waitForSelector('[data-test=top-table] tbody tr');
  assert.equal(await page.title(), 'Top SQL fingerprints · Bitville APM');
  const topFirst = await page.textContent('[data-test=top-table] tbody tr:first-child td:first-child');
  assert.match(topFirst, /UPDATE stock SET qty = qty - \$1 WHERE sku = \$2/, 'the waiting UPDATE leads the SQL by time');
  await page.click('[data-test=sort-count]');
  assert.equal(new URL(page.url()).searchParams.get('sort'), 'count', 'the sort is in the URL');
  const counts = await page.$$eval('[data-test=top-table] tbody tr', (rows) => rows.map((r) => Number(r.children[3].textContent.replace(/,/g, ''))));
  assert.deepEqual(counts, [...counts].sort((a, b) => b - a), 'sorted by calls, most first');
  await page.fill('[data-test=top-filter]', 'stock');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-test=top-table] tbody tr')].every((r) => /stock/i.test(r.children[0].textContent)));
  assert.match(await page.textContent('[data-test=top-count]'), /^\d+ of \d+$/);
  await shot(page, '13-top-sql');
  await page.click('[data-test=top-endpoints]');
  await page.waitForSelector('[data-test=top-table] tbody tr');
  assert.match(await page.textContent('[data-test=top-table] tbody'), /POST cart-add/);
  await shot(page, '14-top-endpoints');
  await page.click('[data-test=top-functions]');
  await page.waitForSelector('[data-test=top-table] tbody tr');
  assert.match(await page.textContent('[data-test=top-table] tbody tr:first-child'), /StockCounter::recount/);
  await shot(page, '15-top-functions');
  await page.click('[data-test=top-endpoints]');
  await page.locator('[data-test=top-link]', { hasText: 'POST checkout-submit' }).click();
  await page.waitForURL(/\/ui\/requests\?.*endpoint=POST\+checkout-submit.*sort=slowest/);
  log('the top lists (SQL, endpoints, functions) sort and filter in the URL and link to their pages');

  // --- a stopped processor keeps the page under a retry banner
  await page.waitForSelector('[data-test=requests-table]');
  offline = true;
  await context.route(`${BASE}/v1/**`, (route) => route.abort('failed'));
  await page.click('header nav a:has-text("Timeline")');
  await page.waitForSelector('[data-test=offline]');
  assert.ok(await page.$('[data-test=requests-table]'), 'the requests loaded before are still shown');
  // Retry while it still does not answer: the page stays (it went blank before).
  await page.click('#retry');
  await page.waitForSelector('[data-test=offline]');
  assert.ok(await page.$('[data-test=requests-table]'), 'a failed retry keeps what was shown');
  assert.equal((await page.$$('[data-test=offline]')).length, 1, 'one banner');
  await shot(page, '16-processor-stopped');
  await context.unroute(`${BASE}/v1/**`);
  offline = false;
  await page.click('#retry');
  await page.waitForSelector('svg.chart[data-test="load-web-1"]');
  assert.equal(await page.$('[data-test=offline]'), null, 'the banner goes once it answers');
  log('a processor that stops answering leaves the page in place with a retry banner; retry loads it');

  // --- the range picker: quick ranges up to the newest record, absolute times, auto-refresh
  await page.waitForSelector('[data-test=range-picker]');
  await page.click('[data-test=range-15m]');
  await page.waitForURL(/range=15m/);
  await page.waitForSelector('svg.chart[data-test="load-web-1"]');
  assert.equal(await page.getAttribute('[data-test=range-15m]', 'aria-current'), 'true');
  const facets = (await apiGet(SHOP, '/v1/ui/facets')).body;
  // The inputs show the viewer's zone: read them back in the browser's.
  const [shownFrom, shownTo] = await page.$$eval('[data-test=range-form] input', (i) => i.map((x) => new Date(x.value).getTime()));
  const newest = Math.ceil((Date.parse(facets.last) + 1000) / 60000) * 60000;
  assert.equal(shownTo, newest, `15 min up to the newest record (${facets.last})`);
  assert.equal(shownTo - shownFrom, 15 * 60000, 'and 15 minutes long');
  await page.check('[data-test=auto-refresh]');
  assert.equal(new URL(page.url()).searchParams.get('refresh'), '30', 'auto-refresh is in the URL');
  // A live store is watched: the page asks again by itself (5 s here, to keep the test short).
  await page.goto(`${BASE}/ui/timeline?range=15m&refresh=5`);
  await page.waitForSelector('svg.chart[data-test="load-web-1"]');
  const again = await page.waitForRequest((r) => r.url().includes('/v1/ui/timeline'), { timeout: 15000 });
  assert.ok(again, 'the timeline reloads itself');
  await page.waitForSelector('svg.chart[data-test="load-web-1"]');
  // The processor goes away and comes back: the live view says so, keeps its charts, and recovers by itself.
  offline = true;
  await context.route(`${BASE}/v1/**`, (route) => route.abort('failed'));
  await page.waitForSelector('[data-test=offline]', { timeout: 15000 });
  assert.ok(await page.$('svg.chart[data-test="load-web-1"]'), 'the charts stay under the banner');
  await context.unroute(`${BASE}/v1/**`);
  offline = false;
  await page.waitForFunction(() => !document.querySelector('[data-test=offline]') && document.querySelector('svg.chart[data-test="load-web-1"]'), null, { timeout: 15000 });
  await shot(page, '16b-timeline-last-15-min-live');
  // Absolute times in the viewer's zone.
  await page.fill('[data-test=range-form] input[name=from]', '2026-11-27T11:05:00');
  await page.fill('[data-test=range-form] input[name=to]', '2026-11-27T11:20:00');
  await page.click('[data-test=range-form] button[type=submit]');
  await page.waitForURL(/from=2026-11-27T10%3A05%3A00Z|from=2026-11-27T10:05:00Z/);
  assert.equal(new URL(page.url()).searchParams.get('range'), null, 'absolute times replace the quick range');
  assert.equal(new URL(page.url()).searchParams.get('refresh'), '5', 'auto-refresh stays on');
  await page.uncheck('[data-test=auto-refresh]');
  assert.equal(new URL(page.url()).searchParams.get('refresh'), null);
  log('quick ranges end at the newest record, absolute times are read in the viewer\'s zone, auto-refresh reloads a live view and recovers when the processor is back');

  // --- a phone-sized screen, then dark mode
  const phone = await context.newPage();
  watch(phone);
  await phone.setViewportSize({ width: 390, height: 844 });
  // A new tab has its own sessionStorage: sign in again.
  await phone.goto(`${BASE}/ui/timeline?from=${picked.get('from')}&to=${picked.get('to')}`);
  await phone.waitForURL(/\/ui\/signin\?next=/);
  await signIn(phone, SHOP);
  await phone.waitForSelector('svg.chart[data-test="load-web-1"]');
  const signOut = await phone.locator('#signout').boundingBox();
  assert.ok(signOut && signOut.x + signOut.width <= 390, `Sign out is on screen (${JSON.stringify(signOut)})`);
  assert.equal(await overflow(phone), 0, 'the timeline is no wider than the screen');
  await shot(phone, '17-phone-timeline');
  for (const [name, url, ready] of [
    ['spike', `/ui/spike?from=${picked.get('from')}&to=${picked.get('to')}`, '[data-test=suspect-detail] [data-test=requests-table]'],
    ['requests', `/ui/requests?from=${picked.get('from')}&to=${picked.get('to')}&sort=slowest`, '[data-test=requests-table]'],
    ['request', shopRequest.replace(BASE, ''), '[data-test=db-activity]'],
    ['top', `/ui/top?from=${picked.get('from')}&to=${picked.get('to')}`, '[data-test=top-table] tbody tr'],
  ]) {
    await phone.goto(`${BASE}${url}`);
    await phone.waitForSelector(ready);
    assert.equal(await overflow(phone), 0, `the ${name} page is no wider than the screen; its tables scroll in their boxes`);
    if (name === 'spike') {
      await phone.waitForSelector('#spike-charts svg.chart');
      const [chart, grid] = await phone.$eval('#spike-charts', (g) => [g.querySelector('svg.chart').getBoundingClientRect().width, g.clientWidth]);
      assert.ok(chart >= grid * 0.9, `one column of charts is full width (${chart} of ${grid} px)`);
    }
    await shot(phone, `18-phone-${name}`);
  }
  await phone.emulateMedia({ colorScheme: 'dark' });
  await phone.goto(`${BASE}/ui/spike?from=${picked.get('from')}&to=${picked.get('to')}`);
  await phone.waitForSelector('[data-test=suspect-detail] [data-test=requests-table]');
  const background = await phone.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(background, 'rgb(11, 17, 32)', 'dark mode follows prefers-color-scheme');
  await shot(phone, '19-phone-spike-dark');
  await phone.setViewportSize({ width: 1366, height: 800 });
  await phone.goto(`${BASE}/ui/timeline?from=${picked.get('from')}&to=${picked.get('to')}`);
  await phone.waitForSelector('svg.chart[data-test="load-web-1"]');
  await shot(phone, '20-timeline-dark');
  await phone.close();
  log('at 390 px the header fits and no page is wider than the screen; dark mode follows the system');

  // --- another project's token sees nothing of shop
  const other = await context.newPage();
  watch(other);
  await other.goto(shopRequest);
  await other.waitForURL(/\/ui\/signin\?next=/);
  await signIn(other, BLOG);
  await other.waitForSelector('[data-test=not-found]');
  assert.match(await other.textContent('[data-test=who]'), /project blog/);
  await shot(other, '11-other-project-request');
  await other.click('header nav a:has-text("Timeline")');
  await other.waitForSelector('text=No data for this project');
  assert.equal(await other.$$eval('svg.chart', (c) => c.length), 0);
  await shot(other, '12-other-project-timeline');
  const tl = await apiGet(BLOG, '/v1/ui/timeline?from=2026-11-27T10:00:00Z&to=2026-11-27T10:15:00Z&project=shop');
  assert.equal(tl.status, 200);
  assert.deepEqual(tl.body.hosts, [], 'blog reads no shop series, even asking for project shop');
  const rep = await apiGet(BLOG, '/v1/report?from=2026-11-27T10:10:00Z&to=2026-11-27T10:13:00Z&project=shop');
  assert.deepEqual(rep.body.suspects, []);
  assert.equal((await apiGet('nope-nope-nope-nope', '/v1/ui/whoami')).status, 401);
  log('a blog token sees no shop request, timeline, series or report');

  // --- sign out
  await other.click('#signout');
  await other.waitForURL(/\/ui\/signin/);
  assert.equal(await other.evaluate(() => sessionStorage.getItem('bitville.token')), null);
  log('sign-out forgets the token');

  assert.deepEqual(problems, [], 'no script error, CSP refusal or outside request');
  console.log(`all ${step} steps passed`);
} catch (e) {
  console.error(`not ok ${step + 1} - ${e.stack || e}`);
  if (problems.length) console.error(`also seen:\n  ${problems.join('\n  ')}`);
  process.exitCode = 1;
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
