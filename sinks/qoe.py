"""Cassandra writes and reads of QoE: per-view rows, per-partition window partials, window rows, watch progress.

Exactness under replay (DESIGN.md "Guarantees"): every key is deterministic (view id; window and source
partition; window) and every value absolute, never an increment, so writing a row again writes the same row.
The QoE worker (processors/telemetry.py) aggregates each Kafka partition in memory and writes, per flush, each
changed window's *partial* for that partition (``qoe_window_partials``, tagged with the offset it includes) and
then the window's row (``qoe_windows``) as the sum of all of its partials, one read of a single Cassandra
partition: partials are integer sums and mergeable sketches, so the row is exact however the partitions are
spread over workers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any

import orjson
from cassandra.cluster import Session
from cassandra.query import BatchStatement, BatchType, PreparedStatement

from common.cassandra import run
from common.qoe.views import ViewMetrics, from_ms
from common.qoe.windows import Scope, WindowRow, finalise_partials

WINDOW_COLUMNS = (
    "views_started concurrent_viewers events bytes_served views started_views playback_failures "
    "video_startup_failures exits_before_video_start playback_failure_percentage video_startup_failure_percentage "
    "exits_before_video_start_percentage watch_time_ms rebuffer_ms rebuffer_count rebuffer_percentage "
    "rebuffer_frequency_per_min average_bitrate_kbps vst_count vst_median_ms vst_p95_ms vst_mean_ms "
    "quality_distribution"
).split()


WindowKey = tuple[str, str, int, int]  # scope, scope_id, granularity_s, window start (epoch ms)
Row = tuple[PreparedStatement, tuple[Any, ...]]
# Rows per UNLOGGED batch, and about how many bytes: under Cassandra's batch_size_fail_threshold (50 KiB); the
# local node's warn thresholds are raised to match (infra/conf/cassandra.yaml).
BATCH_ROWS = 24
BATCH_BYTES = 32 * 1024
# Statements in flight at once per call: a flush's writes all go out together (the driver multiplexes thousands
# of requests per connection), so a flush costs about one round trip however many rows it writes.
CONCURRENCY = 2048


def window_start_ms(ts_ms: int, granularity_s: int) -> int:
    g = granularity_s * 1000
    return ts_ms - ts_ms % g


def now_us() -> int:
    return time.time_ns() // 1000


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
        self._partial = prepare(
            "INSERT INTO qoe_window_partials (scope, scope_id, granularity_s, window_start, source_partition,"
            " included_offset, aggregate) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self._partial_of = prepare(
            "SELECT included_offset, aggregate FROM qoe_window_partials WHERE scope = ? AND scope_id = ?"
            " AND granularity_s = ? AND window_start = ? AND source_partition = ?"
        )
        self._partials_of = prepare(
            "SELECT aggregate FROM qoe_window_partials WHERE scope = ? AND scope_id = ? AND granularity_s = ?"
            " AND window_start = ?"
        )
        self._window = prepare(
            "INSERT INTO qoe_windows (scope, scope_id, day, granularity_s, window_start, window_end, final, "
            + ", ".join(WINDOW_COLUMNS)
            + ", computed_at) VALUES (?, ?, ?, ?, ?, ?, ?, "
            + ", ".join("?" for _ in WINDOW_COLUMNS)
            + ", ?) USING TIMESTAMP ?"
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

    def view_rows(self, metrics: ViewMetrics) -> list[Row]:
        """The view's row by video and day, and by id (its windows get it through the partials)."""
        started = from_ms(metrics.start_ts_ms)
        day = day_of(started)
        video = metrics.video_id or "unknown"
        text = json.dumps(metrics.to_dict(), sort_keys=True)
        return [
            (
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
            (self._view_by_id, (metrics.view_id, day, video, started, text)),
        ]

    def partial_rows(self, partition: int, partials: Iterable[tuple[WindowKey, bytes, int]]) -> list[Row]:
        """This Kafka partition's partial of each window (JSON from ``aggregate_json``), tagged with the offset it
        includes (every event below it)."""
        return [
            (self._partial, (scope, scope_id, g, from_ms(start_ms), partition, tag, aggregate.decode()))
            for (scope, scope_id, g, start_ms), aggregate, tag in partials
        ]

    def window_row(
        self, key: WindowKey, final: bool, partials: Iterable[Mapping[str, Any]], as_of_us: int
    ) -> tuple[WindowRow, Row]:
        """The window's row: the sum of its partials from every Kafka partition, under its deterministic key.

        ``as_of_us``, the cell timestamp, is when the partials were read (or known): two workers that each wrote
        their partial and then read all of them may write their rows in either order, and the row of the later
        read, which saw both partials, must win."""
        scope, scope_id, g, start_ms = key
        row = finalise_partials((scope, scope_id), g, start_ms, partials)
        values = asdict(row)
        return row, (
            self._window,
            (
                row.scope, row.scope_id, day_of(row.window_start), row.granularity_s, row.window_start,
                row.window_end, final, *(values[c] for c in WINDOW_COLUMNS), datetime.now(UTC), as_of_us,
            ),
        )  # fmt: skip

    def progress_row(self, viewer_id: str, video_id: str, position_s: float, at: datetime) -> Row:
        # The event time is the cell timestamp: an older heartbeat replayed later never wins.
        micros = int(at.timestamp() * 1_000_000)
        return self._progress, (viewer_id, video_id, position_s, at, micros)

    async def read_partials(
        self, partition: int, keys: Iterable[WindowKey]
    ) -> dict[WindowKey, tuple[dict[str, Any], int]]:
        """The stored partials of this Kafka partition for ``keys`` (absent ones are left out), with their tags."""
        keys = list(keys)

        async def read(key: WindowKey) -> list[Any]:
            scope, scope_id, g, start_ms = key
            return await run(self.session, self._partial_of, (scope, scope_id, g, from_ms(start_ms), partition))

        found = {}
        for key, rows in zip(keys, await bounded(read(key) for key in keys), strict=True):
            if rows:
                found[key] = (orjson.loads(rows[0].aggregate), int(rows[0].included_offset))
        return found

    async def read_window_partials(
        self, keys: Iterable[WindowKey]
    ) -> dict[WindowKey, tuple[list[dict[str, Any]], int]]:
        """Every stored partial of each window (all Kafka partitions), and when the read began (µs)."""
        keys = list(keys)

        async def read(key: WindowKey) -> tuple[list[Any], int]:
            scope, scope_id, g, start_ms = key
            began = now_us()
            return await run(self.session, self._partials_of, (scope, scope_id, g, from_ms(start_ms))), began

        results = await bounded(read(key) for key in keys)
        return {
            key: ([orjson.loads(r.aggregate) for r in rows], began)
            for key, (rows, began) in zip(keys, results, strict=True)
        }

    async def write_all(self, rows: Iterable[Row]) -> None:
        """Write independent rows (idempotent: absolute values under deterministic keys) in UNLOGGED batches of
        at most BATCH_ROWS rows and about BATCH_BYTES, all batches at once. Unlogged because no atomicity is
        needed; batches because one request per row costs the writer's process (driver serialisation, futures,
        callbacks) several times the CPU of the same rows in a few requests (bench/qoe_backlog.py)."""
        batches: list[BatchStatement] = []
        batch, size = None, 0
        for statement, values in rows:
            row_size = sum(len(v) for v in values if isinstance(v, str | bytes)) + 64
            if batch is None or len(batch) >= BATCH_ROWS or size + row_size > BATCH_BYTES:
                batch, size = BatchStatement(batch_type=BatchType.UNLOGGED), 0
                batches.append(batch)
            batch.add(statement, values)
            size += row_size
        await bounded(run(self.session, b) for b in batches)

    async def write_view(self, metrics: ViewMetrics) -> None:
        await self.write_all(self.view_rows(metrics))

    async def write_partials(self, partition: int, partials: Iterable[tuple[WindowKey, bytes, int]]) -> None:
        await self.write_all(self.partial_rows(partition, partials))

    async def write_window(
        self, key: WindowKey, final: bool, partials: Iterable[Mapping[str, Any]] | None = None
    ) -> WindowRow:
        """The window's row; its partials are read unless the caller knows them all (``partials``)."""
        as_of = now_us()
        if partials is None:
            partials, as_of = (await self.read_window_partials([key]))[key]
        row, statement = self.window_row(key, final, partials, as_of)
        await self.write_all([statement])
        return row

    async def write_progress(self, viewer_id: str, video_id: str, position_s: float, at: datetime) -> None:
        await self.write_all([self.progress_row(viewer_id, video_id, position_s, at)])

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


def aggregate_json(partial: Mapping[str, Any]) -> bytes:
    """A partial as stored (sketch bin keys are strings already, so it round-trips exactly)."""
    return orjson.dumps(partial)


async def bounded(calls: Iterable[Any], limit: int = CONCURRENCY) -> list[Any]:
    """Await the coroutines with at most ``limit`` in flight; results in order."""
    semaphore = asyncio.Semaphore(limit)

    async def one(call: Any) -> Any:
        async with semaphore:
            return await call

    return await asyncio.gather(*(one(call) for call in calls))
