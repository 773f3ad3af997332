"""Tumbling event-time windows of QoE metrics per scope: pure functions over a JSON-serialisable dict.

Windows are 10 s and 60 s long (``GRANULARITIES_S``), aligned on the epoch, for four kinds of scope:
``("video", video_id)``, ``("rendition", name)``, ``("device", device_class)`` and ``("global", "all")``; a
missing id is ``"unknown"``, so every scope kind adds up to the global one. The state can hold any set of
scopes: one dict for everything (tests, the load bench), or one per Faust-table key when the agent
partitions by scope (pass ``scopes=[...]`` to ``add_view`` / ``add_activity`` to update only those).

Attribution, chosen so that every count and ratio is a sum of integers that an offline recount of the same
events reproduces exactly:

* By the event's own time (``add_activity``, one record per accepted event from ``views.drain``):
  ``views_started`` (PLAY_REQUESTEDs that started a view: Mux's engagement "views", counted by start),
  ``concurrent_viewers`` (distinct sessions with at least one event in the window: players send heartbeats
  every few seconds, so a playing session shows up in every 10 s window), ``bytes_served`` (sum of
  ``bytes``), ``events``. Scope: the view the event belongs to (its video, the rendition current after the
  event, the session's device class).
* By the view's close time (``add_view``, one ViewMetrics per closed view; Mux aggregates QoE metrics "based
  on the end time of each view"): ``views`` (views that ended), ``started_views``, playback failures, video
  startup failures, exits before video start, watch / rebuffer / played time, rebuffer count, bitrate x
  played time, played time per rendition, and the video startup times (sketch). Ratios are Σ numerator ÷ Σ
  denominator over those views: rebuffer % = Σ rebuffer ÷ Σ watch time, rebuffer frequency = Σ rebuffer
  count ÷ Σ watch minutes, failure / startup failure / EBVS % ÷ ``views``, average bitrate = Σ(kbps x ms) ÷
  Σ ms, quality distribution = played time per rendition ÷ played time. A whole view lands in one window
  (the one holding its close time), never split, so each view is counted exactly once per granularity.
  For the rendition scope a view's times are split by the rendition that was current (``by_rendition``),
  and its counts (views, failures, EBVS, startup time) go to its initial rendition.

Percentiles: the video startup times of a window go into a DDSketch-style log-bucketed histogram with
relative accuracy α = 1 % (``ddsketch``'s ``LogarithmicMapping``; its bins kept here as a ``{key: count}``
dict so the state stays JSON). The q-quantile returned is within 1 % (relative) of the exact value
``sorted(values)[floor(q x (n - 1))]``, the same lower-rank definition and key walk as
``ddsketch.DDSketch.get_quantile_value``. The mean (exact sum ÷ count) is exact.

Closing: the watermark is the largest event time seen minus the allowed lateness (default 10 s). A window
is closable once the watermark reaches its end; ``finalise(window)`` computes its row from the window state
alone (no counters are incremented at the sink) under a deterministic key ``(scope, scope_id,
granularity_s, window_start)``, so a replay writes identical rows. After ``evict(state, watermark)`` an
event or view that still falls in a closed window is not added: it is counted per scope and granularity in
``late_counts(state)`` (``events`` / ``views``) instead of being dropped silently.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any, Final

from ddsketch.mapping import LogarithmicMapping

from common.qoe.views import UNKNOWN, Activity, ViewMetrics, from_ms, to_ms

GRANULARITIES_S: Final = (10, 60)
DEFAULT_LATENESS_S: Final = 10.0
SKETCH_RELATIVE_ACCURACY: Final = 0.01
SCOPE_KINDS: Final = ("video", "rendition", "device", "global")
GLOBAL: Final = ("global", "all")
STATE_VERSION: Final = 1

WindowsState = dict[str, Any]
Window = dict[str, Any]
Scope = tuple[str, str]


@dataclass(frozen=True)
class WindowRow:
    """The finalised values of one window; ``key()`` is the idempotent primary key for the sink."""

    scope: str
    scope_id: str
    granularity_s: int
    window_start: datetime
    window_end: datetime
    views_started: int
    concurrent_viewers: int
    events: int
    bytes_served: int
    views: int
    started_views: int
    playback_failures: int
    video_startup_failures: int
    exits_before_video_start: int
    playback_failure_percentage: float | None
    video_startup_failure_percentage: float | None
    exits_before_video_start_percentage: float | None
    watch_time_ms: int
    rebuffer_ms: int
    rebuffer_count: int
    rebuffer_percentage: float | None
    rebuffer_frequency_per_min: float | None
    played_ms: int
    bitrate_kbps_ms: int
    bitrate_time_ms: int
    average_bitrate_kbps: float | None
    vst_count: int
    vst_median_ms: float | None
    vst_p95_ms: float | None
    vst_mean_ms: float | None
    rendition_ms: dict[str, int] = field(default_factory=dict)
    quality_distribution: dict[str, float] = field(default_factory=dict)

    def key(self) -> tuple[str, str, int, datetime]:
        return (self.scope, self.scope_id, self.granularity_s, self.window_start)

    @property
    def window_start_ms(self) -> int:
        return to_ms(self.window_start)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------
# Sketch of video startup times
# ---------------------------------------------------------------------------------------------------------


@functools.cache
def _mapping(relative_accuracy: float) -> LogarithmicMapping:
    return LogarithmicMapping(relative_accuracy)


def new_sketch(relative_accuracy: float = SKETCH_RELATIVE_ACCURACY) -> dict[str, Any]:
    """An empty quantile sketch (JSON): bin key -> count, plus exact count / sum / min / max."""
    return {"alpha": relative_accuracy, "count": 0, "zero": 0, "bins": {}, "sum": 0, "min": None, "max": None}


def sketch_add(sketch: dict[str, Any], value: float, count: int = 1) -> None:
    if value < 0:
        raise ValueError("the sketch holds non-negative values only")
    mapping = _mapping(sketch["alpha"])
    if value <= mapping.min_possible:
        sketch["zero"] += count
    else:
        key = str(mapping.key(value))
        sketch["bins"][key] = sketch["bins"].get(key, 0) + count
    sketch["count"] += count
    sketch["sum"] += value * count
    sketch["min"] = value if sketch["min"] is None else min(sketch["min"], value)
    sketch["max"] = value if sketch["max"] is None else max(sketch["max"], value)


def sketch_merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    if into["alpha"] != other["alpha"]:
        raise ValueError("cannot merge sketches of different relative accuracy")
    for key, count in other["bins"].items():
        into["bins"][key] = into["bins"].get(key, 0) + count
    into["zero"] += other["zero"]
    into["count"] += other["count"]
    into["sum"] += other["sum"]
    for name, pick in (("min", min), ("max", max)):
        if other[name] is not None:
            into[name] = other[name] if into[name] is None else pick(into[name], other[name])


def sketch_quantile(sketch: Mapping[str, Any], q: float) -> float | None:
    """The q-quantile (0 <= q <= 1) within the sketch's relative accuracy of sorted(values)[floor(q(n-1))]."""
    if not 0 <= q <= 1:
        raise ValueError("q must be within [0, 1]")
    if sketch["count"] == 0:
        return None
    rank = q * (sketch["count"] - 1)
    if rank < sketch["zero"]:
        return 0.0
    rank -= sketch["zero"]
    mapping = _mapping(sketch["alpha"])
    running = 0
    keys = sorted(int(k) for k in sketch["bins"])
    for key in keys:
        running += sketch["bins"][str(key)]
        if running > rank:
            return float(mapping.value(key))
    return float(mapping.value(keys[-1]))


# ---------------------------------------------------------------------------------------------------------
# Window state
# ---------------------------------------------------------------------------------------------------------


def new_windows(
    *, granularities_s: Iterable[int] = GRANULARITIES_S, lateness_s: float = DEFAULT_LATENESS_S
) -> WindowsState:
    """An empty windows state (a plain JSON-serialisable dict)."""
    grans = sorted({int(g) * 1000 for g in granularities_s})
    if not grans or grans[0] <= 0:
        raise ValueError("granularities must be positive")
    return {
        "version": STATE_VERSION,
        "granularities_ms": grans,
        "lateness_ms": int(lateness_s * 1000),
        "max_ts": None,
        "closed_upto": {str(g): None for g in grans},
        "windows": {},
        "late": {},
    }


def new_window(scope: Scope, granularity_ms: int, start_ms: int) -> Window:
    return {
        "scope": scope[0],
        "scope_id": scope[1],
        "granularity_ms": granularity_ms,
        "start_ms": start_ms,
        "events": 0,
        "sessions": {},
        "bytes": 0,
        "views_started": 0,
        "views": 0,
        "started_views": 0,
        "playback_failures": 0,
        "startup_failures": 0,
        "ebvs": 0,
        "watch_ms": 0,
        "rebuffer_ms": 0,
        "rebuffer_count": 0,
        "played_ms": 0,
        "bitrate_kbps_ms": 0,
        "bitrate_time_ms": 0,
        "rendition_ms": {},
        "vst": new_sketch(),
    }


def _windows_for(state: WindowsState, scope: Scope, ts: int, kind: str) -> list[Window]:
    """The open windows of ``scope`` holding ``ts`` (created on demand); a closed one counts as late."""
    found = []
    for g in state["granularities_ms"]:
        start = ts - ts % g
        closed = state["closed_upto"][str(g)]
        if closed is not None and start + g <= closed:
            late = state["late"].setdefault(scope[0], {}).setdefault(scope[1], {})
            counts = late.setdefault(str(g // 1000), {"events": 0, "views": 0})
            counts[kind] += 1
            continue
        key = f"{g}|{start}|{scope[0]}|{scope[1]}"
        window = state["windows"].get(key)
        if window is None:
            window = state["windows"][key] = new_window(scope, g, start)
        found.append(window)
    return found


def _see(state: WindowsState, ts: int) -> None:
    state["max_ts"] = ts if state["max_ts"] is None else max(state["max_ts"], ts)


def activity_scopes(activity: Mapping[str, Any]) -> list[Scope]:
    return [
        ("video", activity.get("video_id") or UNKNOWN),
        ("rendition", activity.get("rendition") or UNKNOWN),
        ("device", activity.get("device_class") or UNKNOWN),
        GLOBAL,
    ]


def add_activity(
    state: WindowsState, activity: Activity | Mapping[str, Any], *, scopes: Collection[Scope] | None = None
) -> WindowsState:
    """Count one accepted event in the windows holding its event time (mutates and returns ``state``)."""
    ts = int(activity["ts_ms"])
    _see(state, ts)
    for scope in activity_scopes(activity):
        if scopes is not None and scope not in scopes:
            continue
        for window in _windows_for(state, scope, ts, "events"):
            window["events"] += 1
            sessions = window["sessions"]
            sessions[activity["session_id"]] = sessions.get(activity["session_id"], 0) + 1
            window["bytes"] += int(activity.get("bytes") or 0)
            if activity.get("starts_view"):
                window["views_started"] += 1
    return state


def view_contributions(metrics: ViewMetrics) -> list[tuple[Scope, dict[str, Any]]]:
    """What one closed view adds to each scope (see the module docstring for the attribution rules)."""
    counts = {
        "views": 1,
        "started_views": int(metrics.started),
        "playback_failures": int(metrics.playback_failure),
        "startup_failures": int(metrics.video_startup_failure),
        "ebvs": int(metrics.exit_before_video_start),
        "vst": metrics.video_startup_time_ms,
    }
    whole = {
        **counts,
        "watch_ms": metrics.watch_time_ms,
        "rebuffer_ms": metrics.rebuffer_ms,
        "rebuffer_count": metrics.rebuffer_count,
        "played_ms": metrics.played_ms,
        "bitrate_kbps_ms": metrics.bitrate_kbps_ms,
        "bitrate_time_ms": metrics.bitrate_time_ms,
        "rendition_ms": dict(metrics.rendition_ms),
    }
    out: list[tuple[Scope, dict[str, Any]]] = [
        (("video", metrics.video_id or UNKNOWN), whole),
        (("device", metrics.device_class or UNKNOWN), whole),
        (GLOBAL, whole),
    ]
    initial = metrics.initial_rendition or UNKNOWN
    for name, piece in sorted(metrics.by_rendition.items()):
        part: dict[str, Any] = {
            "watch_ms": piece.watch_ms,
            "rebuffer_ms": piece.rebuffer_ms,
            "rebuffer_count": piece.rebuffer_count,
            "played_ms": piece.played_ms,
            "bitrate_kbps_ms": piece.bitrate_kbps_ms,
            "bitrate_time_ms": piece.bitrate_time_ms,
            "rendition_ms": {name: piece.played_ms} if piece.played_ms > 0 else {},
        }
        if name == initial:
            part.update(counts)
        out.append((("rendition", name), part))
    if initial not in metrics.by_rendition:
        out.append((("rendition", initial), dict(counts)))
    return out


def add_view(
    state: WindowsState, metrics: ViewMetrics | Mapping[str, Any], *, scopes: Collection[Scope] | None = None
) -> WindowsState:
    """Add one closed view to the windows holding its close time (mutates and returns ``state``)."""
    if not isinstance(metrics, ViewMetrics):
        metrics = ViewMetrics.from_dict(metrics)
    ts = metrics.close_ts_ms
    _see(state, ts)
    for scope, part in view_contributions(metrics):
        if scopes is not None and scope not in scopes:
            continue
        for window in _windows_for(state, scope, ts, "views"):
            add_view_part(window, part)
    return state


def add_view_part(window: Window, part: Mapping[str, Any]) -> None:
    """Add one scope's part of a closed view (from ``view_contributions``) to a window or a partial."""
    for name, value in part.items():
        if name == "vst":
            if value is not None:
                sketch_add(window["vst"], value)
        elif name == "rendition_ms":
            for rendition, ms in value.items():
                window["rendition_ms"][rendition] = window["rendition_ms"].get(rendition, 0) + ms
        else:
            window[name] += value


# ---------------------------------------------------------------------------------------------------------
# Partial windows: one Kafka partition's share of a window, added up across partitions
# ---------------------------------------------------------------------------------------------------------

# Every field of a partial is an integer sum, except the rendition times (a sum per rendition) and the startup
# time sketch (mergeable): so the partials that workers write for their own partitions add up to exactly the
# window an offline recount gives, however the sessions are spread. ``concurrent`` is the number of sessions
# with an event in the window: a session lives on one partition, so per-partition counts add up too.
PARTIAL_SUMS: Final = (
    "events", "concurrent", "bytes", "views_started", "views", "started_views", "playback_failures",
    "startup_failures", "ebvs", "watch_ms", "rebuffer_ms", "rebuffer_count", "played_ms", "bitrate_kbps_ms",
    "bitrate_time_ms",
)  # fmt: skip


def new_partial() -> dict[str, Any]:
    """An empty partial window (JSON-serialisable)."""
    partial: dict[str, Any] = dict.fromkeys(PARTIAL_SUMS, 0)
    partial["rendition_ms"] = {}
    partial["vst"] = new_sketch()
    return partial


def merge_partial(into: dict[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """Add ``other`` to ``into`` (mutated and returned)."""
    for name in PARTIAL_SUMS:
        into[name] += other.get(name, 0)
    for rendition, ms in other.get("rendition_ms", {}).items():
        into["rendition_ms"][rendition] = into["rendition_ms"].get(rendition, 0) + ms
    if "vst" in other:
        sketch_merge(into["vst"], other["vst"])
    return into


def finalise_partials(
    scope: Scope, granularity_s: int, start_ms: int, partials: Iterable[Mapping[str, Any]]
) -> WindowRow:
    """The window row of the sum of its partials (one per partition that had anything in it)."""
    total = new_partial()
    for partial in partials:
        merge_partial(total, partial)
    window = {**total, "scope": scope[0], "scope_id": scope[1], "granularity_ms": granularity_s * 1000}
    window["start_ms"] = start_ms
    return finalise(window)


def watermark(state: WindowsState) -> int | None:
    """Largest event time seen minus the allowed lateness (epoch ms), or None before any input."""
    if state["max_ts"] is None:
        return None
    wm: int = state["max_ts"] - state["lateness_ms"]
    return wm


def closable(state: WindowsState, watermark_at: datetime | int | None = None) -> list[Window]:
    """The windows whose end the watermark has reached, in key order (default: the state's own watermark)."""
    wm = watermark(state) if watermark_at is None else to_ms(watermark_at)
    if wm is None:
        return []
    ready = [w for w in state["windows"].values() if w["start_ms"] + w["granularity_ms"] <= wm]
    return sorted(ready, key=lambda w: (w["granularity_ms"], w["start_ms"], w["scope"], w["scope_id"]))


def evict(state: WindowsState, watermark_at: datetime | int | None = None) -> list[Window]:
    """Remove the closable windows (after their rows were written) and mark their range closed, so a later
    input for it counts as late. Returns the removed windows."""
    wm = watermark(state) if watermark_at is None else to_ms(watermark_at)
    if wm is None:
        return []
    removed = closable(state, wm)
    for w in removed:
        del state["windows"][f"{w['granularity_ms']}|{w['start_ms']}|{w['scope']}|{w['scope_id']}"]
    for g in state["granularities_ms"]:
        upto = wm - wm % g
        previous = state["closed_upto"][str(g)]
        state["closed_upto"][str(g)] = upto if previous is None else max(previous, upto)
    return removed


def close_windows(state: WindowsState, watermark_at: datetime | int | None = None) -> list[WindowRow]:
    """``closable`` + ``finalise`` + ``evict`` in one call (for callers that write rows synchronously)."""
    wm = watermark(state) if watermark_at is None else to_ms(watermark_at)
    if wm is None:
        return []
    rows = [finalise(w) for w in closable(state, wm)]
    evict(state, wm)
    return rows


def flush(state: WindowsState) -> list[WindowRow]:
    """Close every window now (end of a replay or test run): the watermark jumps past the last window."""
    if not state["windows"]:
        return []
    end = max(w["start_ms"] + w["granularity_ms"] for w in state["windows"].values())
    return close_windows(state, end)


def late_counts(state: WindowsState) -> dict[tuple[str, str, int], dict[str, int]]:
    """Late inputs per (scope, scope_id, granularity_s): ``{"events": n, "views": n}``."""
    out = {}
    for scope, ids in state["late"].items():
        for scope_id, grans in ids.items():
            for gran, counts in grans.items():
                out[(scope, scope_id, int(gran))] = dict(counts)
    return out


def _pct(num: int, den: int) -> float | None:
    return None if den <= 0 else float(Fraction(num * 100, den))


def finalise(window: Mapping[str, Any]) -> WindowRow:
    """The row of a window, computed from its state alone (correctly rounded ratios of exact integers)."""
    views = window["views"]
    watch = window["watch_ms"]
    played_total = sum(window["rendition_ms"].values())
    vst = window["vst"]
    return WindowRow(
        scope=window["scope"],
        scope_id=window["scope_id"],
        granularity_s=window["granularity_ms"] // 1000,
        window_start=from_ms(window["start_ms"]),
        window_end=from_ms(window["start_ms"] + window["granularity_ms"]),
        views_started=window["views_started"],
        concurrent_viewers=window["concurrent"] if "concurrent" in window else len(window["sessions"]),
        events=window["events"],
        bytes_served=window["bytes"],
        views=views,
        started_views=window["started_views"],
        playback_failures=window["playback_failures"],
        video_startup_failures=window["startup_failures"],
        exits_before_video_start=window["ebvs"],
        playback_failure_percentage=_pct(window["playback_failures"], views),
        video_startup_failure_percentage=_pct(window["startup_failures"], views),
        exits_before_video_start_percentage=_pct(window["ebvs"], views),
        watch_time_ms=watch,
        rebuffer_ms=window["rebuffer_ms"],
        rebuffer_count=window["rebuffer_count"],
        rebuffer_percentage=_pct(window["rebuffer_ms"], watch),
        rebuffer_frequency_per_min=None if watch <= 0 else float(Fraction(window["rebuffer_count"] * 60_000, watch)),
        played_ms=window["played_ms"],
        bitrate_kbps_ms=window["bitrate_kbps_ms"],
        bitrate_time_ms=window["bitrate_time_ms"],
        average_bitrate_kbps=(
            None
            if window["bitrate_time_ms"] <= 0
            else float(Fraction(window["bitrate_kbps_ms"], window["bitrate_time_ms"]))
        ),
        vst_count=vst["count"],
        vst_median_ms=sketch_quantile(vst, 0.5),
        vst_p95_ms=sketch_quantile(vst, 0.95),
        vst_mean_ms=None if vst["count"] == 0 else float(Fraction(vst["sum"]) / vst["count"]),
        rendition_ms=dict(sorted(window["rendition_ms"].items())),
        quality_distribution={
            name: float(Fraction(ms, played_total)) for name, ms in sorted(window["rendition_ms"].items())
        },
    )
