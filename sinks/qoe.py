"""Cassandra writes and reads of QoE: per-view rows, window inputs, window rows, watch progress.

Exactness under replay (DESIGN.md "Guarantees"): the agent writes these rows *before* it stores the session
state that produced them, every key is deterministic (view id, session id, window start) and every value is
an absolute number recomputed from state — never an increment. A replay after a crash therefore rewrites
identical rows. Window rows are recomputed from their inputs (the views that closed in the window, each
session's tally in it) by `recompute_window`, as often as needed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any

from cassandra.cluster import Session
from cassandra.query import BatchStatement, BatchType

from common.qoe.views import ViewMetrics, from_ms
from common.qoe.windows import (
    GRANULARITIES_S,
    Scope,
    WindowRow,
    add_view,
    finalise,
    new_window,
    new_windows,
    view_contributions,
)
from sinks.catalog import run

WINDOW_COLUMNS = (
    "views_started concurrent_viewers events bytes_served views started_views playback_failures "
    "video_startup_failures exits_before_video_start playback_failure_percentage video_startup_failure_percentage "
    "exits_before_video_start_percentage watch_time_ms rebuffer_ms rebuffer_count rebuffer_percentage "
    "rebuffer_frequency_per_min average_bitrate_kbps vst_count vst_median_ms vst_p95_ms vst_mean_ms "
    "quality_distribution"
).split()


# Cassandra warns about (and logs) an unlogged batch across more partitions than this
# (unlogged_batch_across_partitions_warn_threshold, default 10).
BATCH_PARTITIONS = 10


def window_start_ms(ts_ms: int, granularity_s: int) -> int:
    g = granularity_s * 1000
    return ts_ms - ts_ms % g


def tally_key(scope: Sequence[str], granularity_s: int, start_ms: int) -> str:
    """The key of a session's count in one window: "scope|scope_id|granularity_s|start_ms"."""
    return f"{scope[0]}|{scope[1]}|{granularity_s}|{start_ms}"


def split_tally_key(key: str) -> tuple[str, str, int, int]:
    """``tally_key``'s parts again (a scope id, sent by players, may hold a "|")."""
    scope_kind, rest = key.split("|", 1)
    scope_id, granularity, start_ms = rest.rsplit("|", 2)
    return scope_kind, scope_id, int(granularity), int(start_ms)


def day_of(ts: datetime) -> date:
    return ts.astimezone(UTC).date()


class QoeStore:
    def __init__(self, session: Session) -> None:
        self.session = session
        prepare = session.prepare
        self._view = prepare(
            "INSERT INTO qoe_views (day, video_id, view_id, session_id, user_id, profile_id, device_class, source,"
            " started_at, ended_at, close_reason, video_startup_time_ms, player_startup_time_ms, watch_time_ms,"
            " played_ms, rebuffer_count, rebuffer_ms, rebuffer_percentage, rebuffer_frequency_per_min,"
            " playback_failure, video_startup_failure, exit_before_video_start, error_code, average_bitrate_kbps,"
            " upscale_percentage, max_upscale_percentage, startup_time_score, smoothness_score, video_quality_score,"
            " playback_success_score, bytes_served, watched_position_s, rendition_ms)"
            " VALUES (" + ", ".join("?" * 33) + ")"
        )
        self._view_by_id = prepare(
            "INSERT INTO qoe_views_by_id (view_id, day, video_id, started_at, metrics_json) VALUES (?, ?, ?, ?, ?)"
        )
        self._get_view = prepare("SELECT metrics_json FROM qoe_views_by_id WHERE view_id = ?")
        self._views_range = prepare(
            "SELECT * FROM qoe_views WHERE day = ? AND video_id = ? AND started_at >= ? AND started_at < ?"
        )
        self._window_view = prepare(
            "INSERT INTO qoe_window_views (scope, scope_id, granularity_s, window_start, view_id, metrics_json)"
            " VALUES (?, ?, ?, ?, ?, ?)"
        )
        self._window_session = prepare(
            "INSERT INTO qoe_window_sessions (scope, scope_id, granularity_s, window_start, session_id, events,"
            " bytes, views_started) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._index = prepare(
            "INSERT INTO qoe_window_index (granularity_s, window_start, scope, scope_id) VALUES (?, ?, ?, ?)"
        )
        self._scopes_in = prepare(
            "SELECT scope, scope_id FROM qoe_window_index WHERE granularity_s = ? AND window_start = ?"
        )
        self._views_in = prepare(
            "SELECT metrics_json FROM qoe_window_views WHERE scope = ? AND scope_id = ? AND granularity_s = ?"
            " AND window_start = ?"
        )
        self._sessions_in = prepare(
            "SELECT session_id, events, bytes, views_started FROM qoe_window_sessions WHERE scope = ? AND scope_id = ?"
            " AND granularity_s = ? AND window_start = ?"
        )
        self._window = prepare(
            "INSERT INTO qoe_windows (scope, scope_id, day, granularity_s, window_start, window_end, final, "
            + ", ".join(WINDOW_COLUMNS)
            + ", computed_at) VALUES (?, ?, ?, ?, ?, ?, ?, "
            + ", ".join("?" for _ in WINDOW_COLUMNS)
            + ", ?)"
        )
        self._windows_range = prepare(
            "SELECT * FROM qoe_windows WHERE scope = ? AND scope_id = ? AND day = ? AND granularity_s = ?"
            " AND window_start >= ? AND window_start < ?"
        )
        self._progress = prepare(
            "INSERT INTO watch_progress (viewer_id, video_id, position_s, updated_at) VALUES (?, ?, ?, ?)"
            " USING TIMESTAMP ?"
        )
        self._get_progress = prepare("SELECT video_id, position_s, updated_at FROM watch_progress WHERE viewer_id = ?")

    # --- writes from the agent ------------------------------------------------------------------

    async def write_view(self, metrics: ViewMetrics) -> None:
        """The view's own rows and its contribution to every scope's windows (by close time)."""
        started = from_ms(metrics.start_ts_ms)
        day = day_of(started)
        video = metrics.video_id or "unknown"
        text = json.dumps(metrics.to_dict(), sort_keys=True)
        writes = [
            run(
                self.session,
                self._view,
                (
                    day,
                    video,
                    metrics.view_id,
                    metrics.session_id,
                    metrics.user_id,
                    metrics.profile_id,
                    metrics.device_class,
                    metrics.source,
                    started,
                    from_ms(metrics.end_ts_ms),
                    metrics.close_reason,
                    metrics.video_startup_time_ms,
                    metrics.player_startup_time_ms,
                    metrics.watch_time_ms,
                    metrics.played_ms,
                    metrics.rebuffer_count,
                    metrics.rebuffer_ms,
                    metrics.rebuffer_percentage,
                    metrics.rebuffer_frequency_per_min,
                    metrics.playback_failure,
                    metrics.video_startup_failure,
                    metrics.exit_before_video_start,
                    metrics.error_code,
                    metrics.average_bitrate_kbps,
                    metrics.upscale_percentage,
                    metrics.max_upscale_percentage,
                    metrics.startup_time_score,
                    metrics.smoothness_score,
                    metrics.video_quality_score,
                    metrics.playback_success_score,
                    metrics.bytes_served,
                    metrics.watched_position_s,
                    dict(metrics.rendition_ms),
                ),
            ),  # fmt: skip
            run(self.session, self._view_by_id, (metrics.view_id, day, video, started, text)),
        ]
        scopes = {scope for scope, _part in view_contributions(metrics)}
        for scope in scopes:
            for granularity in GRANULARITIES_S:
                start = from_ms(window_start_ms(metrics.close_ts_ms, granularity))
                writes.append(run(self.session, self._window_view, (*scope, granularity, start, metrics.view_id, text)))
                writes.append(run(self.session, self._index, (granularity, start, *scope)))
        await asyncio.gather(*writes)

    async def write_session_tallies(
        self, session_id: str, tallies: Mapping[str, Sequence[int]], indexed: AbstractSet[str] = frozenset()
    ) -> None:
        """A session's absolute counts per (scope, window): `key` is "scope|scope_id|granularity_s|start_ms".

        ``indexed`` names the keys whose window is already in the window index (the caller wrote it with an
        earlier count that is in its stored state), so only the count is written for them.

        UNLOGGED batches instead of a request per row: an event touches about eight windows, and a request per
        row cost the agent's process (driver serialisation, futures, callbacks) about 4x the CPU of batching
        them (measured: ~1 ms vs ~3.5-4 ms per event). Unlogged because atomicity is not needed: every row is
        absolute and rewritten on replay. At most BATCH_PARTITIONS partitions per batch, Cassandra's default
        threshold for warning about (and logging) a batch across partitions."""
        by_partition: dict[tuple[Any, ...], list[tuple[Any, tuple[Any, ...]]]] = {}
        for key, (events, byte_count, views_started) in tallies.items():
            scope, scope_id, g, start_ms = split_tally_key(key)
            start = from_ms(start_ms)
            row = (scope, scope_id, g, start, session_id, events, byte_count, views_started)
            by_partition.setdefault(("session", scope, scope_id, g, start), []).append((self._window_session, row))
            if key not in indexed:
                by_partition.setdefault(("index", g, start), []).append((self._index, (g, start, scope, scope_id)))
        partitions = list(by_partition.values())
        batches = []
        for first in range(0, len(partitions), BATCH_PARTITIONS):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for statements in partitions[first : first + BATCH_PARTITIONS]:
                for statement, values in statements:
                    batch.add(statement, values)
            batches.append(run(self.session, batch))
        await asyncio.gather(*batches)

    async def write_progress(self, viewer_id: str, video_id: str, position_s: float, at: datetime) -> None:
        # The event time is the cell timestamp: an older heartbeat replayed later never wins.
        micros = int(at.timestamp() * 1_000_000)
        await run(self.session, self._progress, (viewer_id, video_id, position_s, at, micros))

    # --- window rows ----------------------------------------------------------------------------

    async def scopes_in_window(self, granularity_s: int, start: datetime) -> list[Scope]:
        rows = await run(self.session, self._scopes_in, (granularity_s, start))
        return [(row.scope, row.scope_id) for row in rows]

    async def recompute_window(self, scope: Scope, granularity_s: int, start: datetime, final: bool) -> WindowRow:
        """The window's row from its inputs, written under its deterministic key."""
        views, sessions = await asyncio.gather(
            run(self.session, self._views_in, (*scope, granularity_s, start)),
            run(self.session, self._sessions_in, (*scope, granularity_s, start)),
        )
        row = window_row(scope, granularity_s, start, [json.loads(v.metrics_json) for v in views], sessions)
        values = asdict(row)
        await run(
            self.session,
            self._window,
            (
                row.scope, row.scope_id, day_of(row.window_start), row.granularity_s, row.window_start,
                row.window_end, final, *(values[c] for c in WINDOW_COLUMNS), datetime.now(UTC),
            ),
        )  # fmt: skip
        return row

    # --- reads for the API ----------------------------------------------------------------------

    async def windows(self, scope: Scope, granularity_s: int, start: datetime, end: datetime) -> list[Any]:
        days = []
        day = day_of(start)
        while day <= day_of(end):
            days.append(day)
            day = date.fromordinal(day.toordinal() + 1)
        results = await asyncio.gather(
            *(run(self.session, self._windows_range, (*scope, d, granularity_s, start, end)) for d in days)
        )
        return sorted((row for rows in results for row in rows), key=lambda r: r.window_start)

    async def views_of_video(self, video_id: str, start: datetime, end: datetime) -> list[Any]:
        """The video's per-view rows that started in ``[start, end)``, newest first (one read per day)."""
        days = [date.fromordinal(d) for d in range(day_of(start).toordinal(), day_of(end).toordinal() + 1)]
        results = await asyncio.gather(*(run(self.session, self._views_range, (d, video_id, start, end)) for d in days))
        return sorted((row for rows in results for row in rows), key=lambda r: r.started_at, reverse=True)

    async def view(self, view_id: str) -> dict[str, Any] | None:
        rows = await run(self.session, self._get_view, (view_id,))
        return json.loads(rows[0].metrics_json) if rows else None

    async def progress(self, viewer_id: str) -> list[Any]:
        return await run(self.session, self._get_progress, (viewer_id,))


def window_row(
    scope: Scope, granularity_s: int, start: datetime, views: Iterable[Mapping[str, Any]], sessions: Iterable[Any]
) -> WindowRow:
    """Rebuild one window from stored inputs with the same code that defines the metrics (common/qoe)."""
    state = new_windows(granularities_s=[granularity_s])
    start_ms = int(start.timestamp() * 1000)
    key = f"{granularity_s * 1000}|{start_ms}|{scope[0]}|{scope[1]}"
    for metrics in views:
        add_view(state, metrics, scopes=[scope])
    window = state["windows"].get(key)
    if window is None:
        window = state["windows"][key] = new_window(scope, granularity_s * 1000, start_ms)
    for tally in sessions:
        window["events"] += tally.events
        window["bytes"] += tally.bytes
        window["views_started"] += tally.views_started
        window["sessions"][tally.session_id] = tally.events
    return finalise(window)
