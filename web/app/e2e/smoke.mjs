#!/usr/bin/env node
// Browser check of the web app against a running platform: Home shows the video, the search box finds it, its
// Watch page plays to the first frame, and back/forward move between those pages. Debian's Chromium driven by
// playwright-core (no browser download), as web/player-check does it.
//
//   node e2e/smoke.mjs --base http://127.0.0.1:8080 --title "Exact title" --query word [--screenshots DIR]
//                      [--chromium /usr/bin/chromium] [--timeout 60]
//
// Prints one JSON object: {ok, failure, steps: {...}, ttff_ms, csp_violations, console_errors}. Exit 0 when ok.

import fs from 'node:fs';
import path from 'node:path';
import { openBrowser, parseOptions } from './browser.mjs';

async function main() {
  const o = parseOptions(process.argv.slice(2), { timeout: 60 }, ['base', 'title', 'query']);
  const result = { ok: false, failure: null, steps: {}, ttff_ms: null, csp_violations: [], console_errors: [] };
  let context = null;
  let profile = null;
  const shot = async (page, name) => {
    if (o.screenshots) await page.screenshot({ path: path.join(o.screenshots, `${name}.png`), fullPage: false });
  };
  try {
    const opened = await openBrowser(o, 'smoke', result);
    ({ context, profile } = opened);
    const { page } = opened;

    // Home: the video is on a shelf (Newest), as a link to its watch page.
    let t0 = Date.now();
    const home = await page.goto(`${o.base}/`);
    result.steps.home_status = home?.status() ?? null;
    result.steps.home_csp = home?.headers()['content-security-policy'] ?? null;
    const card = page.locator('.card-link', { hasText: o.title }).first();
    await card.waitFor();
    result.steps.home_ms = Date.now() - t0;
    result.steps.home_title = await page.title();
    await shot(page, 'home');

    // Search: typed into the header's box, submitted with Enter (the keyboard path).
    t0 = Date.now();
    await page.locator('#q').fill(o.query);
    await page.locator('#q').press('Enter');
    await page.waitForURL((url) => url.pathname === '/search' && url.searchParams.get('q') === o.query);
    const hit = page.locator('.results .card-link', { hasText: o.title }).first();
    await hit.waitFor();
    result.steps.search_ms = Date.now() - t0;
    result.steps.search_url = page.url();
    await shot(page, 'search');

    // Watch: the result opens the watch page, and the player shows its first frame.
    t0 = Date.now();
    await hit.click();
    await page.waitForURL(/\/watch\/[^/]+$/);
    result.steps.watch_url = page.url();
    await page.locator('.player[data-first-frame="yes"]').waitFor();
    result.ttff_ms = Date.now() - t0;
    await page.waitForFunction(() => {
      const v = document.querySelector('.player video');
      return v && v.currentTime > 0;
    });
    result.steps.watch_heading = await page.locator('h1.watch-title').textContent();
    result.steps.qualities = await page.locator('select[aria-label="Quality"] option').allTextContents();
    // Keyboard: k pauses.
    await page.keyboard.press('k');
    await page.waitForFunction(() => document.querySelector('.player video')?.paused === true);
    result.steps.keyboard_pause = true;
    await shot(page, 'watch');

    // Back to the results, forward to the video: the History API routes.
    await page.goBack();
    await page.waitForURL((url) => url.pathname === '/search');
    await page.locator('.results .card-link', { hasText: o.title }).first().waitFor();
    await page.goForward();
    await page.waitForURL(/\/watch\/[^/]+$/);
    await page.locator('h1.watch-title').waitFor();
    result.steps.back_forward = true;

    result.csp_violations = await page.evaluate(() => window.__csp || []);
    // A client-side route loaded directly (the API's fallback to index.html).
    const direct = await page.goto(result.steps.search_url);
    result.steps.direct_route_status = direct?.status() ?? null;
    await page.locator('.results .card-link', { hasText: o.title }).first().waitFor();

    result.csp_violations.push(...(await page.evaluate(() => window.__csp || [])));
    if (result.csp_violations.length) throw new Error(`CSP violations: ${result.csp_violations.join(', ')}`);
    result.ok = true;
  } catch (error) {
    result.failure = String(error?.message ?? error).split('\n')[0];
  } finally {
    if (context) await context.close().catch(() => {});
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exitCode = result.ok ? 0 : 1;
}

await main();
