#!/usr/bin/env node
// Browser check of the Studio against a running platform: sign up as a creator, upload a clip with tus from the
// page (the upload throttled, the page reloaded half-way, the same file chosen again and resumed from the bytes
// the server stored), watch the processing timeline reach ready, edit the title (markup in it stays text), read
// the QoE numbers, and delete the video through the confirmation dialog. Debian's Chromium driven by
// playwright-core, as e2e/smoke.mjs does it.
//
//   node e2e/studio.mjs --base http://127.0.0.1:8080 --clip /path/clip.mp4 --title "Unique title"
//                       [--reload yes|no] [--screenshots DIR] [--viewport 1280x800] [--chromium /usr/bin/chromium]
//                       [--timeout 600]
//
// Prints one JSON object: {ok, failure, steps: {...}, csp_violations, console_errors}. Exit 0 when ok.

import fs from 'node:fs';
import path from 'node:path';
import { openBrowser, parseOptions } from './browser.mjs';

// Slow enough that a reload lands mid-upload, for a clip of a megabyte or two.
const THROTTLED_BYTES_PER_S = 96 * 1024;

async function throttle(cdp, bytesPerSecond) {
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond,
  });
}

async function main() {
  const o = parseOptions(
    process.argv.slice(2),
    { timeout: 600, reload: 'yes', viewport: '1280x800' },
    ['base', 'clip', 'title'],
  );
  const result = { ok: false, failure: null, steps: {}, csp_violations: [], console_errors: [] };
  let context = null;
  let profile = null;
  const shot = async (page, name) => {
    if (o.screenshots) await page.screenshot({ path: path.join(o.screenshots, `${name}.png`), fullPage: true });
  };
  try {
    const [width, height] = o.viewport.split('x').map(Number);
    const opened = await openBrowser(o, 'studio', result, { viewport: { width, height }, timeout: 60_000 });
    ({ context, profile } = opened);
    const { page } = opened;
    const patches = [];
    page.on('request', (r) => {
      if (r.method() === 'PATCH' && r.url().includes('/api/v1/tus/uploads/')) patches.push(Number(r.headers()['upload-offset']));
    });
    const csp = async () => result.csp_violations.push(...(await page.evaluate(() => window.__csp || [])));

    // Sign up as a creator; the profile picker follows, then the Studio.
    const email = `studio-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.test`;
    await page.goto(`${o.base}/signup?next=${encodeURIComponent('/studio')}`);
    await page.getByLabel('Name').fill('Studio test');
    await page.getByLabel('E-mail').fill(email);
    await page.getByLabel('Password').fill('studio-password-1');
    await page.getByLabel(/creator account/).check();
    await page.getByRole('button', { name: 'Sign up' }).click();
    await page.waitForURL((url) => url.pathname === '/profiles');
    await page.locator('.profile').first().click();
    await page.waitForURL((url) => url.pathname === '/studio');
    await page.getByRole('heading', { name: 'Upload a video' }).waitFor();
    result.steps.signed_up = email;

    // Upload, throttled; reload half-way; choose the file again: it resumes from the stored bytes.
    const size = fs.statSync(o.clip).size;
    result.steps.clip_bytes = size;
    const cdp = await context.newCDPSession(page);
    const reload = o.reload !== 'no';
    if (reload) await throttle(cdp, THROTTLED_BYTES_PER_S);
    await page.locator('input[type=file]').setInputFiles(o.clip);
    await page.getByLabel('Title').fill(o.title);
    await page.getByLabel('Tags (comma-separated)').fill('studio, e2e');
    const t0 = Date.now();
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    if (reload) {
      await page.waitForFunction(() => Number(document.querySelector('#upload-progress')?.value ?? 0) >= 25);
      result.steps.progress_before_reload = await page.locator('#upload-progress').evaluate((p) => p.value);
      await shot(page, 'studio-uploading');
      await page.reload();
      await throttle(cdp, -1);
      // The page lists the unfinished upload with what the server stored.
      const unfinished = page.locator('.unfinished li', { hasText: o.title });
      await unfinished.waitFor();
      await page.waitForFunction(() => /stored/.test(document.querySelector('.unfinished li')?.textContent ?? ''));
      result.steps.unfinished_text = (await unfinished.textContent())?.trim();
      await page.locator('input[type=file]').setInputFiles(o.clip);
      await page.getByRole('button', { name: 'Resume upload' }).click();
    }
    await page.locator('#upload-progress[data-phase="done"]').waitFor({ timeout: o.timeout });
    result.steps.upload_ms = Date.now() - t0;
    result.steps.patch_offsets = patches;
    result.steps.resumed_from = reload ? (patches.find((offset, i) => i > 0 && offset > 0) ?? 0) : null;

    // The timeline reaches ready.
    const row = page.locator('.studio-video', { hasText: o.title }).first();
    await row.waitFor();
    result.steps.video_id = await row.getAttribute('data-video-id');
    const seen = new Set();
    const t1 = Date.now();
    while (Date.now() - t1 < o.timeout) {
      const status = await row.locator('.timeline').getAttribute('data-status');
      seen.add(status);
      if (status === 'ready' || status === 'failed') break;
      await page.waitForTimeout(250);
    }
    result.steps.statuses_seen = [...seen];
    result.steps.final_status = await row.locator('.timeline').getAttribute('data-status');
    result.steps.processing_ms = Date.now() - t1;
    result.steps.timeline_text = (await row.locator('.timeline').innerText()).replace(/\s+/g, ' ').trim();
    await shot(page, 'studio-ready');
    if (result.steps.final_status !== 'ready') throw new Error(`timeline ended ${result.steps.final_status}`);

    // Edit: a title with markup stays text.
    const edited = `${o.title} <b>edited</b>`;
    await row.getByRole('button', { name: 'Edit' }).click();
    await row.getByLabel('Title').fill(edited);
    await row.getByLabel('Privacy').selectOption('unlisted');
    await row.getByRole('button', { name: 'Save' }).click();
    const editedRow = page.locator('.studio-video', { hasText: edited }).first();
    await editedRow.locator('.studio-video-title').waitFor();
    result.steps.edited_title = await editedRow.locator('.studio-video-title').textContent();
    result.steps.title_markup_elements = await editedRow.locator('.studio-video-title b').count();
    result.steps.edited_meta = (await editedRow.locator('.studio-video-head .muted').textContent())?.trim();

    // Stats: the QoE numbers show (no views yet: zeros and dashes).
    await editedRow.getByRole('button', { name: 'Stats' }).click();
    await editedRow.locator('.qoe-numbers dt', { hasText: 'Startup time p95' }).waitFor();
    result.steps.qoe = await editedRow.locator('.qoe-numbers').innerText();
    await shot(page, 'studio-stats');

    // Delete: Escape keeps the video; confirming removes it.
    await editedRow.getByRole('button', { name: 'Delete' }).click();
    const dialog = page.locator('dialog.confirm');
    await dialog.waitFor();
    result.steps.dialog_focus = await page.evaluate(() => document.activeElement?.textContent?.trim());
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    result.steps.kept_after_escape = (await page.locator('.studio-video', { hasText: edited }).count()) === 1;
    await editedRow.getByRole('button', { name: 'Delete' }).click();
    await shot(page, 'studio-delete');
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await page.locator('.studio-video', { hasText: edited }).waitFor({ state: 'detached' });
    result.steps.deleted = true;

    await csp();
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
