// Delivery tests of the telemetry SDK (vidplat-telemetry.js): routine events such as heartbeats are
// batched, startup / fatal errors / the end go out at once, page hide uses sendBeacon, and seqs stay
// contiguous and in order, each event taken once, through retries and overlapping requests.
//
//   node --test web/sdk/vidplat-telemetry.test.mjs      (Node >= 20; also run by tests/unit/test_web_sdk.py)
//
// The SDK runs in a vm context with a fake clock (timers and Date.now), a fake <video>, and a fake
// collector behind fetch and navigator.sendBeacon that keeps the real one's rules: 202 for a batch of at
// most 500 events and 64 KB, 413 above, and dedupe on (session_id, seq). No browser, no dependencies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import vm from 'node:vm';

const SDK = fs.readFileSync(new URL('./vidplat-telemetry.js', import.meta.url), 'utf8');
const T0 = 1_764_000_000_000;
const MAX_BODY_BYTES = 64 * 1024; // api/telemetry.py
const MAX_EVENTS_PER_BATCH = 500;

/** Let the SDK's promise chains run to the end (the fake fetch answers at once). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

class FakeClock {
  constructor(now) {
    this.now = now;
    this.timers = new Map();
    this.nextId = 1;
  }

  add(fn, ms, every) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.now + Math.max(0, ms || 0), fn, every });
    return id;
  }

  /** Run every timer due within `ms`, in time order (ties in the order they were set), settling between. */
  async advance(ms) {
    const end = this.now + ms;
    for (;;) {
      await settle();
      let next = null;
      for (const [id, timer] of this.timers) if (timer.at <= end && (!next || timer.at < next[1].at)) next = [id, timer];
      if (!next) break;
      const [id, timer] = next;
      this.now = timer.at;
      if (timer.every) timer.at += Math.max(1, timer.every);
      else this.timers.delete(id);
      timer.fn();
    }
    this.now = end;
    await settle();
  }
}

class FakeVideo extends EventTarget {
  constructor() {
    super();
    Object.assign(this, { currentTime: 0, paused: true, ended: false, seeking: false, error: null });
    Object.assign(this, { clientWidth: 640, clientHeight: 360 });
  }

  fire(type) {
    this.dispatchEvent(new Event(type));
  }
}

/**
 * One SDK instance against a fake collector. `replies` scripts the collector's answers to fetch, in order
 * ('network' rejects, 'hold' keeps the request in flight until `release()`); then 202s.
 */
async function startSdk(options = {}, { replies = [], withHls = false } = {}) {
  const clock = new FakeClock(T0);
  const video = new FakeVideo();
  const page = new EventTarget();
  const document = new EventTarget();
  document.visibilityState = 'visible';
  const script = [...replies];
  const posts = []; // every fetch: {at, body, status}
  const beacons = []; // every sendBeacon: {at, body, type}
  const taken = new Map(); // seq -> event: what the collector accepted, deduped on seq
  const warnings = [];
  const held = [];

  function accept(body) {
    const size = Buffer.byteLength(JSON.stringify(body));
    if (size > MAX_BODY_BYTES || body.events.length > MAX_EVENTS_PER_BATCH) return 413;
    for (const event of body.events) if (!taken.has(event.seq)) taken.set(event.seq, event);
    return 202;
  }

  function reply(status, retryAfter) {
    return {
      status,
      headers: { get: (name) => (name === 'Retry-After' && retryAfter !== undefined ? String(retryAfter) : null) },
      text: async () => `{"status": ${status}}`,
    };
  }

  function fetch(url, init) {
    const body = JSON.parse(init.body);
    const post = { at: clock.now - T0, body, status: null, method: init.method, headers: init.headers };
    posts.push(post);
    const step = script.length ? script.shift() : 202;
    if (step === 'network') return Promise.reject(new TypeError('Failed to fetch'));
    if (step === 'hold') {
      return new Promise((resolve) => held.push(() => resolve(reply((post.status = accept(body))))));
    }
    const [status, retryAfter] = Array.isArray(step) ? step : [step];
    post.status = status === 202 ? accept(body) : status;
    return Promise.resolve(reply(post.status, retryAfter));
  }

  function sendBeacon(url, blob) {
    beacons.push({ at: clock.now - T0, blob, type: blob.type });
    return true;
  }

  class FakeDate extends Date {
    static now() {
      return clock.now;
    }
  }

  const hlsHandlers = {};
  const sandbox = {
    document,
    navigator: { sendBeacon },
    fetch,
    Blob,
    TextEncoder,
    Date: FakeDate,
    console: { warn: (...args) => warnings.push(args.join(' ')), log() {}, error() {} },
    setTimeout: (fn, ms) => clock.add(fn, ms, null),
    setInterval: (fn, ms) => clock.add(fn, ms, ms),
    clearTimeout: (id) => clock.timers.delete(id),
    clearInterval: (id) => clock.timers.delete(id),
    addEventListener: page.addEventListener.bind(page),
    devicePixelRatio: 1,
  };
  if (withHls) sandbox.Hls = { Events: { LEVEL_SWITCHED: 'hlsLevelSwitched', ERROR: 'hlsError' } };
  sandbox.window = sandbox;
  vm.createContext(sandbox);
  vm.runInContext(SDK, sandbox, { filename: 'vidplat-telemetry.js' });
  const hls = {
    levels: [{ url: ['https://api.example.com/api/v1/videos/v/720p/playlist.m3u8'], bitrate: 2_800_000, width: 1280, height: 720 }],
    on: (name, fn) => (hlsHandlers[name] = fn),
  };
  const telemetry = sandbox.VidplatTelemetry.start({
    endpoint: 'https://api.example.com/api/v1/telemetry',
    video,
    videoId: 'video-1',
    sessionId: 'session-1',
    deviceClass: 'desktop',
    hls: withHls ? hls : null,
    ...options,
  });
  await settle();

  async function beaconEvents() {
    const out = [];
    for (const beacon of beacons) out.push(...JSON.parse(await beacon.blob.text()).events);
    return out;
  }

  return {
    clock,
    video,
    telemetry,
    posts,
    beacons,
    taken,
    warnings,
    hlsEvent: (name, data) => hlsHandlers[sandbox.Hls.Events[name]]({}, data),
    page: (type) => page.dispatchEvent(new Event(type)),
    hide() {
      document.visibilityState = 'hidden';
      document.dispatchEvent(new Event('visibilitychange'));
    },
    async release() {
      held.shift()();
      await settle();
    },
    /** Start playing: play requested, then the first frame after `startupMs`. */
    async play(startupMs = 1000) {
      telemetry.playRequested();
      await settle();
      await clock.advance(startupMs);
      video.paused = false;
      video.fire('playing');
      await settle();
    },
    beaconEvents,
    /** Every event the collector has, from fetch (202 only) and sendBeacon, deduped on seq, in seq order. */
    async delivered() {
      const all = new Map(taken);
      for (const event of await beaconEvents()) if (!all.has(event.seq)) all.set(event.seq, event);
      return [...all.values()].sort((a, b) => a.seq - b.seq);
    },
  };
}

const types = (post) => post.body.events.map((e) => e.type);
const seqs = (events) => events.map((e) => e.seq);
const range = (n) => Array.from({ length: n }, (_, i) => i);

test('heartbeats wait and go out together, two per beacon by default', async () => {
  const sdk = await startSdk();
  await sdk.play(1000);
  // Startup went out as it happened: player_ready with play_requested at once, then first_frame at once.
  assert.deepEqual(
    sdk.posts.map((p) => [p.at, types(p)]),
    [
      [0, ['player_ready', 'play_requested']],
      [1000, ['first_frame']],
    ],
  );
  // Playback to 40 s: heartbeats every 5 s from the first frame (6, 11, ... 36 s), flushes every 10 s.
  for (let s = 1; s < 40; s++) {
    sdk.video.currentTime = s;
    await sdk.clock.advance(1000);
  }
  const routine = sdk.posts.slice(2);
  assert.deepEqual(
    routine.map((p) => [p.at, types(p)]),
    [
      [10000, ['heartbeat']],
      [20000, ['heartbeat', 'heartbeat']],
      [30000, ['heartbeat', 'heartbeat']],
      [40000, ['heartbeat', 'heartbeat']],
    ],
  );
  assert.deepEqual(
    routine.flatMap((p) => p.body.events.map((e) => e.ts - T0)),
    [6000, 11000, 16000, 21000, 26000, 31000, 36000],
  );
  assert.deepEqual(seqs(await sdk.delivered()), range(10));
  assert.equal(sdk.telemetry.pending(), 0);
  for (const post of sdk.posts) {
    assert.equal(post.method, 'POST');
    assert.equal(post.headers['Content-Type'], 'text/plain'); // no CORS preflight
    assert.deepEqual([post.body.session_id, post.body.video_id, post.body.device_class], ['session-1', 'video-1', 'desktop']);
  }
});

test('a batch goes out as soon as maxQueuedEvents wait, before the interval', async () => {
  const sdk = await startSdk({ heartbeatMs: 1000, flushIntervalMs: 60000, maxQueuedEvents: 4 });
  await sdk.play(500);
  await sdk.clock.advance(9000);
  const routine = sdk.posts.slice(2);
  assert.deepEqual(
    routine.map((p) => [p.at, types(p).length]),
    [
      [4500, 4],
      [8500, 4],
    ],
  );
  assert.equal(sdk.telemetry.pending(), 1); // the 9th heartbeat waits for the next four
});

test('the first frame, a fatal error and the end are sent at once, with what waits before them', async () => {
  const sdk = await startSdk({}, { withHls: true });
  await sdk.play(1200);
  assert.deepEqual(types(sdk.posts.at(-1)), ['first_frame']);
  assert.equal(sdk.posts.at(-1).at, 1200);

  // Routine: a rendition switch and a non-fatal hls.js error wait.
  await sdk.clock.advance(300);
  sdk.hlsEvent('LEVEL_SWITCHED', { level: 0 });
  sdk.hlsEvent('ERROR', { fatal: false, details: 'fragLoadTimeOut' });
  await sdk.clock.advance(1000);
  assert.equal(sdk.posts.length, 2);

  // A fatal error: sent at that moment, after the events that were waiting, in seq order.
  sdk.hlsEvent('ERROR', { fatal: true, details: 'manifestLoadError' });
  await settle();
  const failed = sdk.posts.at(-1);
  assert.equal(failed.at, 2500);
  assert.deepEqual(
    failed.body.events.map((e) => [e.seq, e.type, e.fatal ?? null]),
    [
      [3, 'rendition_change', null],
      [4, 'error', false],
      [5, 'error', true],
    ],
  );
  assert.equal(failed.body.events[0].rendition, '720p');

  // The element's own error and the end are sent at once too.
  await sdk.clock.advance(700);
  sdk.video.error = { code: 3 };
  sdk.video.fire('error');
  await settle();
  assert.deepEqual([sdk.posts.at(-1).at, types(sdk.posts.at(-1))], [3200, ['error']]);
  assert.equal(sdk.posts.at(-1).body.events[0].error_code, 'MEDIA_ERR_3');
  await sdk.clock.advance(100);
  sdk.video.fire('ended');
  await settle();
  assert.deepEqual([sdk.posts.at(-1).at, types(sdk.posts.at(-1))], [3300, ['end']]);
  assert.deepEqual(seqs(await sdk.delivered()), range(8));
});

test('an urgent event during a request in flight follows as soon as that request is answered', async () => {
  const sdk = await startSdk({}, { replies: ['hold'] });
  sdk.telemetry.playRequested();
  await settle();
  sdk.video.paused = false;
  sdk.video.fire('playing'); // first frame while player_ready + play_requested are still in flight
  await settle();
  assert.equal(sdk.posts.length, 1);
  await sdk.release();
  assert.deepEqual(sdk.posts.map(types), [['player_ready', 'play_requested'], ['first_frame']]);
  assert.equal(sdk.posts[1].at, 0);
});

test('failed requests are retried with the same seqs: nothing lost, nothing taken twice, order kept', async () => {
  const sdk = await startSdk({}, { replies: [503, 'network', [429, 3], 202, 500] });
  await sdk.play(1000);
  await sdk.clock.advance(22000);
  assert.deepEqual(
    sdk.posts.map((p) => [p.at, seqs(p.body.events), p.status]),
    [
      [0, [0, 1], 503], // retried after the default 2 s
      [2000, [0, 1, 2], null], // with the first frame that came meanwhile; a network error: 2 s more
      [4000, [0, 1, 2], 429], // Retry-After: 3
      [7000, [0, 1, 2, 3], 202], // and the heartbeat of 6 s
      [20000, [4, 5], 500], // the heartbeats of 11 s and 16 s, at the 20 s flush
      [22000, [4, 5, 6], 202], // the same again, and the heartbeat of 21 s
    ],
  );
  assert.equal(sdk.telemetry.stats().retried, 4);
  assert.deepEqual(seqs(await sdk.delivered()), range(7));
  // Every accepted batch continued exactly where the previous accepted one ended.
  const accepted = sdk.posts.filter((p) => p.status === 202).flatMap((p) => seqs(p.body.events));
  assert.deepEqual(accepted, range(7));
  assert.equal(sdk.telemetry.pending(), 0);
});

test('a refused batch (400) is dropped with a warning, and the session goes on', async () => {
  const sdk = await startSdk({}, { replies: [400] });
  await sdk.play(1000);
  assert.deepEqual(sdk.posts.map((p) => p.status), [400, 202]);
  assert.equal(sdk.warnings.length, 1);
  assert.deepEqual(sdk.telemetry.stats().dropped, 2);
  assert.deepEqual(seqs(await sdk.delivered()), [2]);
});

test('page hide hands the rest to sendBeacon as text/plain; a request still in flight loses nothing', async () => {
  const sdk = await startSdk({}, { replies: [202, 202, 'hold'] });
  await sdk.play(1000);
  await sdk.clock.advance(10000); // the heartbeat at 6 s goes out at 10 s and stays in flight
  assert.deepEqual(seqs(sdk.posts.at(-1).body.events), [3]);
  await sdk.clock.advance(2000); // heartbeat seq 4 waits
  sdk.hide();
  await settle();
  assert.equal(sdk.beacons.length, 1);
  assert.equal(sdk.beacons[0].type, 'text/plain');
  const beacon = JSON.parse(await sdk.beacons[0].blob.text());
  assert.deepEqual([beacon.session_id, beacon.video_id, beacon.device_class], ['session-1', 'video-1', 'desktop']);
  assert.deepEqual(seqs(beacon.events), [3, 4]); // the one in flight too: it may never complete
  assert.equal(sdk.telemetry.pending(), 0);

  // The viewer comes back: a new heartbeat is queued, then the old request is answered. Only what it
  // carried is done with; the new heartbeat still goes out.
  await sdk.clock.advance(5000);
  assert.equal(sdk.telemetry.pending(), 1);
  await sdk.release();
  assert.equal(sdk.telemetry.pending(), 1);
  await sdk.clock.advance(5000);
  sdk.video.fire('ended');
  await settle();
  sdk.page('pagehide'); // nothing left for it
  assert.equal(sdk.beacons.length, 1);
  assert.deepEqual(seqs(await sdk.delivered()), range(8));
  assert.deepEqual(types(sdk.posts.at(-1)).at(-1), 'end');
});

test('pagehide beacons what waits', async () => {
  const sdk = await startSdk();
  await sdk.play(1000);
  await sdk.clock.advance(6000);
  sdk.page('pagehide');
  assert.deepEqual((await sdk.beaconEvents()).map((e) => [e.seq, e.type]), [[3, 'heartbeat']]);
});

test('a long backlog goes out in order in batches within the collector limits (500 events, 64 KB of UTF-8)', async () => {
  // Non-ASCII error codes take 2 bytes per character: counted in characters, these batches would be 413s.
  // A 503 first, so that the backlog builds up behind startup's retry.
  const sdk = await startSdk({ maxQueuedEvents: 5000, heartbeatMs: 60000 }, { replies: [503], withHls: true });
  await sdk.play(1000);
  for (let i = 0; i < 300; i++) sdk.hlsEvent('ERROR', { fatal: false, details: `${i}`.padEnd(400, 'é') });
  for (let i = 0; i < 700; i++) sdk.video.fire('seeking');
  await sdk.clock.advance(9500);
  const statuses = sdk.posts.map((p) => p.status);
  assert.ok(!statuses.includes(413), `statuses ${statuses}`);
  assert.ok(sdk.posts.length >= 4, `${sdk.posts.length} posts`);
  assert.deepEqual(seqs(await sdk.delivered()), range(1003));
  const accepted = sdk.posts.filter((p) => p.status === 202).flatMap((p) => seqs(p.body.events));
  assert.deepEqual(accepted, range(1003));
});
