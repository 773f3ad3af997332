"""The analysts' QoE API: window metrics per video and overall, live viewers, one view, resume positions.

    GET /api/v1/videos/{video_id}/qoe?from=&to=&granularity=   windows of scope ("video", id) + totals
    GET /api/v1/qoe/overview?from=&to=&granularity=            scope ("global", "all") + one block per device class
    GET /api/v1/videos/{video_id}/viewers/live                 concurrent viewers in the latest 10 s window
    GET /api/v1/videos/{video_id}/views?from=&to=               the video's per-view rows, newest first
    GET /api/v1/qoe/views/{view_id}                            one view's metrics (view ids contain "/")
    GET /api/v1/viewers/{viewer_id}/progress                   resume positions, most recent first

Who may read: a video's metrics and views, its owner (or an admin); the overview and the per-view rows of
any video, admins; resume positions, the viewer (profile) itself or an admin. Per-view rows name the
viewer, so none of this is public.

Ranges: ``from`` / ``to`` are ISO-8601 (``Z`` or an offset; without one, UTC) or epoch milliseconds;
``to`` defaults to now and ``from`` to one hour before ``to``. The windows returned are those whose
``window_start`` lies in ``[from, to)``. ``granularity`` is 10 or 60 seconds (default 60). A range of more
than 7 days, ``to <= from`` or another granularity is a 400 naming each problem.

Totals are recomputed from the stored integer sums of the windows (Σ numerator ÷ Σ denominator, exact
fractions rounded once, as ``common.qoe.windows.finalise`` does per window), never averages of the
windows' percentages. What cannot be recombined from ``qoe_windows`` is left out of the totals and
explained in ``totals.notes`` (percentiles, distinct-session counts, and the bitrate / rendition-time sums
that the table does not store). Metric definitions: shared/QOE.md; tables: docs/qoe-tables.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Final

from aiohttp import web

from api.access import owned_video, require_principal, require_role
from api.errors import Forbidden, InvalidRequest, NotFound
from api.http import iso, parse_instant
from api.keys import catalog_key, qoe_store_key
from common.qoe.views import from_ms
from common.qoe.windows import GLOBAL, GRANULARITIES_S, Scope
from sinks.qoe import WINDOW_COLUMNS, QoeStore

DEFAULT_RANGE: Final = timedelta(hours=1)
MAX_RANGE: Final = timedelta(days=7)
DEFAULT_GRANULARITY_S: Final = 60
# The device classes of the collector (api/telemetry.py) plus "unknown" for sessions that sent none.
DEVICE_CLASSES: Final = ("desktop", "mobile", "tablet", "tv", "console", "other", "unknown")
LIVE_GRANULARITY_S: Final = 10
LIVE_LOOKBACK: Final = timedelta(minutes=1)
# common.cassandra.run returns the first page of a result only (the driver's 5000 rows): long ranges of short
# windows are read in slices of at most this many windows, so no read can be cut short.
MAX_WINDOWS_PER_READ: Final = 4000

# Integer columns of qoe_windows that add up across windows (the inputs of every recombined ratio).
SUMMED: Final = (
    "views_started",
    "events",
    "bytes_served",
    "views",
    "started_views",
    "playback_failures",
    "video_startup_failures",
    "exits_before_video_start",
    "watch_time_ms",
    "rebuffer_ms",
    "rebuffer_count",
    "vst_count",
)
TOTALS_NOTES: Final = {
    "vst_median_ms": "percentiles cannot be combined across windows: see each window's value",
    "vst_p95_ms": "percentiles cannot be combined across windows: see each window's value",
    "concurrent_viewers": (
        "distinct sessions per window do not add up across windows: peak_concurrent_viewers is the largest "
        "window's value"
    ),
    "average_bitrate_kbps": (
        "qoe_windows stores the ratio but not its sums (bitrate x time, time), so it cannot be recombined "
        "exactly: see each window's value"
    ),
    "quality_distribution": (
        "qoe_windows stores the shares but not the played time per rendition, so they cannot be recombined "
        "exactly: see each window's value"
    ),
    "vst_mean_ms": "Σ(window mean x window count) ÷ Σ count; each window's startup-time sum is whole ms",
}

# --- parameters -------------------------------------------------------------------------------------------


def parse_range(query: Mapping[str, str], now: datetime | None = None) -> tuple[datetime, datetime, int]:
    """``(from, to, granularity_s)`` of a request; InvalidRequest naming every problem."""
    problems: dict[str, str] = {}
    instants: dict[str, datetime] = {}
    for name in ("from", "to"):
        raw = query.get(name)
        if raw is None or raw == "":
            continue
        try:
            instants[name] = parse_instant(raw)
        except (ValueError, OverflowError):
            problems[name] = "must be an ISO-8601 time (e.g. 2026-01-01T00:00:00Z) or epoch milliseconds"
    granularity = DEFAULT_GRANULARITY_S
    raw_granularity = query.get("granularity")
    if raw_granularity:
        if raw_granularity.strip() in {str(g) for g in GRANULARITIES_S}:
            granularity = int(raw_granularity)
        else:
            problems["granularity"] = f"must be one of {', '.join(str(g) for g in GRANULARITIES_S)} (seconds)"
    if problems:
        raise InvalidRequest("invalid query", problems)
    end = instants.get("to") or now or datetime.now(UTC)
    start = instants.get("from") or end - DEFAULT_RANGE
    if end <= start:
        raise InvalidRequest("invalid query", {"to": "must be after from"})
    if end - start > MAX_RANGE:
        raise InvalidRequest("invalid query", {"to": f"the range is at most {MAX_RANGE.days} days"})
    return start, end, granularity


# --- reads ------------------------------------------------------------------------------------------------


async def read_windows(store: QoeStore, scope: Scope, granularity_s: int, start: datetime, end: datetime) -> list[Any]:
    """The stored windows of ``scope`` whose start is in ``[start, end)``, oldest first."""
    step = timedelta(seconds=granularity_s * MAX_WINDOWS_PER_READ)
    slices = []
    at = start
    while at < end:
        slices.append((at, min(at + step, end)))
        at += step
    results = await asyncio.gather(*(store.windows(scope, granularity_s, a, b) for a, b in slices))
    return [row for rows in results for row in rows]


# --- JSON -------------------------------------------------------------------------------------------------


def window_json(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "window_start": iso(row.window_start),
        "window_end": iso(row.window_end),
        "final": bool(row.final),
    }
    for column in WINDOW_COLUMNS:
        value = getattr(row, column)
        if column == "quality_distribution":
            value = dict(sorted((value or {}).items()))
        out[column] = value
    out["computed_at"] = iso(row.computed_at)
    return out


def _ratio(numerator: int, denominator: int, scale: int = 1) -> float | None:
    return None if denominator <= 0 else float(Fraction(numerator * scale, denominator))


def totals(rows: Sequence[Any]) -> dict[str, Any]:
    """The range's metrics from the windows' integer sums: Σ numerator ÷ Σ denominator."""
    sums = {column: sum(getattr(row, column) or 0 for row in rows) for column in SUMMED}
    views, watch = sums["views"], sums["watch_time_ms"]
    # Startup times are whole milliseconds, so each window's sum is an integer that mean x count recovers.
    vst_sum = sum(round(row.vst_mean_ms * row.vst_count) for row in rows if row.vst_count and row.vst_mean_ms)
    return {
        "windows": len(rows),
        "all_final": all(row.final for row in rows),
        **sums,
        "peak_concurrent_viewers": max((row.concurrent_viewers or 0 for row in rows), default=0),
        "playback_failure_percentage": _ratio(sums["playback_failures"], views, 100),
        "video_startup_failure_percentage": _ratio(sums["video_startup_failures"], views, 100),
        "exits_before_video_start_percentage": _ratio(sums["exits_before_video_start"], views, 100),
        "rebuffer_percentage": _ratio(sums["rebuffer_ms"], watch, 100),
        "rebuffer_frequency_per_min": _ratio(sums["rebuffer_count"], watch, 60_000),
        "vst_mean_ms": _ratio(vst_sum, sums["vst_count"]),
        "notes": TOTALS_NOTES,
    }


def range_json(start: datetime, end: datetime, granularity_s: int) -> dict[str, Any]:
    return {"granularity_s": granularity_s, "from": iso(start), "to": iso(end)}


# --- handlers ---------------------------------------------------------------------------------------------


async def analysed_video(request: web.Request) -> str:
    """The ``{video_id}`` of the path, if the caller may read its metrics: its owner or an admin (admins also
    for ids with no catalogue row, such as a load test's)."""
    video_id = request.match_info["video_id"]
    principal = require_principal(request)
    if not principal.is_admin:
        await owned_video(request, video_id, principal)
    return video_id


async def video_qoe(request: web.Request) -> web.Response:
    """`GET /api/v1/videos/{video_id}/qoe`."""
    video_id = await analysed_video(request)
    start, end, granularity = parse_range(request.query)
    rows = await read_windows(request.app[qoe_store_key], ("video", video_id), granularity, start, end)
    return web.json_response(
        {
            "video_id": video_id,
            **range_json(start, end, granularity),
            "windows": [window_json(row) for row in rows],
            "totals": totals(rows),
        }
    )


async def overview(request: web.Request) -> web.Response:
    """`GET /api/v1/qoe/overview`: the global scope, and the same per device class."""
    require_role(request, "admin")
    start, end, granularity = parse_range(request.query)
    store = request.app[qoe_store_key]
    scopes: list[Scope] = [GLOBAL, *(("device", name) for name in DEVICE_CLASSES)]
    results = await asyncio.gather(*(read_windows(store, scope, granularity, start, end) for scope in scopes))
    everything, *per_device = results
    return web.json_response(
        {
            **range_json(start, end, granularity),
            "windows": [window_json(row) for row in everything],
            "totals": totals(everything),
            "devices": {
                name: {"windows": [window_json(row) for row in rows], "totals": totals(rows)}
                for name, rows in zip(DEVICE_CLASSES, per_device, strict=True)
            },
        }
    )


async def live_viewers(request: web.Request) -> web.Response:
    """`GET /api/v1/videos/{video_id}/viewers/live`: the latest 10 s window that started in the last minute
    and no later than now (so ``window_end <= now + 10 s``; a client clock ahead of ours is not "now")."""
    video_id = await analysed_video(request)
    now = datetime.now(UTC)
    rows = await request.app[qoe_store_key].windows(
        ("video", video_id), LIVE_GRANULARITY_S, now - LIVE_LOOKBACK, now + timedelta(milliseconds=1)
    )
    latest = rows[-1] if rows else None
    return web.json_response(
        {
            "video_id": video_id,
            "concurrent_viewers": (latest.concurrent_viewers or 0) if latest else 0,
            "window_start": iso(latest.window_start) if latest else None,
            "window_end": iso(latest.window_end) if latest else None,
            "final": bool(latest.final) if latest else None,
            "as_of": iso(now),
        }
    )


async def view(request: web.Request) -> web.Response:
    """`GET /api/v1/qoe/views/{view_id}` (the id is ``<session_id>/<source>/<seq>``)."""
    view_id = request.match_info["view_id"]
    principal = require_principal(request)
    metrics = await request.app[qoe_store_key].view(view_id)
    if metrics is None:
        raise NotFound("unknown view", {"view_id": view_id})
    if not principal.is_admin:
        video = await request.app[catalog_key].get_video(metrics.get("video_id") or "")
        if video is None or video.owner_id != principal.account_id:
            raise NotFound("unknown view", {"view_id": view_id})
    times = {
        "started_at": iso(from_ms(metrics["start_ts_ms"])),
        "ended_at": iso(from_ms(metrics["end_ts_ms"])),
        "closed_at": iso(from_ms(metrics["close_ts_ms"])),
    }
    return web.json_response({**metrics, **times})


VIEWS_LIMIT_MAX = 1000


async def video_views(request: web.Request) -> web.Response:
    """`GET /api/v1/videos/{video_id}/views?from=&to=&session_id=&limit=`: per-view rows, newest first."""
    video_id = await analysed_video(request)
    start, end, _granularity = parse_range(request.query)
    raw_limit = request.query.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= VIEWS_LIMIT_MAX:
        raise InvalidRequest("invalid query", {"limit": f"must be an integer from 1 to {VIEWS_LIMIT_MAX}"})
    rows = await request.app[qoe_store_key].views_of_video(video_id, start, end)
    session_id = request.query.get("session_id")
    views = [view_row_json(row) for row in rows if session_id is None or row.session_id == session_id]
    return web.json_response(
        {"video_id": video_id, "from": iso(start), "to": iso(end), "views": views[: int(raw_limit)]}
    )


def view_row_json(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {k: iso(v) if isinstance(v, datetime) else v for k, v in row._asdict().items()}
    out["day"] = str(row.day)
    out["rendition_ms"] = dict(row.rendition_ms or {})  # the driver's own map type is not JSON
    return out


async def viewer_progress(request: web.Request) -> web.Response:
    """`GET /api/v1/viewers/{viewer_id}/progress`: one entry per video, the most recently watched first."""
    principal = require_principal(request)
    if not principal.is_admin and request.match_info["viewer_id"] not in (principal.viewer_id, principal.account_id):
        raise Forbidden("only the viewer may read its resume positions")
    viewer_id = request.match_info["viewer_id"]
    rows = await request.app[qoe_store_key].progress(viewer_id)
    rows = sorted(rows, key=lambda r: (r.updated_at is not None, r.updated_at or datetime.min), reverse=True)
    progress = [{"video_id": r.video_id, "position_s": r.position_s, "updated_at": iso(r.updated_at)} for r in rows]
    return web.json_response({"viewer_id": viewer_id, "progress": progress})
