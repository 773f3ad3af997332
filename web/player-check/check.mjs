#!/usr/bin/env node
// Headless-browser player checker: proves that a real web player (hls.js,
// dash.js or shaka-player) running in Chromium plays a stream to the end.
//
//   node check.mjs --player hls|dash|shaka --url <manifest url>
//                  [--cmcd] [--cmcd-collector <url>] [--cmcd-session-id <id>]
//                  [--cmcd-content-id <id>] [--timeout 120] [--rate 4]
//                  [--chromium /usr/bin/chromium] [--screenshot out.png] [--json]
//
// Prints exactly one JSON object on stdout. Exit code: 0 = the `ended` event
// fired and no error event of any kind (fatal or not) was seen; 1 = played
// badly / did not finish / errors; 2 = bad usage; 3 = the checker itself
// failed (browser would not start, ...). See README.md.

import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

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

const PLAYERS = {
  hls: { pkg: 'hls.js', file: 'dist/hls.min.js' },
  dash: { pkg: 'dashjs', file: 'dist/modern/umd/dash.all.min.js' },
  shaka: { pkg: 'shaka-player', file: 'dist/shaka-player.compiled.js' },
};

const USAGE = `usage: node check.mjs --player hls|dash|shaka --url <manifest url> [options]

  --player P              hls (hls.js) | dash (dash.js) | shaka (shaka-player)
  --url URL               manifest URL (.m3u8 / .mpd); must send CORS headers
  --cmcd                  enable CMCD (query-string mode) in the player
  --cmcd-collector URL    also send CMCD v2 event reports (ps,e,bc,t) to URL (implies --cmcd)
  --cmcd-session-id ID    CMCD sid to use (default: random UUID)
  --cmcd-content-id ID    CMCD cid to use (default: last 64 chars of the URL path)
  --telemetry URL         also run our telemetry SDK (web/sdk), posting beacons to URL, with the
                          CMCD session id (implies --cmcd); --video-id ID names the video in them
  --timeout S             give up after S seconds of playback (default 120)
  --rate R                playbackRate (default 2; 1 = real time; see README)
  --error-grace S         after the first non-fatal error keep watching at most S more
                          seconds (default 20) before giving up; the check fails anyway
  --chromium PATH         browser binary (default $CHROMIUM_PATH or /usr/bin/chromium)
  --screenshot FILE       save a PNG of the page when playback stops
  --ignore-error NAME     do not fail on NON-fatal errors whose hls.js "details" or
                          dash.js/shaka "code" is NAME (repeatable or comma list);
                          they are still listed under ignored_errors
  --json                  only the JSON result (no human summary on stderr)
`;

class UsageError extends Error {}

function parseArgs(argv) {
  const o = {
    player: null,
    url: null,
    cmcd: false,
    collector: null,
    telemetry: null,
    videoId: null,
    sessionId: null,
    contentId: null,
    timeout: 120,
    errorGrace: 20,
    ignoreErrors: [],
    rate: 2,
    chromium: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    screenshot: null,
    json: false,
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let inline = null;
    if (a.startsWith('--') && a.includes('=')) {
      inline = a.slice(a.indexOf('=') + 1);
      a = a.slice(0, a.indexOf('='));
    }
    const val = () => {
      if (inline !== null) return inline;
      if (i + 1 >= argv.length) throw new UsageError(`missing value for ${a}`);
      return argv[++i];
    };
    switch (a) {
      case '--player': o.player = val(); break;
      case '--url': o.url = val(); break;
      case '--cmcd': o.cmcd = true; break;
      case '--cmcd-collector': o.collector = val(); o.cmcd = true; break;
      case '--cmcd-session-id': o.sessionId = val(); break;
      case '--telemetry': o.telemetry = val(); o.cmcd = true; break;
      case '--video-id': o.videoId = val(); break;
      case '--cmcd-content-id': o.contentId = val(); break;
      case '--timeout': o.timeout = Number(val()); break;
      case '--rate': o.rate = Number(val()); break;
      case '--error-grace': o.errorGrace = Number(val()); break;
      case '--ignore-error': o.ignoreErrors.push(...val().split(',').filter(Boolean)); break;
      case '--chromium': o.chromium = val(); break;
      case '--screenshot': o.screenshot = val(); break;
      case '--json': o.json = true; break;
      case '-h': case '--help': process.stdout.write(USAGE); process.exit(0); break;
      default: throw new UsageError(`unknown argument: ${argv[i]}`);
    }
  }
  if (!o.player || !PLAYERS[o.player]) throw new UsageError('--player must be one of hls, dash, shaka');
  if (!o.url) throw new UsageError('--url is required');
  try {
    const u = new URL(o.url);
    if (!/^https?:$/.test(u.protocol)) throw new Error();
  } catch {
    throw new UsageError(`--url is not an http(s) URL: ${o.url}`);
  }
  if (!(o.timeout > 0)) throw new UsageError('--timeout must be > 0 seconds');
  if (!(o.errorGrace >= 0)) throw new UsageError('--error-grace must be >= 0 seconds');
  if (!(o.rate > 0 && o.rate <= 16)) throw new UsageError('--rate must be in (0, 16]');
  if (o.cmcd) {
    o.sessionId = o.sessionId || crypto.randomUUID();
    if (!o.contentId) o.contentId = new URL(o.url).pathname.slice(-64);
  }
  return o;
}

function findPackageDir(pkg) {
  for (let dir = HERE; ; dir = path.dirname(dir)) {
    const cand = path.join(dir, 'node_modules', pkg);
    if (fs.existsSync(path.join(cand, 'package.json'))) return cand;
    if (path.dirname(dir) === dir) break;
  }
  throw new Error(`npm package ${pkg} not found: run \`npm ci\` in ${HERE}`);
}

function pageHtml(player) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>player-check ${player}</title>
<style>html,body{margin:0;background:#000}video{width:640px;height:360px;display:block}</style>
</head><body>
<video id="video" muted autoplay playsinline></video>
<script src="/lib/player.js"></script>
<script src="/sdk.js"></script>
<script src="/harness.js"></script>
</body></html>
`;
}

// Serve the page, the harness and the player library from node_modules on
// 127.0.0.1:<random port>. Nothing is fetched from a CDN.
function startPageServer(player) {
  const libFile = path.join(findPackageDir(PLAYERS[player].pkg), PLAYERS[player].file);
  if (!fs.existsSync(libFile)) throw new Error(`player library missing: ${libFile}`);
  const lib = fs.readFileSync(libFile);
  const harness = fs.readFileSync(path.join(HERE, 'page', 'harness.js'));
  const sdk = fs.readFileSync(path.join(HERE, '..', 'sdk', 'vidplat-telemetry.js'));
  const html = Buffer.from(pageHtml(player));
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    const send = (type, body) => {
      res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-store', 'Content-Length': body.length });
      res.end(body);
    };
    if (p === '/' || p === '/index.html') return send('text/html; charset=utf-8', html);
    if (p === '/lib/player.js') return send('text/javascript; charset=utf-8', lib);
    if (p === '/harness.js') return send('text/javascript; charset=utf-8', harness);
    if (p === '/sdk.js') return send('text/javascript; charset=utf-8', sdk);
    if (p === '/favicon.ico') {
      res.writeHead(204);
      res.end();
      return undefined;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
    return undefined;
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({ server, origin: `http://127.0.0.1:${server.address().port}` }));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function hasCmcd(url, headers) {
  if (/[?&]CMCD=/.test(url)) return true;
  return Object.keys(headers || {}).some((h) => h.toLowerCase().startsWith('cmcd-'));
}

function kindOf(url, method) {
  if (method === 'POST') return 'post';
  const p = (() => {
    try { return new URL(url).pathname.toLowerCase(); } catch { return url; }
  })();
  if (p.endsWith('.m3u8') || p.endsWith('.mpd')) return 'manifest';
  return 'segment';
}

function summarize(r) {
  const lines = [];
  lines.push(`player-check ${r.player} (${r.lib_version || '?'}) on ${r.browser_version || 'chromium'}: ${r.ok ? 'OK' : 'FAILED'}${r.failure ? ` (${r.failure})` : ''}`);
  lines.push(`  url            ${r.url}`);
  lines.push(`  ttff           ${r.ttff_ms === null ? '-' : `${r.ttff_ms} ms (${r.ttff_source})`}`);
  lines.push(`  played         ${r.current_time_s} / ${r.duration_s} s at ${r.playback_rate}x, ended=${r.ended}`);
  lines.push(`  frames         ${r.total_frames} total, ${r.dropped_frames} dropped; ${r.video_width}x${r.video_height}`);
  lines.push(`  requests       ${r.requests.manifest} manifest, ${r.requests.segment} segment, ${r.requests.failed} failed, ${r.requests.http_errors.length} HTTP errors`);
  lines.push(`  stalls         ${r.stalls}; switches ${r.switches.length}; errors ${r.errors.length}`);
  if (r.cmcd) lines.push(`  cmcd           sid=${r.cmcd_session_id} cid=${r.cmcd_content_id}; ${r.cmcd_requests}/${r.requests.manifest + r.requests.segment} requests carried CMCD; collector posts ${r.cmcd_collector_posts}`);
  for (const e of r.errors.slice(0, 10)) lines.push(`  error          ${JSON.stringify(e)}`);
  return lines.join('\n') + '\n';
}

async function run(opts) {
  const { chromium } = await import('playwright-core');
  const base = {
    player: opts.player,
    url: opts.url,
    ok: false,
    failure: null,
    ttff_ms: null,
    ended: false,
    duration_s: null,
    current_time_s: null,
    errors: [],
    stalls: 0,
    switches: [],
    dropped_frames: null,
    total_frames: null,
    cmcd: opts.cmcd,
    cmcd_session_id: opts.cmcd ? opts.sessionId : null,
    cmcd_content_id: opts.cmcd ? opts.contentId : null,
    cmcd_collector: opts.collector,
    cmcd_requests: 0,
    cmcd_collector_posts: 0,
    playback_rate: opts.rate,
  };
  if (opts.cmcd) process.stderr.write(`player-check: CMCD session id ${opts.sessionId}\n`);

  const { server, origin } = await startPageServer(opts.player);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'player-check-profile-'));
  let context = null;
  const requests = { manifest: 0, segment: 0, failed: 0, http_errors: [], failures: [] };
  const consoleErrors = [];
  let crashed = false;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: opts.chromium,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 640, height: 360 },
      timeout: 60_000,
    });
    const browserVersion = context.browser() ? context.browser().version() : null;
    const page = context.pages()[0] || (await context.newPage());
    page.on('crash', () => { crashed = true; });
    const debugLog = process.env.PLAYER_CHECK_DEBUG ? fs.createWriteStream(process.env.PLAYER_CHECK_DEBUG) : null;
    page.on('console', (m) => {
      if (m.type() === 'error' && consoleErrors.length < 20) consoleErrors.push(m.text().slice(0, 300));
      if (debugLog) debugLog.write(`${new Date().toISOString()} ${m.type()} ${m.text()}\n`);
    });
    const collectorUrl = opts.collector ? opts.collector.split('?')[0] : null;
    const isMedia = (url) => /^https?:/i.test(url) && !url.startsWith(origin);
    page.on('request', (req) => {
      const url = req.url();
      if (!isMedia(url)) return;
      if (collectorUrl && url.split('?')[0] === collectorUrl) {
        base.cmcd_collector_posts += 1;
        return;
      }
      const k = kindOf(url, req.method());
      if (k === 'manifest' || k === 'segment') {
        requests[k] += 1;
        if (hasCmcd(url, req.headers())) base.cmcd_requests += 1;
      }
    });
    page.on('response', (resp) => {
      const url = resp.url();
      if (!isMedia(url) || resp.status() < 400) return;
      if (requests.http_errors.length < 50) requests.http_errors.push({ status: resp.status(), url });
    });
    page.on('requestfailed', (req) => {
      const url = req.url();
      if (!isMedia(url)) return;
      requests.failed += 1;
      if (requests.failures.length < 50) requests.failures.push({ url, error: (req.failure() || {}).errorText || null });
    });

    const qs = new URLSearchParams({ player: opts.player, url: opts.url, rate: String(opts.rate) });
    if (debugLog) qs.set('debug', '1');
    if (opts.cmcd) {
      qs.set('cmcd', '1');
      qs.set('sid', opts.sessionId);
      qs.set('cid', opts.contentId);
      if (opts.collector) qs.set('collector', opts.collector);
    }
    if (opts.telemetry) {
      qs.set('telemetry', opts.telemetry);
      if (opts.videoId) qs.set('vid', opts.videoId);
    }
    await page.goto(`${origin}/?${qs}`, { waitUntil: 'load', timeout: 30_000 });

    const deadline = Date.now() + opts.timeout * 1000;
    let snap = null;
    let timedOut = false;
    let firstErrorAt = null;
    let graceExpired = false;
    for (;;) {
      if (crashed) break;
      try {
        snap = await page.evaluate(() => (window.__playerCheck ? window.__playerCheck.snapshot() : null));
      } catch (e) {
        if (crashed) break;
        throw e;
      }
      if (snap && snap.done) {
        await sleep(300); // let trailing error events arrive
        if (opts.telemetry) {
          // Wait until the SDK's last beacon was taken (at most 10 s), as a viewer's page would stay open.
          for (let i = 0; i < 50 && (await page.evaluate(() => window.__telemetry && window.__telemetry.pending())); i++) await sleep(200);
        }
        snap = await page.evaluate(() => window.__playerCheck.snapshot());
        break;
      }
      if (Date.now() > deadline) {
        timedOut = true;
        break;
      }
      const counted = snap && snap.errors ? snap.errors.filter((e) => e.fatal || !opts.ignoreErrors.some((n) => n === e.details || n === String(e.code))) : [];
      if (counted.length && firstErrorAt === null) firstErrorAt = Date.now();
      if (firstErrorAt !== null && Date.now() - firstErrorAt > opts.errorGrace * 1000) {
        graceExpired = true;
        break;
      }
      await sleep(200);
    }
    if (opts.screenshot && !crashed) {
      try { await page.screenshot({ path: opts.screenshot }); } catch (e) { process.stderr.write(`player-check: screenshot failed: ${e.message}\n`); }
    }

    const s = snap || {};
    const isIgnored = (e) => !e.fatal && opts.ignoreErrors.some((n) => n === e.details || n === String(e.code));
    const allErrors = s.errors || [];
    const result = {
      ...base,
      ttff_ms: s.ttff_ms ?? null,
      ended: !!s.ended,
      ended_via: s.ended_via ?? null,
      duration_s: s.duration_s ?? null,
      live: !!s.live,
      current_time_s: s.current_time_s ?? null,
      errors: allErrors.filter((e) => !isIgnored(e)),
      ignored_errors: allErrors.filter(isIgnored),
      stalls: (s.stalls || []).length,
      switches: s.switches || [],
      dropped_frames: s.dropped_frames ?? null,
      total_frames: s.total_frames ?? null,
      playback_rate: s.playback_rate ?? opts.rate,
      ttff_source: s.ttff_source ?? null,
      end_reason: crashed ? 'page-crash' : timedOut ? 'timeout' : graceExpired ? 'error-grace-expired' : s.end_reason ?? null,
      lib_version: s.lib_version ?? null,
      browser_version: browserVersion,
      stall_details: s.stalls || [],
      initial_rendition: s.initial_rendition ?? null,
      rendition: s.rendition ?? null,
      renditions_available: s.renditions_available ?? null,
      video_width: s.video_width ?? null,
      video_height: s.video_height ?? null,
      decoded_frames: s.decoded_frames ?? null,
      audio_decoded_bytes: s.audio_decoded_bytes ?? null,
      buffered: s.buffered ?? [],
      timeline: s.timeline || {},
      play_rejections: s.play_rejections || [],
      requests,
      console_errors: consoleErrors,
      elapsed_ms: s.elapsed_ms ?? null,
      telemetry: s.telemetry ?? null,
    };
    result.ok = result.ended && result.errors.length === 0 && !crashed;
    if (!result.ok) {
      if (crashed) result.failure = 'page crashed';
      else if (result.errors.length) result.failure = `${result.errors.length} error event(s), first: ${result.errors[0].source} ${result.errors[0].details || result.errors[0].message || result.errors[0].code || ''}`.trim();
      else if (timedOut) result.failure = `no ended event within ${opts.timeout}s (at ${result.current_time_s}s of ${result.duration_s}s)`;
      else result.failure = `stopped without ended (${result.end_reason})`;
    }
    return result;
  } finally {
    if (context) await context.close().catch(() => {});
    server.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`check.mjs: ${e.message}\n${USAGE}`);
      process.exit(2);
    }
    throw e;
  }
  let result;
  let code;
  try {
    result = await run(opts);
    code = result.ok ? 0 : 1;
  } catch (e) {
    result = {
      player: opts.player, url: opts.url, ok: false, failure: `checker error: ${e.message}`,
      ttff_ms: null, ended: false, duration_s: null, current_time_s: null,
      errors: [{ source: 'checker', fatal: true, message: String(e.stack || e.message).slice(0, 2000) }],
      stalls: 0, switches: [], dropped_frames: null, total_frames: null, cmcd: opts.cmcd,
      cmcd_session_id: opts.cmcd ? opts.sessionId : null,
    };
    code = 3;
  }
  process.stdout.write(JSON.stringify(result) + '\n');
  if (!opts.json && result.requests) process.stderr.write(summarize(result));
  else if (!opts.json) process.stderr.write(`player-check: ${result.failure}\n`);
  process.exitCode = code;
}

main();
