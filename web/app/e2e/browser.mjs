// What the web app's browser checks share: Debian's Chromium launched by playwright-core (no browser download, as
// web/player-check does it) in a throwaway profile, with every CSP violation and console error of the page
// recorded in the check's result, and the `--name value` options every check takes.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
  '--autoplay-policy=no-user-gesture-required',
  '--mute-audio',
];

/** `--name value` pairs over ``defaults``; ``required`` names must be given. Timeout in seconds → ms. */
export function parseOptions(argv, defaults, required) {
  const o = { chromium: process.env.CHROMIUM_PATH || '/usr/bin/chromium', screenshots: null, ...defaults };
  for (let i = 0; i < argv.length; i += 2) o[argv[i].replace(/^--/, '')] = argv[i + 1];
  for (const need of required) if (!o[need]) throw new Error(`--${need} is required`);
  o.timeout = Number(o.timeout) * 1000;
  o.base = o.base.replace(/\/+$/, '');
  return o;
}

/** A persistent context in a fresh profile and its first page; CSP violations land in ``window.__csp`` and the
 * page's console errors in ``result.console_errors``. */
export async function openBrowser(o, name, result, { viewport = { width: 1280, height: 800 }, timeout = o.timeout } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), `webapp-${name}-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: o.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
    timeout: 60_000,
  });
  context.setDefaultTimeout(timeout);
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      (window.__csp = window.__csp || []).push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => {
    if (m.type() === 'error' && result.console_errors.length < 20) result.console_errors.push(m.text().slice(0, 300));
  });
  page.on('pageerror', (e) => result.console_errors.push(`pageerror: ${String(e).slice(0, 300)}`));
  return { context, page, profile };
}
