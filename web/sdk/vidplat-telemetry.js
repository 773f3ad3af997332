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
 * Delivery: events are numbered from 0 per session (`seq`, contiguous; what the collector and the QoE agents
 * dedupe on) and queued. Routine events (heartbeats, stalls, seeks, rendition and size changes, pauses,
 * non-fatal errors) go out together: every `flushIntervalMs` (default 10 s, so a beacon carries two 5 s
 * heartbeats; the QoE windows wait a minute for late input) or as soon as `maxQueuedEvents` (default 50)
 * wait. `play_requested`, `first_frame`, a fatal error and `end` are sent at once, together with whatever
 * waits before them, so startup and failures are never held back (after a failed request they wait for its
 * retry, which carries them); when the page is hidden or unloaded the rest goes with `navigator.sendBeacon`
 * (`text/plain`, no backoff: the page is leaving). One batch is in flight at a time, at most 500 events and
 * 60 KB of UTF-8 (the collector takes 64 KB), in seq order. Bodies are `text/plain` JSON so no CORS
 * preflight is needed. A batch the collector did not take (network error, 401, 429, 5xx) stays queued and is
 * sent again with the same seqs after the Retry-After (else 2 s): the collector dedupes on (session_id, seq),
 * so a retry is never counted twice, and events leave the queue only by seq once taken, so nothing is lost
 * when a beacon overlaps a request still in flight. A 400 or 413 is a bug in the events themselves: the
 * batch is dropped with a warning, as sending it again cannot succeed.
 * Written as a dependency-free classic script so any page (and any player) can load it.
 */
(function (root) {
  'use strict';

  var MAX_EVENTS_PER_BATCH = 500;
  var MAX_BATCH_BYTES = 60 * 1024; // the collector's cap is 64 KB
  var DEFAULT_RETRY_S = 2;
  var encoder = typeof TextEncoder === 'function' ? new TextEncoder() : null;

  function utf8Length(text) {
    // The collector's cap counts bytes: error codes or ids outside ASCII take 2-4 bytes per character.
    return encoder ? encoder.encode(text).length : text.length * 3;
  }

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
    var flushIntervalMs = options.flushIntervalMs || 10000;
    var maxQueuedEvents = options.maxQueuedEvents || 50;
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
    var queue = []; // in seq order; an event leaves only once the collector took it (or refused it for good)
    var dueSeq = -1; // events up to this seq are to be sent now, the later ones wait for the next round
    var sending = false;
    var retryAt = 0;
    var retryTimer = null;
    var requested = false;
    var firstFrame = false;
    var stalled = false;
    var ended = false;
    var paused = false;
    var heartbeat = null;
    var flushTimer = null;
    var stats = { sent: 0, retried: 0, dropped: 0, batches: 0 };

    function emit(type, fields, urgent) {
      var event = { seq: seq++, type: type, ts: Date.now() };
      for (var name in fields || {}) if (fields[name] !== null && fields[name] !== undefined) event[name] = fields[name];
      queue.push(event);
      if (urgent || queue.length >= maxQueuedEvents) {
        dueSeq = event.seq;
        send();
      }
    }

    function bodyOf(events) {
      return JSON.stringify(Object.assign({}, header, { events: events }));
    }

    function nextBatch() {
      var batch = queue.slice(0, MAX_EVENTS_PER_BATCH);
      while (batch.length > 1 && utf8Length(bodyOf(batch)) > MAX_BATCH_BYTES) batch = batch.slice(0, Math.ceil(batch.length / 2));
      return batch;
    }

    function removeThrough(lastSeq) {
      // By seq, not by count: sendBeacon may have taken these events (and later ones may have been queued)
      // while a request was in flight.
      var removed = 0;
      while (queue.length && queue[0].seq <= lastSeq) {
        queue.shift();
        removed += 1;
      }
      return removed;
    }

    function flush() {
      if (queue.length) dueSeq = queue[queue.length - 1].seq;
      send();
    }

    function send() {
      if (sending || queue.length === 0 || queue[0].seq > dueSeq || Date.now() < retryAt) return;
      var batch = nextBatch();
      var lastSeq = batch[batch.length - 1].seq;
      sending = true;
      fetch(endpoint, { method: 'POST', body: bodyOf(batch), headers: Object.assign({ 'Content-Type': 'text/plain' }, authHeaders()), keepalive: true, credentials: 'omit' })
        .then(function (reply) {
          if (reply.status === 202) {
            stats.sent += removeThrough(lastSeq);
            stats.batches += 1;
          } else if (reply.status === 400 || reply.status === 413) {
            stats.dropped += removeThrough(lastSeq);
            reply.text().then(function (text) { console.warn('vidplat telemetry refused a batch:', text); }, function () {});
          } else {
            backOff(Number(reply.headers.get('Retry-After')) || DEFAULT_RETRY_S);
          }
        })
        .catch(function () {
          backOff(DEFAULT_RETRY_S);
        })
        .then(function () {
          sending = false;
          send(); // the rest of what is due: events queued meanwhile, or what did not fit in this batch
        });
    }

    function backOff(waitS) {
      // The same events are sent again (same seqs) once the wait is over, with anything that came due since.
      stats.retried += 1;
      retryAt = Date.now() + waitS * 1000;
      if (retryTimer !== null) clearTimeout(retryTimer);
      retryTimer = setTimeout(function () {
        retryTimer = null;
        retryAt = 0; // a timer may fire a little before Date.now() reaches retryAt
        send();
      }, waitS * 1000);
    }

    function beaconRest() {
      // The page is going away: hand what is left to the browser, which sends it after the page is gone. A
      // batch still in flight is included: if that request never completes these are its only copy, and if
      // it does the collector dedupes the second one.
      while (queue.length) {
        var batch = nextBatch();
        if (!navigator.sendBeacon || !navigator.sendBeacon(endpoint, new Blob([bodyOf(batch)], { type: 'text/plain' }))) return;
        stats.sent += removeThrough(batch[batch.length - 1].seq);
        stats.batches += 1;
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
        if (retryTimer !== null) clearTimeout(retryTimer);
        beaconRest();
      },
    };
    return api;
  }

  root.VidplatTelemetry = { start: start, renditionOfLevel: renditionOfLevel };
})(typeof window !== 'undefined' ? window : this);
