// Time from opening the page to the first rendered result of an already caught-up query, in
// headless Chromium: `node bench/first-render.mjs http://127.0.0.1:8080 [example index] [runs]`.
// Prints performance.now() at the first render with caught_up (navigation start = 0).
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXAMPLES } from '../src/examples.js';

const [base = 'http://127.0.0.1:8080', ex = '0', runs = '7'] = process.argv.slice(2);
const body = JSON.stringify(EXAMPLES[Number(ex)].query);
// Make sure it is caught up before timing.
const { id } = await (await fetch(`${base}/v1/queries`, { method: 'POST', body })).json();
for (;;) {
  const s = await (await fetch(`${base}/v1/queries/${id}`)).json();
  if (s.caught_up) { console.log(`query ${id} caught up over ${s.progress.processed} records`); break; }
  await new Promise((r) => setTimeout(r, 500));
}
const profile = mkdtempSync(join(tmpdir(), 'kappa-chromium-'));
const ctx = await chromium.launchPersistentContext(profile, { executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
const url = `${base}/#q=${Buffer.from(body).toString('base64url')}`;
const times = [];
for (let i = 0; i < Number(runs); i++) {
  const page = await ctx.newPage();
  await page.goto(url);
  await page.waitForFunction(() => window.kappaTimings && window.kappaTimings.firstCaughtUp !== null, null, { timeout: 30000 });
  times.push(await page.evaluate(() => window.kappaTimings.firstCaughtUp));
  await page.close();
}
await ctx.close();
rmSync(profile, { recursive: true, force: true });
times.sort((a, b) => a - b);
console.log(`first caught-up render (${EXAMPLES[Number(ex)].name}): median ${times[times.length >> 1].toFixed(0)} ms, min ${times[0].toFixed(0)}, max ${times[times.length - 1].toFixed(0)} (${times.map((t) => t.toFixed(0)).join(', ')})`);
