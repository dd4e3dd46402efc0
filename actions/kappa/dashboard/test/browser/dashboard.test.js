// The dashboard in headless Chromium against a real `kappa dev`: pick an example, see the
// replay reach caught-up, ingest more and see the numbers and the chart change, restart the
// server and see the page reconnect. Writes docs/dashboard.png and prints the figures.
//
// Env: KAPPA_BIN (the kappa binary), CHROMIUM (default /usr/bin/chromium),
// SCREENSHOT (default <repo>/docs/dashboard.png).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../../../../..');
const BIN = process.env.KAPPA_BIN || join(repo, 'target/debug/kappa');
const SHOT = process.env.SCREENSHOT || join(repo, 'docs/dashboard.png');
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];

// Enough records that the replay takes many batches (the page sees it before caught-up).
const N0 = 15000;
let dataDir, profile, port, base, server, context, page;

const freePort = () => new Promise((ok) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); }); });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startServer() {
  server = spawn(BIN, ['dev', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--tick-ms', '200',
    '--batch-records', '150', '--workers', '2'], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, KAPPA_LOG: 'warn', KAFKA_BROKERS: '', REDIS_URL: '' } });
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(`${base}/healthz`)).ok) return; } catch { /* not yet */ }
    await sleep(50);
  }
  throw new Error('kappa dev did not come up');
}

async function stopServer() {
  const done = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  await Promise.race([done, sleep(5000)]);
  if (server.exitCode === null) { server.kill('SIGKILL'); await done; }
}

/** Real tweets through `kappa demo` (the generator, over HTTP ingest). */
function ingest(count, startIndex) {
  execFileSync(BIN, ['demo', '--server', base, '--rate', '1000000', '--count', String(count), '--start-index', String(startIndex)],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, KAPPA_LOG: 'warn' } });
}

const panel = (i) => page.locator('section.panel').nth(i);
async function waitFor(fn, what, ms = 30000) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < ms) {
    last = await fn();
    if (last) return last;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}
const attr = (i, name) => panel(i).getAttribute(`data-${name}`);

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'kappa-dash-'));
  profile = mkdtempSync(join(tmpdir(), 'kappa-chromium-'));
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  await startServer();
  ingest(N0, 0);
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: FLAGS,
    viewport: { width: 1400, height: 1000 },
  });
  page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e));
});

after(async () => {
  if (context) await context.close();
  if (server && server.exitCode === null) await stopServer();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(profile, { recursive: true, force: true });
});

test('the page validates as you type with the server\'s errors', async () => {
  await page.goto(`${base}/`);
  await page.waitForSelector('body[data-ready=true]');
  const editor = panel(0).locator('textarea.editor');
  await editor.fill('{"topic":"tweets","aggs":{"tags":{"terms":{"field":"lang","sizee":3}}}}');
  await waitFor(async () => (await panel(0).locator('.validation').textContent()).includes('aggs.tags.terms'), 'validation error');
  assert.match(await panel(0).locator('.validation').textContent(), /parsing_exception: .*sizee.* at aggs\.tags\.terms/);
  assert.equal(await panel(0).locator('button.run').isDisabled(), true);
  await editor.fill('{"topic":"tweets"}');
  await waitFor(async () => (await panel(0).locator('.validation').textContent()).startsWith('valid'), 'valid');
});

test('an example replays to caught-up, then follows new records', async () => {
  const lang = await page.locator('section.panel select.examples option', { hasText: 'Language split' }).getAttribute('value');
  // Watch the replay: versions and caught-up flags as the page shows them.
  await page.evaluate(() => {
    window.seen = [];
    const p = document.querySelector('section.panel');
    new MutationObserver(() => window.seen.push([p.dataset.version, p.dataset.caughtUp, p.querySelector('.progress .bar').style.width]))
      .observe(p, { attributes: true, subtree: true });
  });
  await panel(0).locator('select.examples').selectOption(lang);
  await waitFor(async () => (await attr(0, 'caught-up')) === 'true' && (await attr(0, 'total')) === String(N0), 'caught up');
  assert.equal(await panel(0).locator('.caught').textContent(), '✓ caught up');
  assert.match(await panel(0).locator('.progress .bar').evaluate((b) => b.style.width), /^100(\.0)?%$/);
  assert.equal(await panel(0).locator('.conn').textContent(), 'open');
  const seen = await page.evaluate(() => window.seen);
  assert.ok(seen.some(([, c]) => c === 'false'), 'saw the replay before caught-up');
  const v1 = Number(await attr(0, 'version'));
  assert.ok(v1 >= 2, `several versions during replay (v${v1})`);
  const bars = await panel(0).locator('.barrow').count();
  assert.ok(bars >= 3, `language bars: ${bars}`);
  const before = await panel(0).locator('.barrow .num').allTextContents();
  const sum = (xs) => xs.reduce((a, x) => a + Number(x.replace(/,/g, '')), 0);

  // A second panel, side by side: the arrival timeline.
  await page.locator('#add').click();
  const perMinute = await page.locator('section.panel select.examples option', { hasText: 'Tweets per minute' }).first().getAttribute('value');
  await panel(1).locator('select.examples').selectOption(perMinute);
  await waitFor(async () => (await attr(1, 'caught-up')) === 'true' && (await attr(1, 'total')) === String(N0), 'timeline caught up');
  const chart = panel(1).locator('[data-agg=per_minute]');
  assert.equal(await chart.getAttribute('data-kind'), 'timeline');
  assert.equal(await chart.locator('canvas').count(), 1);
  assert.equal(await chart.getAttribute('data-sum'), String(N0));

  ingest(1500, N0);
  await waitFor(async () => (await attr(0, 'total')) === String(N0 + 1500), 'more in panel 0');
  await waitFor(async () => (await panel(1).locator('[data-agg=per_minute]').getAttribute('data-sum')) === String(N0 + 1500), 'chart sum grows');
  assert.ok(Number(await attr(0, 'version')) > v1, 'new versions after ingest');
  const afterBars = await panel(0).locator('.barrow .num').allTextContents();
  assert.notDeepEqual(afterBars, before);
  assert.equal(sum(afterBars) - sum(before) > 0, true);
  assert.match(page.url(), /#q=[A-Za-z0-9_-]+&q=[A-Za-z0-9_-]+$/);
});

test('the shared URL opens the same panels', async () => {
  const url = page.url();
  const other = await context.newPage();
  await other.goto(url);
  await other.waitForSelector('body[data-ready=true]');
  await waitFor(async () => (await other.locator('section.panel').count()) === 2
    && (await other.locator('section.panel').nth(0).getAttribute('data-total')) === String(N0 + 1500), 'shared view');
  await other.close();
});

test('after a server restart the page reconnects and keeps following', async () => {
  const v = Number(await attr(0, 'version'));
  await stopServer();
  await waitFor(async () => ['reconnecting', 'connecting'].includes(await attr(0, 'state')), 'reconnecting state');
  await startServer();
  await waitFor(async () => (await attr(0, 'state')) === 'open', 'open again');
  ingest(500, N0 + 1500);
  await waitFor(async () => (await attr(0, 'total')) === String(N0 + 2000), 'more after restart');
  assert.ok(Number(await attr(0, 'version')) > v);
  // The figures panel and a search with live hits, for the picture.
  await page.locator('#add').click();
  const stats = await page.locator('section.panel select.examples option', { hasText: 'Retweets: stats' }).first().getAttribute('value');
  await panel(2).locator('select.examples').selectOption(stats);
  await page.locator('#add').click();
  const search = await page.locator('section.panel select.examples option', { hasText: 'Search' }).first().getAttribute('value');
  await panel(3).locator('select.examples').selectOption(search);
  await page.locator('#add').click();
  const perHour = await page.locator('section.panel select.examples option', { hasText: 'Hashtags per hour' }).first().getAttribute('value');
  await panel(4).locator('select.examples').selectOption(perHour);
  await waitFor(async () => (await attr(2, 'caught-up')) === 'true' && (await attr(3, 'caught-up')) === 'true'
    && (await attr(4, 'caught-up')) === 'true', 'more panels');
  assert.ok(Number(await attr(3, 'total')) > 0, 'the search finds tweets');
  assert.ok(await panel(3).locator('table.hits tbody tr').count() > 0, 'live top hits as a table');
  assert.ok(await panel(2).locator('.figure').count() >= 5);
  await sleep(300);
  mkdirSync(dirname(SHOT), { recursive: true });
  await page.screenshot({ path: SHOT, fullPage: true });
});

test('figures: time to the first rendered result of a caught-up query', async () => {
  const url = page.url().replace(/&.*$/, '');
  const times = [];
  for (let i = 0; i < 5; i++) {
    const p = await context.newPage();
    await p.goto(url);
    const t = await waitFor(() => p.evaluate(() => window.kappaTimings && window.kappaTimings.firstCaughtUp), 'first result');
    times.push(t);
    await p.close();
  }
  times.sort((a, b) => a - b);
  console.log(`FIGURE first caught-up render over ${await attr(0, 'total')} records: median ${times[2].toFixed(0)} ms (${times.map((t) => t.toFixed(0)).join(', ')})`);
  assert.ok(times[2] < 5000);
});
