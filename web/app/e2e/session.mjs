#!/usr/bin/env node
// Browser check of the signed-in session and the admins' dashboard against a running platform: sign in through
// the page, the refresh token is an HttpOnly, SameSite=Strict cookie limited to /api/v1/auth and nowhere in
// localStorage or document.cookie, a reload stays signed in (the page refreshes with the cookie), /dashboard
// draws its tiles and charts without a CSP violation, and signing out removes the cookie.
//
//   node e2e/session.mjs --base http://127.0.0.1:8080 --email admin@example.test --password secret [--screenshots DIR]
//
// Prints one JSON object: {ok, failure, steps, csp_violations, console_errors}. Exit 0 when ok.

import fs from 'node:fs';
import path from 'node:path';
import { openBrowser, parseOptions } from './browser.mjs';

async function main() {
  const o = parseOptions(process.argv.slice(2), { timeout: 30 }, ['base', 'email', 'password']);
  const result = { ok: false, failure: null, steps: {}, csp_violations: [], console_errors: [] };
  let context = null;
  let profile = null;
  try {
    const opened = await openBrowser(o, 'session', result);
    ({ context, profile } = opened);
    const { page } = opened;
    const refreshCookie = async () => (await context.cookies(o.base + '/api/v1/auth/refresh')).find((c) => c.name === 'vidplat_refresh');

    await page.goto(`${o.base}/signin?next=/dashboard`);
    await page.getByLabel('E-mail').fill(o.email);
    await page.getByLabel('Password').fill(o.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    // The profile picker comes first, then the page asked for.
    await page.getByRole('heading', { name: 'Who is watching?' }).waitFor();
    await page.locator('.profile-list button').first().click();
    await page.getByRole('heading', { name: 'QoE dashboard' }).waitFor();
    const cookie = await refreshCookie();
    result.steps.cookie = cookie ? { httpOnly: cookie.httpOnly, sameSite: cookie.sameSite, path: cookie.path } : null;
    result.steps.local_storage_keys = await page.evaluate(() => Object.keys(localStorage));
    result.steps.local_storage_has_token = await page.evaluate(
      (c) => Object.values(localStorage).some((v) => v.includes(c)), cookie ? cookie.value : '\u0000');
    result.steps.document_cookie = await page.evaluate(() => document.cookie);

    // A reload keeps the session: the page trades the cookie for an access token (and the cookie rotates).
    await page.reload();
    await page.getByRole('heading', { name: 'QoE dashboard' }).waitFor();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    result.steps.rotated = (await refreshCookie())?.value !== cookie?.value;
    await page.locator('.dash-tiles').waitFor();
    await page.locator('.dash-chart canvas').first().waitFor();
    result.steps.charts = await page.locator('.dash-chart canvas').count();
    result.steps.tiles = await page.locator('.dash-tiles dt').allTextContents();
    // The controls are labelled and reachable by keyboard.
    await page.getByLabel('Time range', { exact: true }).selectOption('15m');
    await page.getByLabel('Window', { exact: true }).selectOption('60');
    await page.getByLabel('Device class', { exact: true }).selectOption('desktop');
    await page.getByRole('button', { name: 'Refresh now' }).focus();
    await page.keyboard.press('Enter');
    await page.getByText(/^Updated /).waitFor();
    result.steps.controls = 'ok';
    if (o.screenshots) {
      await page.screenshot({ path: path.join(o.screenshots, 'dashboard-1280.png'), fullPage: true });
      await page.setViewportSize({ width: 390, height: 844 });
      await page.waitForTimeout(300);
      await page.screenshot({ path: path.join(o.screenshots, 'dashboard-390.png'), fullPage: true });
      result.steps.phone_overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
      await page.setViewportSize({ width: 1280, height: 800 });
    }

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('link', { name: 'Sign in' }).waitFor();
    await page.waitForTimeout(300);
    result.steps.cookie_after_sign_out = (await refreshCookie()) ?? null;
    result.csp_violations = await page.evaluate(() => window.__csp || []);
    result.ok = true;
  } catch (error) {
    result.failure = String(error && error.stack ? error.stack : error).slice(0, 2000);
  } finally {
    if (context) await context.close().catch(() => undefined);
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(JSON.stringify(result));
  process.exitCode = result.ok ? 0 : 1;
}

await main();
