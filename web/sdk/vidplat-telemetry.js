/* vidplat player telemetry SDK: watches an HTMLVideoElement (and, when given, its hls.js instance) and posts
 * the platform's QoE beacons to `POST /api/v1/telemetry` (api/telemetry.py; event types in shared/QOE.md).
 *
 *   <script src="vidplat-telemetry.js"></script>
 *   const telemetry = VidplatTelemetry.start({
 *     endpoint: 'https://api.example.com/api/v1/telemetry', video: videoElement, videoId: 'abc',
 *     sessionId: crypto.randomUUID(), deviceClass: 'desktop', hls: hlsInstance,   // hls is optional
 *     accessToken: () => currentAccessToken,   // optional: a signed-in viewer's token (string or function)
 *   });
 *   telemetry.playRequested();   // right before video.play() (a user's press or autoplay)
 *   video.play();
 *
 * Give the same sessionId to the player's CMCD config (hls.js `cmcd.sessionId`, dash.js `cmcd.sid`) so the
 * CMCD data the API harvests from segment requests joins this session.
 *
 * Identity: the viewer is whoever the access token names (the API refuses a body that names one), so the
 * resume position follows the signed-in profile; without a token the beacons are anonymous, as are the ones
 * sent with `sendBeacon` (which cannot carry an Authorization header).
 *
 * Delivery: events are numbered from 0 per session (`seq`, what the collector and the QoE agents dedupe
 * on) and sent in batches every `flushIntervalMs`, at once on the first frame, an error and the end, and
 * with `navigator.sendBeacon` when the page is hidden. Bodies are `text/plain` JSON so no CORS preflight is
 * needed. A batch the collector did not take (network error, 429, 5xx) stays queued and is sent again, same
 * seqs, so a retry is never counted twice; a 400 is a bug in the caller's data and is dropped with a warning.
 * Written as a dependency-free classic script so any page (and any player) can load it.
 */
(function (root) {
  'use strict';

  var MAX_EVENTS_PER_BATCH = 500;
  var MAX_BATCH_BYTES = 60 * 1024; // the collector's cap is 64 KB

  function renditionOfLevel(level) {
    // The platform's media playlists live at {video}/{rendition}/playlist.m3u8: the directory names it.
    var url = level && (level.url && level.url[0] ? level.url[0] : level.uri || level.url);
    var match = typeof url === 'string' ? /\/([A-Za-z0-9_-]+)\/[^/]*\.m3u8/.exec(url) : null;
    if (match) return match[1];
    return level && level.height ? level.height + 'p' : null;
  }

  function start(options) {
    var video = options.video;
    var endpoint = options.endpoint;
    if (!video || !endpoint || !options.sessionId) throw new Error('VidplatTelemetry.start needs video, endpoint and sessionId');
    var flushIntervalMs = options.flushIntervalMs || 2000;
    var heartbeatMs = options.heartbeatMs || 5000;
    var header = {
      session_id: options.sessionId,
      video_id: options.videoId || null,
      device_class: options.deviceClass || null,
    };
    function authHeaders() {
      var token = typeof options.accessToken === 'function' ? options.accessToken() : options.accessToken;
      return token ? { Authorization: 'Bearer ' + token } : {};
    }
    var seq = 0;
    var queue = [];
    var sending = false;
    var retryAt = 0;
    var requested = false;
    var firstFrame = false;
    var stalled = false;
    var ended = false;
    var paused = false;
    var heartbeat = null;
    var flushTimer = null;
    var stats = { sent: 0, retried: 0, dropped: 0 };

    function emit(type, fields, urgent) {
      var event = { seq: seq++, type: type, ts: Date.now() };
      for (var name in fields || {}) if (fields[name] !== null && fields[name] !== undefined) event[name] = fields[name];
      queue.push(event);
      if (urgent) flush();
    }

    function bodyOf(events) {
      return JSON.stringify(Object.assign({}, header, { events: events }));
    }

    function nextBatch() {
      var batch = queue.slice(0, MAX_EVENTS_PER_BATCH);
      while (batch.length > 1 && bodyOf(batch).length > MAX_BATCH_BYTES) batch = batch.slice(0, Math.ceil(batch.length / 2));
      return batch;
    }

    function flush() {
      if (sending || queue.length === 0 || Date.now() < retryAt) return;
      var batch = nextBatch();
      sending = true;
      fetch(endpoint, { method: 'POST', body: bodyOf(batch), headers: Object.assign({ 'Content-Type': 'text/plain' }, authHeaders()), keepalive: true, credentials: 'omit' })
        .then(function (reply) {
          if (reply.status === 202 || reply.status === 400) {
            queue.splice(0, batch.length);
            if (reply.status === 400) {
              stats.dropped += batch.length;
              reply.text().then(function (text) { console.warn('vidplat telemetry refused a batch:', text); });
            } else stats.sent += batch.length;
          } else {
            stats.retried += 1;
            var wait = Number(reply.headers.get('Retry-After')) || 2;
            retryAt = Date.now() + wait * 1000;
          }
        })
        .catch(function () {
          stats.retried += 1;
          retryAt = Date.now() + 2000;
        })
        .then(function () {
          sending = false;
          if (queue.length && Date.now() >= retryAt) flush();
        });
    }

    function beaconRest() {
      // The page is going away: hand what is left to the browser, which sends it after the page is gone.
      while (queue.length) {
        var batch = nextBatch();
        if (!navigator.sendBeacon || !navigator.sendBeacon(endpoint, new Blob([bodyOf(batch)], { type: 'text/plain' }))) return;
        queue.splice(0, batch.length);
        stats.sent += batch.length;
      }
    }

    function playerSize() {
      var ratio = root.devicePixelRatio || 1;
      return { player_width: Math.round(video.clientWidth * ratio), player_height: Math.round(video.clientHeight * ratio) };
    }

    function startHeartbeat() {
      if (heartbeat === null) {
        heartbeat = setInterval(function () {
          if (!video.paused && !ended) emit('heartbeat', { playhead_s: video.currentTime });
        }, heartbeatMs);
      }
    }

    function stopHeartbeat() {
      if (heartbeat !== null) clearInterval(heartbeat);
      heartbeat = null;
    }

    function onFirstFrame() {
      if (firstFrame || !requested) return;
      firstFrame = true;
      emit('first_frame', { playhead_s: video.currentTime }, true);
      startHeartbeat();
    }

    video.addEventListener('playing', function () {
      if (!firstFrame && typeof video.requestVideoFrameCallback !== 'function') onFirstFrame();
      if (stalled) {
        stalled = false;
        emit('stall_end', { playhead_s: video.currentTime });
      }
    });
    video.addEventListener('waiting', function () {
      if (firstFrame && !stalled && !video.seeking && !ended) {
        stalled = true;
        emit('stall_start', { playhead_s: video.currentTime });
      }
    });
    video.addEventListener('seeking', function () { if (requested) emit('seek_start', { playhead_s: video.currentTime }); });
    video.addEventListener('seeked', function () { if (requested) emit('seek_end', { playhead_s: video.currentTime }); });
    video.addEventListener('pause', function () {
      if (requested && !ended && !video.ended) {
        paused = true;
        emit('pause', { playhead_s: video.currentTime });
      }
    });
    video.addEventListener('play', function () {
      if (paused) {
        paused = false;
        emit('play', { playhead_s: video.currentTime });
      }
    });
    video.addEventListener('ended', function () { api.end(); });
    video.addEventListener('error', function () {
      var error = video.error;
      emit('error', { error_code: error ? 'MEDIA_ERR_' + error.code : 'MEDIA_ERR', fatal: true }, true);
      stopHeartbeat();
    });
    if (typeof ResizeObserver === 'function') new ResizeObserver(function () { emit('player_resize', playerSize()); }).observe(video);

    var hls = options.hls;
    if (hls && root.Hls) {
      hls.on(root.Hls.Events.LEVEL_SWITCHED, function (_event, data) {
        var level = hls.levels[data.level];
        if (!level) return;
        emit('rendition_change', {
          rendition: renditionOfLevel(level),
          bitrate_kbps: level.bitrate ? Math.round(level.bitrate / 1000) : null,
          video_width: level.width || null,
          video_height: level.height || null,
        });
      });
      hls.on(root.Hls.Events.ERROR, function (_event, data) {
        if (data.fatal) stopHeartbeat();
        emit('error', { error_code: String(data.details || data.type || 'hls'), fatal: !!data.fatal }, !!data.fatal);
      });
    }

    document.addEventListener('visibilitychange', function () { if (document.visibilityState === 'hidden') beaconRest(); });
    root.addEventListener('pagehide', beaconRest);
    flushTimer = setInterval(flush, flushIntervalMs);
    emit('player_ready', playerSize());

    var api = {
      /** Call right before video.play(): video startup time runs from here to the first frame. */
      playRequested: function () {
        if (requested) return;
        requested = true;
        emit('play_requested', playerSize(), true);
        if (typeof video.requestVideoFrameCallback === 'function') video.requestVideoFrameCallback(onFirstFrame);
      },
      /** The view is over (called on `ended`; call it yourself when the viewer leaves). */
      end: function () {
        if (ended) return;
        ended = true;
        stopHeartbeat();
        emit('end', { playhead_s: video.currentTime }, true);
      },
      flush: flush,
      pending: function () { return queue.length; },
      stats: function () { return Object.assign({ queued: queue.length, seq: seq }, stats); },
      stop: function () {
        stopHeartbeat();
        clearInterval(flushTimer);
        beaconRest();
      },
    };
    return api;
  }

  root.VidplatTelemetry = { start: start, renditionOfLevel: renditionOfLevel };
})(typeof window !== 'undefined' ? window : this);
