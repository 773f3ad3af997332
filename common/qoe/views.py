"""Per-view QoE state machine: PlaybackEvents of one session in, one ViewMetrics per view out.

A *view* is one playback attempt of one video in one session (shared/QOE.md). It starts with a
PLAY_REQUESTED when no view is open, when the open view is for another video, or after the open view ended;
a further PLAY_REQUESTED for the video already in view is a play command inside that view (treated as PLAY),
so a player that reports "play requested" on every press of the play button does not split a view.
A view closes on END (reason ``end``), on a fatal ERROR (``fatal_error``: playback cannot continue, so the
attempt is over), when the next view starts (``new_view``), or on inactivity: ``expire(state, now)`` is true
once ``DEFAULT_INACTIVITY_S`` = 30 s of *event time* (client clock) passed without any event of the session,
and ``close(state, "inactive")`` then closes it.

State: one plain JSON-serialisable dict per session (a Faust table value with a RocksDB store and a
changelog), created by ``new_session`` and updated by ``apply(state, event) -> state``. ``apply`` mutates the
dict it is given and returns it (the caller stores it back in the table); it never keeps references to the
event. Outputs queue in the state and are taken with ``drain(state)``: the ViewMetrics of views that closed,
and one ``Activity`` record per accepted event (for concurrent viewers, bytes and views started per window).

Out-of-order and duplicated delivery: events are put back in ``seq`` order with a reorder buffer before the
state machine sees them, so its result does not depend on delivery order. Sequence numbers of a session
are contiguous from 0 (our SDK's counter; CMCD v2 ``sn``, which "MUST be reset to zero on the start of a
new session-id"). An event is released once every lower seq was released; a duplicate seq is counted and
dropped. A missing seq is waited for until the oldest buffered event is ``reorder_window_s`` (default 10 s)
older than the session's newest event (``apply``) or than the caller's clock (``tick``), until more than
``MAX_BUFFERED_EVENTS`` (5000) wait (counted as ``overflow``), or until ``close``; then the gap is skipped
(counted) and an event that arrives later for it is counted as late and dropped. Nothing else grows with the
length of a view: the state machine keeps running totals, not the event list, so a view of hours is as
small as one of seconds. The result is exact whenever the delivery delay stays below
the reorder window. Each source (SDK, CMCD_V2) numbers its own events, so each has its own buffer;
CMCD_V1 requests carry a collector-assigned number that need not be contiguous and only add bytes,
buffer-starvation marks and activity (nothing that depends on order: they never move a view's clock), so they
skip the buffer and are only de-duplicated (against the last ``V1_DEDUPE_MEMORY`` numbers).

Counters (``state["counters"]``): received, accepted, duplicates, late, skipped (missing seqs given up on),
forced_releases, overflow, orphans (state events outside any view, e.g. an END after a fatal error).

The state machine walks the ordered events and splits the time between consecutive events of a view by
the state the player was in (the interval before an event belongs to the state set by the event before it):

* paused (PAUSE .. PLAY): excluded from watch time; everything else from play requested to the end of the
  view is watch time (startup, rebuffering and seeking included).
* startup (play requested .. first FIRST_FRAME): video startup time = FIRST_FRAME - PLAY_REQUESTED; a stall
  during startup is startup, not rebuffering.
* rebuffering: a STALL_START after the first frame, unless it is seek latency: it starts inside a seek
  (SEEK_START .. SEEK_END), or after a SEEK_END before playback resumed. "Playback resumed" is the first
  HEARTBEAT, PLAY, PAUSE, STALL_END, FIRST_FRAME or CMCD v2 "playing" state after the SEEK_END: the player
  reports no "playhead moved" event, so a heartbeat (sent every few seconds while the playhead moves) is the
  evidence. A rebuffer ends at STALL_END, at PAUSE (a stall the viewer paused through is paused time), at a
  SEEK_START (the rest of that stall is seek latency) or at the end of the view (Mux counts an exit while
  rebuffering as rebuffering). Rebuffer count = number of rebuffer STALL_STARTs; a STALL_START while already
  stalled or while paused is ignored.
* seeking (SEEK_START .. SEEK_END, and a seek stall until its STALL_END): seek latency, watch time only.
* CMCD v2 reports carry the player state: an event whose ``extras["sta"]`` is ``p`` (playing) also ends any
  startup, stall, seek or pause (see ``common.qoe.cmcd``); a CMCD_REQUEST with ``extras["bs"] ==
  "true"`` (buffer starvation since the previous request) counts a ``starvation_marks``, kept apart from the
  rebuffer count since its duration is unknown and a player with our SDK would be counted twice.
* playing: everything else after the first frame; the played time carries the rendition, bitrate and
  upscale weights.

The playing rendition (name, bitrate, video size) is the latest non-null ``rendition`` / ``bitrate_kbps`` /
``video_width`` / ``video_height`` on any event of the view except CMCD_REQUEST (whose ``br`` describes a
download, which may be a prefetch or audio). The player size is the latest non-null ``player_width`` /
``player_height`` of the session (it outlives views). Time before the first known rendition is attributed to
the view's initial rendition (the first one known), or to ``"unknown"`` when none was ever reported.

Metric definitions (ViewMetrics fields):

* ``watch_time_ms``: end - play requested - paused time; the end is the END / fatal ERROR time, the next
  view's PLAY_REQUESTED time for ``new_view``, and the view's last event for ``inactive`` (nothing is known
  after it).
* ``rebuffer_percentage`` = rebuffer / watch time x 100; ``rebuffer_frequency`` = rebuffer count per watch
  minute.
* ``playback_failure``: the view ended with a fatal error (startup failures included, as QOE.md words it);
  ``video_startup_failure``: the fatal error came before the first frame; ``exit_before_video_start``: play
  requested, no first frame, no fatal error.
* ``average_bitrate_kbps`` = sum(bitrate x played time) / sum(played time) over played time whose bitrate
  is known.
* upscale: at each played instant the video (vw x vh) is scaled to fit the player (pw x ph) keeping its
  aspect ratio, so the first dimension to fit is the one with the smaller factor:
  upscale = max(0, min(pw / vw, ph / vh) - 1) = (player - video) / video on that dimension.
  ``upscale_percentage`` is its played-time-weighted mean x 100, ``max_upscale_percentage`` its peak x 100.
* scores (Mux): startup time score = 8 / (8 + VST s) x 100; smoothness = mean(100 / sqrt(1 + (count / 2)^2),
  100 x e^(-10 x rebuffer fraction)); video quality = 100 x e^(-0.33 x (0.15 x max + 0.85 x mean upscale))
  with upscale as a fraction (50 % upscaling throughout gives 85, as Mux's example); playback success = 0
  for a failure, 50 for an EBVS, 100 otherwise. Views that never started get no startup, smoothness or
  quality score (as Mux), and no quality score without player and video sizes.
* ``player_startup_time_ms``: PLAYER_READY time - player initialisation, when the PLAYER_READY carries
  ``extras["player_init_ts"]`` (epoch ms) or ``extras["player_startup_ms"]``; a PLAYER_READY before the
  first PLAY_REQUESTED belongs to the next view that starts.
* ``bytes_served``: sum of ``bytes`` over the view's events; ``watched_position_s``: last playhead (resume).
* ``close_ts_ms``: the event time the view is attributed to by the windows (QoE metrics by view end, as
  Mux): the END / fatal ERROR / next PLAY_REQUESTED time, or last event + inactivity timeout for ``inactive``
  (the moment it expired), which keeps it inside the windows' allowed lateness when the agent sweeps expiry
  at least once per lateness period.

All times are integer milliseconds from ``client_ts``, so sums are exact; an interval whose client clock
went backwards counts as zero. Clock skew between clients does not change durations (differences of one
client's clock); the collector is the place to clamp absurd client_ts values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Final, TypedDict

EVENT_TYPES: Final[tuple[str, ...]] = (
    "PLAY_REQUESTED",
    "PLAYER_READY",
    "FIRST_FRAME",
    "STALL_START",
    "STALL_END",
    "SEEK_START",
    "SEEK_END",
    "RENDITION_CHANGE",
    "PLAYER_RESIZE",
    "PAUSE",
    "PLAY",
    "ERROR",
    "HEARTBEAT",
    "END",
    "CMCD_REQUEST",
    "CMCD_EVENT",
    "UNKNOWN",
)
SOURCES: Final[tuple[str, ...]] = ("SDK", "CMCD_V1", "CMCD_V2")

DEFAULT_INACTIVITY_S: Final = 30.0
DEFAULT_REORDER_WINDOW_S: Final = 10.0
MAX_BUFFERED_EVENTS: Final = 5000
FIRST_SEQ: Final = 0
V1_DEDUPE_MEMORY: Final = 1024
# Skipped sequence numbers remembered to tell a late event from a duplicate; beyond this a late one is
# counted as a duplicate (both are dropped, only the counter differs).
SKIPPED_MEMORY: Final = 1000
UNKNOWN: Final = "unknown"
STATE_VERSION: Final = 1

# Events after which a seek is over from the viewer's point of view ("playback resumed").
_RESUME_TYPES: Final = frozenset({"HEARTBEAT", "PLAY", "PAUSE", "STALL_END", "FIRST_FRAME"})
# Events that only describe the player, legitimately sent outside a view (before the first play request,
# between views); other event types outside a view are counted as orphans.
_CONTEXT_TYPES: Final = frozenset(
    {"PLAYER_READY", "PLAYER_RESIZE", "HEARTBEAT", "CMCD_REQUEST", "CMCD_EVENT", "UNKNOWN", "RENDITION_CHANGE"}
)
# Schema fields copied into the buffered copy of an event (None values are left out to keep states small).
_EVENT_FIELDS: Final = (
    "video_id",
    "user_id",
    "profile_id",
    "device_class",
    "rendition",
    "bitrate_kbps",
    "video_width",
    "video_height",
    "player_width",
    "player_height",
    "playhead_s",
    "error_code",
    "bytes",
)
# extras keys the state machine reads; the others are not kept in the state.
_USED_EXTRAS: Final = ("player_init_ts", "player_startup_ms", "sta", "bs")

SessionState = dict[str, Any]
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def to_ms(value: datetime | int) -> int:
    """Epoch milliseconds of a tz-aware datetime (exact integer arithmetic), or an int passed through."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware (UTC)")
        return (value - _EPOCH) // _MS
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a datetime or epoch milliseconds, got {type(value).__name__}")
    return value


def from_ms(ms: int) -> datetime:
    """The tz-aware UTC datetime of epoch milliseconds."""
    return _EPOCH + timedelta(milliseconds=ms)


class Activity(TypedDict):
    """One accepted (de-duplicated, ordered) event, as the windows count it: by its own event time."""

    session_id: str
    seq: int
    source: str
    ts_ms: int
    event_type: str
    video_id: str | None
    rendition: str | None
    device_class: str | None
    bytes: int
    starts_view: bool


@dataclass(frozen=True)
class RenditionSlice:
    """The part of a view spent while one rendition was current (times in ms, bitrate_kbps_ms = sum(kbps x ms))."""

    watch_ms: int = 0
    rebuffer_ms: int = 0
    rebuffer_count: int = 0
    played_ms: int = 0
    bitrate_kbps_ms: int = 0
    bitrate_time_ms: int = 0


@dataclass(frozen=True)
class ViewMetrics:
    """Metrics of one closed view (definitions in the module docstring; times in ms since the epoch)."""

    session_id: str
    view_id: str
    view_index: int
    source: str
    video_id: str | None
    user_id: str | None
    profile_id: str | None
    device_class: str | None
    start_ts_ms: int
    end_ts_ms: int
    close_ts_ms: int
    close_reason: str
    started: bool
    video_startup_time_ms: int | None
    player_startup_time_ms: int | None
    watch_time_ms: int
    paused_ms: int
    played_ms: int
    seek_ms: int
    rebuffer_count: int
    rebuffer_ms: int
    rebuffer_percentage: float | None
    rebuffer_frequency_per_min: float | None
    playback_failure: bool
    video_startup_failure: bool
    exit_before_video_start: bool
    error_code: str | None
    non_fatal_errors: int
    bitrate_kbps_ms: int
    bitrate_time_ms: int
    average_bitrate_kbps: float | None
    upscale_percentage: float | None
    max_upscale_percentage: float | None
    startup_time_score: float | None
    smoothness_score: float | None
    video_quality_score: float | None
    playback_success_score: int
    bytes_served: int
    initial_rendition: str | None
    rendition_ms: dict[str, int] = field(default_factory=dict)
    rendition_share: dict[str, float] = field(default_factory=dict)
    by_rendition: dict[str, RenditionSlice] = field(default_factory=dict)
    watched_position_s: float | None = None
    starvation_marks: int = 0
    events: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (RenditionSlices become dicts); ``from_dict`` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ViewMetrics:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["by_rendition"] = {
            name: s if isinstance(s, RenditionSlice) else RenditionSlice(**s)
            for name, s in (data.get("by_rendition") or {}).items()
        }
        return cls(**values)


@dataclass(frozen=True)
class Drained:
    """What ``drain`` takes out of a session state."""

    views: list[ViewMetrics]
    activity: list[Activity]


# ---------------------------------------------------------------------------------------------------------
# Session state
# ---------------------------------------------------------------------------------------------------------


def new_session(session_id: str) -> SessionState:
    """An empty session state (a plain JSON-serialisable dict)."""
    return {
        "version": STATE_VERSION,
        "session_id": session_id,
        "streams": {},
        "v1_seen": [],
        "last_ts": None,
        "context": {},
        "view": None,
        "views_started": 0,
        "outbox": {"views": [], "activity": []},
        "counters": {
            "received": 0,
            "accepted": 0,
            "duplicates": 0,
            "late": 0,
            "skipped": 0,
            "forced_releases": 0,
            "overflow": 0,
            "orphans": 0,
        },
    }


def apply(
    state: SessionState,
    event: Mapping[str, Any],
    *,
    reorder_window_s: float | None = DEFAULT_REORDER_WINDOW_S,
) -> SessionState:
    """Add one PlaybackEvent (a dict shaped like schemas/PlaybackEvent.avsc) to the session state.

    ``reorder_window_s=None`` never skips a gap on the session's own clock: events wait for their
    predecessors until ``tick``, ``close`` or the buffer cap (used to replay a fully shuffled session).
    Raises ValueError for an event of another session or without a usable seq / client_ts.
    """
    if event.get("session_id") != state["session_id"]:
        raise ValueError(f"event of session {event.get('session_id')!r} applied to {state['session_id']!r}")
    ev = _compact(event)
    counters = state["counters"]
    counters["received"] += 1
    state["last_ts"] = ev["t"] if state["last_ts"] is None else max(state["last_ts"], ev["t"])
    seq = ev["seq"]
    if ev["source"] == "CMCD_V1":
        seen: list[int] = state["v1_seen"]
        if seq in seen:
            counters["duplicates"] += 1
            return state
        seen.append(seq)
        if len(seen) > V1_DEDUPE_MEMORY:
            seen.remove(min(seen))
        _process(state, ev)
        return state
    stream = state["streams"].setdefault(ev["source"], {"next": None, "first": None, "buffer": {}, "skipped": []})
    if stream["next"] is not None and seq < stream["next"]:
        if seq < stream["first"] or seq in stream["skipped"]:
            counters["late"] += 1
            if seq in stream["skipped"]:
                stream["skipped"].remove(seq)
        else:
            counters["duplicates"] += 1
        return state
    key = str(seq)
    if key in stream["buffer"]:
        counters["duplicates"] += 1
        return state
    stream["buffer"][key] = ev
    window_ms = None if reorder_window_s is None else int(reorder_window_s * 1000)
    _release(state, stream, clock=state["last_ts"], window_ms=window_ms)
    return state


def tick(
    state: SessionState, now: datetime | int, *, reorder_window_s: float = DEFAULT_REORDER_WINDOW_S
) -> SessionState:
    """Release buffered events that waited ``reorder_window_s`` of event time (``now``: the stream's clock,
    e.g. the largest client_ts the agent has seen); call it periodically so a session that went quiet does
    not hold its last events behind a gap."""
    for stream in state["streams"].values():
        _release(state, stream, clock=to_ms(now), window_ms=int(reorder_window_s * 1000))
    return state


def expires_at(state: SessionState, *, inactivity_s: float = DEFAULT_INACTIVITY_S) -> int | None:
    """Event time (epoch ms) at which the session's open view (or its buffered events) expire, if any."""
    if state["last_ts"] is None or (state["view"] is None and not _buffered(state)):
        return None
    return int(state["last_ts"] + inactivity_s * 1000)


def expire(state: SessionState, now: datetime | int, *, inactivity_s: float = DEFAULT_INACTIVITY_S) -> bool:
    """True when the session has something to close (an open view or buffered events) and no event came for
    ``inactivity_s`` (default 30 s) of event time before ``now``; then call ``close(state, "inactive")``.

    The agent should sweep at least once per allowed lateness of the windows, before closing windows, so that
    the view's attribution time (last event + inactivity) is still inside an open window."""
    deadline = expires_at(state, inactivity_s=inactivity_s)
    return deadline is not None and to_ms(now) >= deadline


def close(
    state: SessionState, reason: str = "inactive", *, inactivity_s: float = DEFAULT_INACTIVITY_S
) -> ViewMetrics | None:
    """Release every buffered event (skipping gaps), then close the open view with ``reason`` and return its
    metrics (None when no view is open). Views that the released events close (END, ...) go to the outbox as
    usual, so call ``drain`` afterwards too. The state stays usable: keep it a while after an inactivity close
    (its seq cursors make very late duplicates recognisable) and delete it later."""
    for stream in state["streams"].values():
        _release(state, stream, clock=None, window_ms=None, force=True)
    view = state["view"]
    if view is None:
        return None
    end = view["last_ts"]
    close_ts = end + int(inactivity_s * 1000) if reason == "inactive" else end
    return _close_view(state, reason, end_ts=end, close_ts=close_ts, to_outbox=False)


def drain(state: SessionState) -> Drained:
    """Take the closed views and activity records queued in the state (the outbox is emptied)."""
    outbox = state["outbox"]
    views = [ViewMetrics.from_dict(v) for v in outbox["views"]]
    activity: list[Activity] = list(outbox["activity"])
    state["outbox"] = {"views": [], "activity": []}
    return Drained(views=views, activity=activity)


def open_view(state: SessionState) -> dict[str, Any] | None:
    """The open view's state (read-only use), or None."""
    view: dict[str, Any] | None = state["view"]
    return view


# ---------------------------------------------------------------------------------------------------------
# Reorder buffer
# ---------------------------------------------------------------------------------------------------------


def _buffered(state: SessionState) -> bool:
    return any(stream["buffer"] for stream in state["streams"].values())


def _release(
    state: SessionState, stream: dict[str, Any], *, clock: int | None, window_ms: int | None, force: bool = False
) -> None:
    buffer: dict[str, dict[str, Any]] = stream["buffer"]
    counters = state["counters"]
    while buffer:
        nxt = stream["next"]
        if nxt is None and str(FIRST_SEQ) in buffer:
            stream["next"] = stream["first"] = FIRST_SEQ
            continue
        if nxt is not None and str(nxt) in buffer:
            ev = buffer.pop(str(nxt))
            stream["next"] = nxt + 1
            _process(state, ev)
            continue
        # A gap (or a stream whose seq 0 has not come): wait, unless waiting has gone on long enough.
        lowest = min(int(k) for k in buffer)
        waited_long = clock is not None and window_ms is not None and clock - buffer[str(lowest)]["t"] >= window_ms
        overflow = len(buffer) > MAX_BUFFERED_EVENTS
        if not (force or waited_long or overflow):
            return
        counters["forced_releases"] += 1
        counters["overflow"] += int(overflow and not (force or waited_long))
        if nxt is None:
            stream["first"] = lowest
        else:
            counters["skipped"] += lowest - nxt
            skipped: list[int] = stream["skipped"]
            skipped.extend(range(nxt, min(lowest, nxt + SKIPPED_MEMORY)))
            del skipped[:-SKIPPED_MEMORY]
        stream["next"] = lowest


def _compact(event: Mapping[str, Any]) -> dict[str, Any]:
    try:
        seq = int(event["seq"])
        t = to_ms(event["client_ts"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"event without a usable seq / client_ts: {exc}") from exc
    etype = event.get("event_type")
    ev: dict[str, Any] = {
        "seq": seq,
        "t": t,
        "type": etype if etype in EVENT_TYPES else "UNKNOWN",
        "source": event.get("source") if event.get("source") in SOURCES else "SDK",
    }
    for name in _EVENT_FIELDS:
        value = event.get(name)
        if value is not None:
            ev[name] = value
    if event.get("fatal"):
        ev["fatal"] = True
    extras = event.get("extras") or {}
    used = {k: str(extras[k]) for k in _USED_EXTRAS if k in extras}
    if used:
        ev["extras"] = used
    return ev


# ---------------------------------------------------------------------------------------------------------
# Ordered state machine
# ---------------------------------------------------------------------------------------------------------


def _empty_slice() -> dict[str, int]:
    return {
        "watch_ms": 0,
        "rebuffer_ms": 0,
        "rebuffer_count": 0,
        "played_ms": 0,
        "bitrate_kbps_ms": 0,
        "bitrate_time_ms": 0,
    }


def _new_view(state: SessionState, ev: dict[str, Any]) -> dict[str, Any]:
    ctx = state["context"]
    index = state["views_started"]
    state["views_started"] = index + 1
    view: dict[str, Any] = {
        "view_id": f"{state['session_id']}/{ev['source']}/{ev['seq']}",
        "index": index,
        "source": ev["source"],
        "video_id": ev.get("video_id"),
        "user_id": ev.get("user_id", ctx.get("user_id")),
        "profile_id": ev.get("profile_id", ctx.get("profile_id")),
        "device_class": ev.get("device_class", ctx.get("device_class")),
        "start_ts": ev["t"],
        "clock": ev["t"],
        "last_ts": ev["t"],
        "first_frame_ts": None,
        "player_startup_ms": ctx.pop("player_startup_ms", None),
        "paused": False,
        "stall": None,
        "seeking": False,
        "seek_pending": False,
        "watch_ms": 0,
        "paused_ms": 0,
        "played_ms": 0,
        "seek_ms": 0,
        "rebuffer_ms": 0,
        "rebuffer_count": 0,
        "fatal": False,
        "ended": None,
        "error_code": None,
        "non_fatal_errors": 0,
        "rendition": None,
        "bitrate_kbps": None,
        "video_width": None,
        "video_height": None,
        "initial_rendition": None,
        "slices": {},
        "pending": _empty_slice(),
        "upscale_weighted": 0.0,
        "upscale_time_ms": 0,
        "max_upscale": None,
        "bytes": 0,
        "playhead_s": None,
        "starvation_marks": 0,
        "events": 0,
    }
    return view


def _process(state: SessionState, ev: dict[str, Any]) -> None:
    """Apply one in-order event; queue its Activity record and any view it closes."""
    state["counters"]["accepted"] += 1
    etype = ev["type"]
    t = ev["t"]
    view = state["view"]
    if ev["source"] == "CMCD_V1":
        _count_request(state, ev, view)
        return
    if view is not None:
        # The interval before this event ran under the old player size / rendition: account it first.
        _advance(state, view, t)
    ctx = state["context"]
    for name in ("device_class", "user_id", "profile_id", "player_width", "player_height"):
        if name in ev:
            ctx[name] = ev[name]
    starts_view = False
    if etype == "PLAY_REQUESTED":
        if view is not None and _same_video(view, ev):
            _update_view(state, view, ev)
            _resume_after_play(view)
        else:
            if view is not None:
                _close_view(state, "new_view", end_ts=t, close_ts=t, to_outbox=True)
            view = state["view"] = _new_view(state, ev)
            starts_view = True
            _update_view(state, view, ev)
    elif view is None:
        if etype == "PLAYER_READY":
            startup = _player_startup_ms(ev)
            if startup is not None:
                ctx["player_startup_ms"] = startup
        if ev["source"] != "CMCD_V1" and etype not in _CONTEXT_TYPES:
            state["counters"]["orphans"] += 1
    else:
        _update_view(state, view, ev)
    state["outbox"]["activity"].append(_activity(state, ev, view, starts_view))
    if view is not None and view["ended"] is not None:
        _close_view(state, view["ended"], end_ts=t, close_ts=t, to_outbox=True)


def _count_request(state: SessionState, ev: dict[str, Any], view: dict[str, Any] | None) -> None:
    """A CMCD v1 media request: activity (bytes, the session as a viewer) for the windows of its own time,
    video and rendition (the collector takes them from the request's path), and a starvation mark.

    It never touches a view's clock, bytes or rendition: the collector publishes a request the moment it
    arrives while the SDK's events of the same moments come later in a batched beacon, so requests are
    routinely processed ahead of events that precede them, and anything they did to a view would depend on
    that order."""
    if view is not None and ev.get("extras", {}).get("bs") == "true":
        view["starvation_marks"] += 1
    record = _activity(state, ev, None, False)
    record["rendition"] = ev.get("rendition")
    record["device_class"] = ev.get("device_class") or record["device_class"]
    state["outbox"]["activity"].append(record)


def _same_video(view: dict[str, Any], ev: dict[str, Any]) -> bool:
    if view["ended"] is not None:
        return False
    video = ev.get("video_id")
    return video is None or view["video_id"] is None or video == view["video_id"]


def _activity(state: SessionState, ev: dict[str, Any], view: dict[str, Any] | None, starts_view: bool) -> Activity:
    ctx = state["context"]
    if view is not None:
        video, rendition, device = view["video_id"], view["rendition"], view["device_class"]
    else:
        video, rendition, device = ev.get("video_id"), None, ctx.get("device_class")
    return {
        "session_id": state["session_id"],
        "seq": ev["seq"],
        "source": ev["source"],
        "ts_ms": ev["t"],
        "event_type": ev["type"],
        "video_id": video,
        "rendition": rendition,
        "device_class": device,
        "bytes": int(ev.get("bytes") or 0),
        "starts_view": starts_view,
    }


def _update_view(state: SessionState, view: dict[str, Any], ev: dict[str, Any]) -> None:
    """Account the time since the view's previous event, then apply the event's transition."""
    t = ev["t"]
    etype = ev["type"]
    _advance(state, view, t)
    view["events"] += 1
    view["last_ts"] = max(view["last_ts"], t)
    if view["video_id"] is None and "video_id" in ev:
        view["video_id"] = ev["video_id"]
    if view["device_class"] is None and "device_class" in ev:
        view["device_class"] = ev["device_class"]
    if etype != "CMCD_REQUEST":
        _update_rendition(view, ev)
    if "playhead_s" in ev:
        view["playhead_s"] = float(ev["playhead_s"])
    if "bytes" in ev:
        view["bytes"] += int(ev["bytes"])
    if etype in _RESUME_TYPES and etype != "FIRST_FRAME":
        view["seek_pending"] = False

    if etype == "FIRST_FRAME":
        _playing(view, t)
    elif etype == "STALL_START":
        _stall_start(view)
    elif etype == "STALL_END":
        view["stall"] = None
    elif etype == "SEEK_START":
        # A rebuffer the viewer seeks out of: the rest of that stall is seek latency.
        view["stall"] = "seek" if view["stall"] else None
        view["seeking"] = True
        view["seek_pending"] = False
    elif etype == "SEEK_END":
        view["seeking"] = False
        view["seek_pending"] = True
    elif etype == "PAUSE":
        view["paused"] = True
        view["stall"] = None
    elif etype == "PLAY":
        view["paused"] = False
    elif etype == "ERROR":
        if ev.get("fatal"):
            view["fatal"] = True
            view["error_code"] = ev.get("error_code")
            view["ended"] = "fatal_error"
        else:
            view["non_fatal_errors"] += 1
            if view["error_code"] is None:
                view["error_code"] = ev.get("error_code")
    elif etype == "END":
        view["ended"] = "end"
    elif etype == "PLAYER_READY":
        startup = _player_startup_ms(ev)
        if startup is not None:
            view["player_startup_ms"] = startup
    elif etype == "CMCD_REQUEST" and ev.get("extras", {}).get("bs") == "true":
        # A CMCD v2 "response received" report with a starvation flag (v1 requests are _count_request's).
        view["starvation_marks"] += 1
    if ev.get("extras", {}).get("sta") == "p":
        # CMCD v2 "playing" (media is being rendered), whatever event it was mapped to: the first frame if
        # none came yet, else the end of a stall, seek or pause (CMCD reports no rebuffering during seeks).
        _playing(view, t)


def _resume_after_play(view: dict[str, Any]) -> None:
    # A play request for the video already in view: a play command (resumes a pause).
    view["paused"] = False
    view["seek_pending"] = False


def _playing(view: dict[str, Any], t: int) -> None:
    """The player renders and the playhead moves: first frame, or the end of a stall / seek / pause."""
    if view["first_frame_ts"] is None:
        view["first_frame_ts"] = t
    view["paused"] = False
    view["stall"] = None
    view["seeking"] = False
    view["seek_pending"] = False


def _stall_start(view: dict[str, Any]) -> None:
    if view["paused"] or view["stall"] is not None:
        return
    if view["first_frame_ts"] is None:
        view["stall"] = "startup"
    elif view["seeking"] or view["seek_pending"]:
        view["stall"] = "seek"
    else:
        view["stall"] = "rebuffer"
        view["rebuffer_count"] += 1
        _current_slice(view)["rebuffer_count"] += 1


def _update_rendition(view: dict[str, Any], ev: dict[str, Any]) -> None:
    for name in ("bitrate_kbps", "video_width", "video_height"):
        if name in ev:
            view[name] = int(ev[name])
    rendition = ev.get("rendition")
    if rendition is not None:
        view["rendition"] = str(rendition)
        if view["initial_rendition"] is None:
            # Time before the first known rendition belongs to the initial one.
            view["initial_rendition"] = view["rendition"]
            _merge_slice(view["slices"].setdefault(view["rendition"], _empty_slice()), view["pending"])
            view["pending"] = _empty_slice()


def _current_slice(view: dict[str, Any]) -> dict[str, int]:
    if view["rendition"] is None:
        pending: dict[str, int] = view["pending"]
        return pending
    current: dict[str, int] = view["slices"].setdefault(view["rendition"], _empty_slice())
    return current


def _merge_slice(into: dict[str, int], other: Mapping[str, int]) -> None:
    for key, value in other.items():
        into[key] += value


def _advance(state: SessionState, view: dict[str, Any], t: int) -> None:
    """Account [clock, t) by the state the view is in."""
    start = view["clock"]
    if t <= start:
        return
    ms = t - start
    view["clock"] = t
    if view["paused"]:
        view["paused_ms"] += ms
        return
    view["watch_ms"] += ms
    bucket = _current_slice(view)
    bucket["watch_ms"] += ms
    if view["first_frame_ts"] is None:
        return
    if view["stall"] == "rebuffer":
        view["rebuffer_ms"] += ms
        bucket["rebuffer_ms"] += ms
        return
    if view["stall"] is not None or view["seeking"]:
        view["seek_ms"] += ms
        return
    view["played_ms"] += ms
    bucket["played_ms"] += ms
    if view["bitrate_kbps"] is not None:
        bucket["bitrate_kbps_ms"] += view["bitrate_kbps"] * ms
        bucket["bitrate_time_ms"] += ms
    upscale = _upscale(state["context"], view)
    if upscale is not None:
        view["upscale_weighted"] += upscale * ms
        view["upscale_time_ms"] += ms
        view["max_upscale"] = upscale if view["max_upscale"] is None else max(view["max_upscale"], upscale)


def upscale_factor(player_width: int, player_height: int, video_width: int, video_height: int) -> float:
    """Upscale as a fraction: (player - video) / video on the first dimension that fits, never negative."""
    if min(player_width, player_height, video_width, video_height) <= 0:
        raise ValueError("dimensions must be positive")
    scale = min(Fraction(player_width, video_width), Fraction(player_height, video_height))
    return float(max(Fraction(0), scale - 1))


def _upscale(ctx: Mapping[str, Any], view: Mapping[str, Any]) -> float | None:
    dims = [ctx.get("player_width"), ctx.get("player_height"), view["video_width"], view["video_height"]]
    known = [int(d) for d in dims if d is not None]
    if len(known) < 4 or min(known) <= 0:
        return None
    return upscale_factor(*known)


def _player_startup_ms(ev: Mapping[str, Any]) -> int | None:
    extras = ev.get("extras", {})
    try:
        if "player_startup_ms" in extras:
            return max(0, int(extras["player_startup_ms"]))
        if "player_init_ts" in extras:
            return max(0, int(ev["t"]) - int(extras["player_init_ts"]))
    except ValueError:
        return None
    return None


def _close_view(state: SessionState, reason: str, *, end_ts: int, close_ts: int, to_outbox: bool) -> ViewMetrics:
    view = state["view"]
    _advance(state, view, end_ts)
    name = view["initial_rendition"] or UNKNOWN
    if any(view["pending"].values()) or not view["slices"]:
        _merge_slice(view["slices"].setdefault(name, _empty_slice()), view["pending"])
    metrics = _metrics(state, view, reason, end_ts=max(end_ts, view["start_ts"]), close_ts=close_ts)
    state["view"] = None
    if to_outbox:
        state["outbox"]["views"].append(metrics.to_dict())
    return metrics


def _ratio(num: int, den: int, scale: int = 1) -> float | None:
    """num x scale / den, correctly rounded (Fraction), so a recount from the same integers is bit-identical."""
    return None if den <= 0 else float(Fraction(num * scale, den))


def startup_time_score(vst_ms: int) -> float:
    return 8 / (8 + vst_ms / 1000) * 100


def smoothness_score(rebuffer_count: int, rebuffer_fraction: float) -> float:
    return (100 / math.sqrt(1 + (rebuffer_count / 2) ** 2) + 100 * math.exp(-10 * rebuffer_fraction)) / 2


def video_quality_score(max_upscale: float, mean_upscale: float) -> float:
    return 100 * math.exp(-0.33 * (0.15 * max_upscale + 0.85 * mean_upscale))


def _metrics(state: SessionState, view: dict[str, Any], reason: str, *, end_ts: int, close_ts: int) -> ViewMetrics:
    started = view["first_frame_ts"] is not None
    fatal = bool(view["fatal"])
    vst = view["first_frame_ts"] - view["start_ts"] if started else None
    watch = view["watch_ms"]
    slices = {name: RenditionSlice(**values) for name, values in sorted(view["slices"].items())}
    bitrate_kbps_ms = sum(s.bitrate_kbps_ms for s in slices.values())
    bitrate_time_ms = sum(s.bitrate_time_ms for s in slices.values())
    rendition_ms = {name: s.played_ms for name, s in slices.items() if s.played_ms > 0}
    played_total = sum(rendition_ms.values())
    mean_upscale = view["upscale_weighted"] / view["upscale_time_ms"] if view["upscale_time_ms"] else None
    max_upscale = view["max_upscale"]
    rebuffer_fraction = view["rebuffer_ms"] / watch if watch > 0 else 0.0
    ebvs = not started and not fatal
    return ViewMetrics(
        session_id=state["session_id"],
        view_id=view["view_id"],
        view_index=view["index"],
        source=view["source"],
        video_id=view["video_id"],
        user_id=view["user_id"],
        profile_id=view["profile_id"],
        device_class=view["device_class"],
        start_ts_ms=view["start_ts"],
        end_ts_ms=end_ts,
        close_ts_ms=close_ts,
        close_reason=reason,
        started=started,
        video_startup_time_ms=vst,
        player_startup_time_ms=view["player_startup_ms"],
        watch_time_ms=watch,
        paused_ms=view["paused_ms"],
        played_ms=view["played_ms"],
        seek_ms=view["seek_ms"],
        rebuffer_count=view["rebuffer_count"],
        rebuffer_ms=view["rebuffer_ms"],
        rebuffer_percentage=_ratio(view["rebuffer_ms"], watch, 100),
        rebuffer_frequency_per_min=_ratio(view["rebuffer_count"], watch, 60_000),
        playback_failure=fatal,
        video_startup_failure=fatal and not started,
        exit_before_video_start=ebvs,
        error_code=view["error_code"],
        non_fatal_errors=view["non_fatal_errors"],
        bitrate_kbps_ms=bitrate_kbps_ms,
        bitrate_time_ms=bitrate_time_ms,
        average_bitrate_kbps=_ratio(bitrate_kbps_ms, bitrate_time_ms),
        upscale_percentage=None if mean_upscale is None else mean_upscale * 100,
        max_upscale_percentage=None if max_upscale is None else max_upscale * 100,
        startup_time_score=None if vst is None else startup_time_score(vst),
        smoothness_score=smoothness_score(view["rebuffer_count"], rebuffer_fraction) if started else None,
        video_quality_score=(
            video_quality_score(max_upscale, mean_upscale)
            if started and mean_upscale is not None and max_upscale is not None
            else None
        ),
        playback_success_score=0 if fatal else 50 if ebvs else 100,
        bytes_served=view["bytes"],
        initial_rendition=view["initial_rendition"],
        rendition_ms=rendition_ms,
        rendition_share={name: ms / played_total for name, ms in rendition_ms.items()},
        by_rendition=slices,
        watched_position_s=view["playhead_s"],
        starvation_marks=view["starvation_marks"],
        events=view["events"],
    )
