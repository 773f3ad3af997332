/* Player-check page harness. Runs inside headless Chromium, loaded by the page
 * that check.mjs serves, after the player library (hls.js / dash.js /
 * shaka-player) has been loaded as a classic <script> from the same local
 * server. Configuration comes from the page's query string; results are read
 * by check.mjs through window.__playerCheck.snapshot().
 *
 * Timing: t0 is taken immediately before the single video.play() call, which
 * is made right after the player has been handed the URL (so TTFF includes the
 * manifest + init + first segment fetches, as a user pressing play would see
 * it). The first frame is detected with requestVideoFrameCallback when
 * available, else the first `playing` event / `timeupdate` with
 * currentTime > 0.
 */
(function () {
  'use strict';

  const q = new URLSearchParams(location.search);
  const cfg = {
    player: q.get('player'),
    url: q.get('url'),
    cmcd: q.get('cmcd') === '1',
    sessionId: q.get('sid') || null,
    contentId: q.get('cid') || null,
    collector: q.get('collector') || null,
    telemetry: q.get('telemetry') || null, // our SDK's beacon endpoint (web/sdk/vidplat-telemetry.js)
    videoId: q.get('vid') || null,
    rate: Number(q.get('rate') || '1') || 1,
    debug: q.get('debug') === '1', // PLAYER_CHECK_DEBUG=<file>: verbose player logs
  };

  const video = document.getElementById('video');
  const perfNow = () => performance.now();
  let t0 = null; // performance.now() at the play() call
  const rel = () => (t0 === null ? null : Math.round(perfNow() - t0));

  const state = {
    player: cfg.player,
    lib_version: null,
    phase: 'init',
    done: false,
    end_reason: null,
    ttff_ms: null,
    ttff_source: null,
    timeline: {},
    ended: false,
    ended_via: null,
    errors: [],
    stalls: [],
    switches: [],
    rendition: null,
    initial_rendition: null,
    play_rejections: [],
    events_seen: {},
    rvfc: typeof video.requestVideoFrameCallback === 'function',
  };

  function safe(v, depth) {
    // JSON-safe, bounded copy of arbitrary player error payloads.
    depth = depth || 0;
    if (v === null || v === undefined) return v === undefined ? null : v;
    const t = typeof v;
    if (t === 'number') return Number.isFinite(v) ? v : String(v);
    if (t === 'string') return v.length > 500 ? v.slice(0, 500) + '…' : v;
    if (t === 'boolean') return v;
    if (t === 'function' || t === 'symbol' || t === 'bigint') return undefined;
    if (v instanceof Error) return { name: v.name, message: safe(v.message) };
    if (depth >= 2) return undefined;
    if (Array.isArray(v)) return v.slice(0, 10).map((x) => safe(x, depth + 1));
    if (typeof ArrayBuffer !== 'undefined' && (v instanceof ArrayBuffer || ArrayBuffer.isView(v))) return undefined;
    if (typeof Node !== 'undefined' && v instanceof Node) return undefined;
    if (typeof XMLHttpRequest !== 'undefined' && v instanceof XMLHttpRequest) {
      return { status: v.status, url: v.responseURL };
    }
    const out = {};
    let n = 0;
    for (const k of Object.keys(v)) {
      if (n++ > 25) break;
      const s = safe(v[k], depth + 1);
      if (s !== undefined) out[k] = s;
    }
    return out;
  }

  function addError(source, fatal, info) {
    const e = Object.assign({ source: source, fatal: !!fatal, at_ms: rel(), media_time_s: round3(video.currentTime) }, info);
    state.errors.push(e);
    if (state.errors.length > 200) state.errors.splice(100, state.errors.length - 200);
    if (fatal) finish('fatal-error');
  }

  function round3(x) {
    return Number.isFinite(x) ? Math.round(x * 1000) / 1000 : null;
  }

  function finish(reason) {
    if (state.done) return;
    state.done = true;
    state.end_reason = reason;
    state.phase = 'done';
  }

  function noteFirstFrame(source) {
    if (state.ttff_ms !== null || t0 === null) return;
    state.ttff_ms = Math.round((perfNow() - t0) * 10) / 10;
    state.ttff_source = source;
    state.timeline.first_frame_ms = Math.round(state.ttff_ms);
  }

  // ---- video element events -------------------------------------------
  let playingSeen = false;
  let stallStart = null;
  const count = (name) => (state.events_seen[name] = (state.events_seen[name] || 0) + 1);

  ['loadstart', 'loadedmetadata', 'loadeddata', 'canplay', 'canplaythrough', 'playing', 'waiting', 'ended', 'error', 'seeking', 'seeked', 'pause', 'emptied'].forEach((name) => {
    video.addEventListener(name, () => {
      count(name);
      if (t0 !== null && state.timeline[name + '_ms'] === undefined) state.timeline[name + '_ms'] = rel();
    });
  });

  video.addEventListener('playing', () => {
    if (!playingSeen) {
      playingSeen = true;
      state.phase = 'playing';
      if (!state.rvfc) noteFirstFrame('playing');
    }
    if (stallStart !== null) {
      const s = state.stalls[state.stalls.length - 1];
      s.duration_ms = Math.round(perfNow() - stallStart);
      stallStart = null;
    }
    // Some players reset playbackRate on (re)start; enforce the requested rate.
    if (cfg.rate !== 1 && video.playbackRate !== cfg.rate) video.playbackRate = cfg.rate;
  });

  video.addEventListener('timeupdate', () => {
    if (!state.rvfc && video.currentTime > 0) noteFirstFrame('timeupdate');
  });

  video.addEventListener('waiting', () => {
    if (playingSeen && !video.ended && stallStart === null && !video.seeking) {
      stallStart = perfNow();
      state.stalls.push({ at_ms: rel(), media_time_s: round3(video.currentTime), duration_ms: null });
    }
  });

  function noteEnded(via) {
    if (state.ended) return;
    state.ended = true;
    state.ended_via = via;
    state.timeline.ended_ms = rel();
    finish('ended');
  }
  video.addEventListener('ended', () => noteEnded('video'));

  video.addEventListener('error', () => {
    const me = video.error;
    addError('video', true, { code: me ? me.code : null, message: me ? me.message : 'media element error' });
  });

  window.addEventListener('error', (ev) => {
    addError('page', false, { message: String(ev.message || ev.error), filename: ev.filename || null, line: ev.lineno || null });
  });
  window.addEventListener('unhandledrejection', (ev) => {
    const r = ev.reason;
    addError('page', false, { message: 'unhandled rejection: ' + (r && r.message ? r.message : String(r)) });
  });

  if (state.rvfc) {
    video.requestVideoFrameCallback((now, meta) => {
      // `now` is the rAF timestamp the frame was composited for; use the
      // current clock for consistency with t0 (they differ by < 1 frame).
      noteFirstFrame('requestVideoFrameCallback');
      state.first_frame_media_time_s = round3(meta && meta.mediaTime);
    });
  }

  // Our telemetry SDK, when asked for: same session id as CMCD, so harvested requests join the session.
  let telemetry = null;
  function startTelemetry(hls) {
    if (!cfg.telemetry) return;
    if (!window.VidplatTelemetry) throw new Error('the telemetry SDK did not load');
    telemetry = window.VidplatTelemetry.start({
      endpoint: cfg.telemetry, video: video, videoId: cfg.videoId, sessionId: cfg.sessionId,
      deviceClass: 'desktop', hls: hls || null,
    });
    window.__telemetry = telemetry;
  }

  function startPlayback() {
    if (telemetry) telemetry.playRequested();
    t0 = perfNow();
    state.timeline.play_called_ms = 0;
    state.phase = 'starting';
    if (cfg.rate !== 1) {
      video.defaultPlaybackRate = cfg.rate;
      video.playbackRate = cfg.rate;
    }
    const p = video.play();
    if (p && p.catch) {
      p.catch((err) => {
        state.play_rejections.push({ name: err && err.name, message: err && err.message, at_ms: rel() });
        // AbortError: the player replaced the source after play(); the
        // `autoplay` attribute (and the retry below) still starts playback.
        if (err && err.name === 'NotAllowedError') addError('play', true, { message: err.message });
        else video.addEventListener('canplay', () => video.paused && !state.done && video.play().catch(() => {}), { once: true });
      });
    }
  }

  function renditionFromLevel(l, idx) {
    if (!l) return { index: idx };
    return { index: idx, id: l.id ?? null, bitrate: l.bitrate ?? null, width: l.width ?? null, height: l.height ?? null, codecs: (l.attrs && l.attrs.CODECS) || l.codecSet || null };
  }

  function noteRendition(type, r) {
    r = Object.assign({ type: type }, r);
    if (type === 'video' || type === 'variant') {
      if (state.initial_rendition === null) {
        state.initial_rendition = r;
      } else if (!state.rendition || JSON.stringify(state.rendition) !== JSON.stringify(r)) {
        state.switches.push({ at_ms: rel(), media_time_s: round3(video.currentTime), from: state.rendition, to: r });
      }
      state.rendition = r;
    } else {
      state.other_renditions = state.other_renditions || {};
      state.other_renditions[type] = r;
    }
  }

  // ---- players ------------------------------------------------------------
  // CMCD v2 event mode (only with --cmcd-collector): play-state changes,
  // errors, bitrate changes and a 10 s time interval, one report per POST.
  const collectorEvents = ['ps', 'e', 'bc', 't'];
  // dash.js filters event reports down to these keys (an empty list would
  // drop even sid/cid); hls.js and shaka send their full set by default.
  const collectorKeys = ['sid', 'cid', 'v', 'e', 'ts', 'sn', 'sta', 'sf', 'st', 'br', 'bl', 'bs', 'mtp', 'pr', 'pt', 'tb', 'd', 'ot', 'su'];

  function setupHls() {
    const Hls = window.Hls;
    if (!Hls) throw new Error('hls.js did not load');
    state.lib_version = Hls.version;
    if (!Hls.isSupported()) throw new Error('hls.js: MSE not supported in this browser');
    const config = { debug: cfg.debug, enableWorker: true, autoStartLoad: true };
    if (cfg.cmcd) {
      config.cmcd = { sessionId: cfg.sessionId, contentId: cfg.contentId, useHeaders: false };
      if (cfg.collector) {
        config.cmcd.eventTargets = [{ url: cfg.collector, events: collectorEvents, interval: 10, batchSize: 1 }];
      }
    }
    const hls = new Hls(config);
    window.__hls = hls;
    startTelemetry(hls);
    hls.on(Hls.Events.ERROR, (_ev, data) => {
      addError('hls.js', !!data.fatal, {
        type: data.type || null,
        details: data.details || null,
        reason: data.reason || null,
        url: (data.frag && data.frag.url) || (data.context && data.context.url) || data.url || null,
        response_code: data.response ? data.response.code : null,
        message: data.error ? String(data.error.message || data.error) : (data.err ? String(data.err.message || data.err) : null),
      });
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_ev, data) => {
      noteRendition('video', renditionFromLevel(hls.levels[data.level], data.level));
    });
    hls.on(Hls.Events.MANIFEST_PARSED, (_ev, data) => {
      state.timeline.manifest_parsed_ms = rel();
      state.renditions_available = (data.levels || []).length;
    });
    hls.on(Hls.Events.MEDIA_ATTACHED, () => {
      hls.loadSource(cfg.url);
      startPlayback();
    });
    hls.attachMedia(video);
  }

  function dashRep(r) {
    if (!r) return null;
    return { id: r.id ?? null, bitrate: r.bandwidth ?? r.bitrate ?? null, width: r.width ?? null, height: r.height ?? null, codecs: r.codecs ?? null };
  }

  // dash.js `error` events carry no fatal flag; these codes leave it unable
  // to continue (manifest load/parse, no usable streams, MSE/codec not
  // supported, init segment download), so the check stops on them at once.
  // Any other dash.js error still fails the check (see --error-grace).
  const DASH_FATAL_CODES = [10, 11, 23, 25, 28, 31, 32, 34, 35];

  function dashErrorData(d) {
    if (!d || typeof d !== 'object') return {};
    const req = d.request || {};
    const resp = d.response || {};
    return { url: req.url || resp.url || null, request_type: req.type || null, media_type: req.mediaType || null, response_code: resp.status ?? null };
  }

  function setupDash() {
    const dashjs = window.dashjs;
    if (!dashjs) throw new Error('dash.js did not load');
    const player = dashjs.MediaPlayer().create();
    window.__dash = player;
    state.lib_version = typeof player.getVersion === 'function' ? player.getVersion() : null;
    const settings = { debug: { logLevel: cfg.debug ? 5 /* DEBUG */ : 2 /* WARNING */ }, streaming: {} };
    if (cfg.cmcd) {
      settings.streaming.cmcd = { enabled: true, sid: cfg.sessionId, cid: cfg.contentId, mode: 'query' };
      if (cfg.collector) {
        // dash.js only reports to event targets with CMCD version 2.
        settings.streaming.cmcd.version = 2;
        settings.streaming.cmcd.eventTargets = [{ enabled: true, url: cfg.collector, events: collectorEvents, interval: 10, batchSize: 1, enabledKeys: collectorKeys }];
      }
    }
    player.updateSettings(settings);
    const E = dashjs.MediaPlayer.events;
    player.on(E.ERROR, (e) => {
      const err = e && e.error;
      const code = err && err.code !== undefined ? err.code : null;
      addError('dash.js', DASH_FATAL_CODES.indexOf(code) >= 0, { event: 'error', code: err && err.code !== undefined ? err.code : null, message: err ? String(err.message || err) : null, ...dashErrorData(err && err.data) });
    });
    player.on(E.PLAYBACK_ERROR, (e) => {
      const err = e && e.error;
      addError('dash.js', true, { event: 'playbackError', code: err && err.code !== undefined ? err.code : null, message: err ? String(err.message || err) : null });
    });
    player.on(E.QUALITY_CHANGE_RENDERED, (e) => {
      const type = e.mediaType;
      const r = dashRep(e.newRepresentation) || { index: e.newQuality ?? null };
      noteRendition(type, r);
    });
    // dash.js watches the playhead itself and, when it reaches the end of the
    // last period before the element fires `ended` (seen on a loaded 2-core
    // machine at 4x), emits PLAYBACK_ENDED, seeks to the end and pauses, and
    // the element then never fires `ended`. That is dash.js's own end of
    // playback: count it, with ended_via = 'dash.js'.
    player.on(E.PLAYBACK_ENDED, (e) => {
      if (e && e.isLast === false) return;
      noteEnded('dash.js');
    });
    player.on(E.STREAM_INITIALIZED, () => {
      state.timeline.stream_initialized_ms = rel();
      try {
        const reps = typeof player.getRepresentationsByType === 'function' ? player.getRepresentationsByType('video') : null;
        state.renditions_available = reps ? reps.length : null;
        const cur = typeof player.getCurrentRepresentationForType === 'function' ? player.getCurrentRepresentationForType('video') : null;
        if (cur && state.initial_rendition === null) noteRendition('video', dashRep(cur));
      } catch (_) { /* informational only */ }
    });
    player.initialize(video, cfg.url, false);
    startPlayback();
  }

  function shakaTrack(t) {
    if (!t) return null;
    return { id: t.id ?? null, bitrate: t.bandwidth ?? null, width: t.width ?? null, height: t.height ?? null, codecs: t.codecs ?? null };
  }

  function setupShaka() {
    const shaka = window.shaka;
    if (!shaka) throw new Error('shaka-player did not load');
    shaka.polyfill.installAll();
    state.lib_version = shaka.Player.version;
    if (!shaka.Player.isBrowserSupported()) throw new Error('shaka-player: browser not supported');
    const player = new shaka.Player();
    window.__shaka = player;
    if (cfg.cmcd) {
      const cmcd = { enabled: true, sessionId: cfg.sessionId, contentId: cfg.contentId, useHeaders: false };
      if (cfg.collector) {
        cmcd.eventTargets = [{ enabled: true, url: cfg.collector, events: collectorEvents, interval: 10, batchSize: 1, mode: 'event', useHeaders: false, includeKeys: [] }];
      }
      player.configure({ cmcd: cmcd });
    }
    player.addEventListener('error', (ev) => {
      const d = ev.detail || {};
      addError('shaka', d.severity === 2 /* CRITICAL */, { code: d.code ?? null, category: d.category ?? null, severity: d.severity ?? null, message: d.message || null, data: safe(d.data) });
    });
    const onTrack = () => {
      const active = player.getVariantTracks ? player.getVariantTracks().find((t) => t.active) : null;
      if (active) noteRendition('variant', shakaTrack(active));
    };
    player.addEventListener('adaptation', onTrack);
    player.addEventListener('variantchanged', onTrack);
    player.attach(video).then(() => {
      const loading = player.load(cfg.url);
      startPlayback();
      return loading;
    }).then(() => {
      state.timeline.loaded_ms = rel();
      onTrack();
      state.renditions_available = player.getVariantTracks().length;
    }).catch((err) => {
      addError('shaka', true, { code: err && err.code !== undefined ? err.code : null, category: err && err.category, message: err ? String(err.message || err) : null, during: 'load' });
    });
  }

  window.__playerCheck = {
    state: state,
    snapshot: function () {
      const q = typeof video.getVideoPlaybackQuality === 'function' ? video.getVideoPlaybackQuality() : null;
      const buffered = [];
      for (let i = 0; i < video.buffered.length; i++) buffered.push([round3(video.buffered.start(i)), round3(video.buffered.end(i))]);
      return Object.assign({}, state, {
        telemetry: telemetry ? telemetry.stats() : null,
        elapsed_ms: rel(),
        duration_s: Number.isFinite(video.duration) ? round3(video.duration) : null,
        live: video.duration === Infinity,
        current_time_s: round3(video.currentTime),
        paused: video.paused,
        ready_state: video.readyState,
        playback_rate: video.playbackRate,
        video_width: video.videoWidth,
        video_height: video.videoHeight,
        buffered: buffered,
        dropped_frames: q ? q.droppedVideoFrames : null,
        total_frames: q ? q.totalVideoFrames : null,
        decoded_frames: typeof video.webkitDecodedFrameCount === 'number' ? video.webkitDecodedFrameCount : null,
        audio_decoded_bytes: typeof video.webkitAudioDecodedByteCount === 'number' ? video.webkitAudioDecodedByteCount : null,
      });
    },
  };

  try {
    if (!cfg.url) throw new Error('no url given');
    if (cfg.player === 'hls') setupHls();
    else if (cfg.player === 'dash') setupDash();
    else if (cfg.player === 'shaka') setupShaka();
    else throw new Error('unknown player ' + cfg.player);
  } catch (err) {
    addError('harness', true, { message: String(err && err.message ? err.message : err) });
  }
})();
