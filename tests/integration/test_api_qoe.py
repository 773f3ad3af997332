"""The analysts' QoE API against the real Cassandra, in a fresh keyspace holding only this test's rows.

Simulated sessions (tests/qoe_simulate.py, whose ground truth the simulator booked itself) go through
one partition's aggregate (common/qoe/partition.py) and the same QoeStore writes the worker makes (views,
window partials, window rows). Every number the API returns must equal the offline recount of the truth:
window values as
stored, totals as Σ numerator ÷ Σ denominator over the recount's integer sums, percentiles within the
sketch's 1 %. One data set lies in the last hour, one straddles midnight UTC (two day partitions)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, date, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent_with_args

from api.app import init_app
from api.keys import catalog_key
from common.cassandra import cassandra_session
from common.qoe.partition import PartitionAggregate
from common.qoe.views import ViewMetrics, from_ms, to_ms
from common.qoe.windows import GRANULARITIES_S, new_partial
from common.settings import Settings
from sinks.migrate import migrate
from sinks.qoe import QoeStore, aggregate_json, window_start_ms
from tests import qoe_simulate as simulate
from tests.auth_tools import authorize, sign_up

pytestmark = pytest.mark.integration

MIDNIGHT_MS = simulate.DEFAULT_START_MS  # 2026-01-01T00:00:00Z
DENSE_DAY = date(2025, 6, 1)
DEVICES = ("desktop", "mobile", "tablet", "tv", "console", "other", "unknown")


@dataclasses.dataclass
class DataSet:
    sessions: list[simulate.Session]
    metrics: list[ViewMetrics]
    expected: dict[simulate.WindowKey, simulate.ExpectedWindow]
    first_ms: int
    last_ms: int


@dataclasses.dataclass
class QoeData:
    settings: Settings
    session: Session
    store: QoeStore
    recent: DataSet
    midnight: DataSet


def pct(num: int, den: int) -> float | None:
    return None if den == 0 else float(Fraction(num * 100, den))


def iso_z(ms: int) -> str:
    return from_ms(ms).isoformat().replace("+00:00", "Z")


async def load(store: QoeStore, sessions: list[simulate.Session], now_ms: int) -> DataSet:
    """Write what the QoE worker writes for these sessions: their deliveries through one partition's aggregate
    (common/qoe/partition.py), then one flush's partials, views and progress, and every window's row."""
    aggregate = PartitionAggregate(0)
    for offset, delivery in enumerate(simulate.deliveries(sessions, 5, duplicate_rate=0.1)):
        aggregate.apply(offset, delivery.event)
    aggregate.close_quiet(now_ms + 3_600_000, 0)  # the end of input: every session still open expires
    for key in aggregate.unbased():
        aggregate.add_base(key, None)
    flush = aggregate.take_flush(now_ms=now_ms)
    await store.write_partials(
        0, [(key, aggregate_json(partial), tag) for key, (partial, tag) in flush.partials.items()]
    )
    for m in flush.views:
        await store.write_view(m)
    limit = asyncio.Semaphore(32)

    async def write_row(key: tuple[str, str, int, int]) -> None:
        async with limit:
            await store.write_window(key, final=key[3] + key[2] * 1000 + 60_000 <= now_ms)

    touched = set(flush.partials)
    await asyncio.gather(*(write_row(key) for key in touched))
    metrics = flush.views
    expected = simulate.recount(sessions)
    assert set(expected) == touched, "the recount and the written windows cover the same keys"
    first = min(key[3] for key in expected)
    last = max(key[3] + key[2] * 1000 for key in expected)
    return DataSet(sessions, metrics, expected, first, last)


@pytest.fixture(scope="module")
async def qoe_data(live_servers: Settings) -> AsyncIterator[QoeData]:
    keyspace = f"test_api_qoe_{uuid.uuid4().hex[:10]}"
    settings = dataclasses.replace(
        live_servers, cassandra=dataclasses.replace(live_servers.cassandra, keyspace=keyspace)
    )
    await asyncio.to_thread(migrate, settings.cassandra)
    session = await asyncio.to_thread(cassandra_session, settings.cassandra)
    try:
        store = await asyncio.to_thread(QoeStore, session)
        now_ms = to_ms(datetime.now(UTC))
        recent = await load(store, simulate.generate(31, 14, start_ms=now_ms - 40 * 60_000, n_videos=3), now_ms)
        midnight = await load(store, simulate.generate(32, 10, start_ms=MIDNIGHT_MS - 150_000, n_videos=3), now_ms)
        assert recent.last_ms < now_ms and midnight.first_ms < MIDNIGHT_MS < midnight.last_ms
        yield QoeData(settings, session, store, recent, midnight)
    finally:
        await asyncio.to_thread(session.execute, f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        await asyncio.to_thread(session.cluster.shutdown)


@pytest.fixture
async def client(aiohttp_client: Any, qoe_data: QoeData) -> TestClient[Any, Any]:
    made: TestClient[Any, Any] = await aiohttp_client(await init_app(qoe_data.settings))
    await authorize(made, role="admin")  # analysts' reads name viewers: admins read every video's
    return made


@pytest.fixture
async def anonymous(aiohttp_client: Any, qoe_data: QoeData) -> TestClient[Any, Any]:
    made: TestClient[Any, Any] = await aiohttp_client(await init_app(qoe_data.settings))
    return made


async def get_json(
    client: TestClient[Any, Any], path: str, params: dict[str, Any] | None = None, status: int = 200
) -> Any:
    async with client.get(path, params=params) as reply:
        body = await reply.json()
        assert reply.status == status, body
        return body


# --- expected values, computed from the simulator's truth ------------------------------------------------


def expected_windows(
    data: DataSet, scope: str, scope_id: str, g: int, start_ms: int, end_ms: int
) -> list[tuple[int, simulate.ExpectedWindow]]:
    return sorted(
        (key[3], e)
        for key, e in data.expected.items()
        if key[:3] == (scope, scope_id, g) and start_ms <= key[3] < end_ms
    )


def check_window(got: dict[str, Any], start_ms: int, g: int, e: simulate.ExpectedWindow) -> None:
    assert (got["window_start"], got["window_end"]) == (iso_z(start_ms), iso_z(start_ms + g * 1000))
    want = {
        "views_started": e.views_started,
        "concurrent_viewers": len(e.sessions),
        "events": e.events,
        "bytes_served": e.bytes,
        "views": e.views,
        "started_views": e.started_views,
        "playback_failures": e.playback_failures,
        "video_startup_failures": e.startup_failures,
        "exits_before_video_start": e.ebvs,
        "watch_time_ms": e.watch_ms,
        "rebuffer_ms": e.rebuffer_ms,
        "rebuffer_count": e.rebuffer_count,
        "vst_count": len(e.vst),
        "playback_failure_percentage": pct(e.playback_failures, e.views),
        "video_startup_failure_percentage": pct(e.startup_failures, e.views),
        "exits_before_video_start_percentage": pct(e.ebvs, e.views),
        "rebuffer_percentage": pct(e.rebuffer_ms, e.watch_ms),
        "rebuffer_frequency_per_min": None
        if e.watch_ms == 0
        else float(Fraction(e.rebuffer_count * 60_000, e.watch_ms)),
        "average_bitrate_kbps": (
            None if e.bitrate_time_ms == 0 else float(Fraction(e.bitrate_kbps_ms, e.bitrate_time_ms))
        ),
        "vst_mean_ms": None if not e.vst else float(Fraction(sum(e.vst), len(e.vst))),
        "quality_distribution": {
            name: float(Fraction(ms, sum(e.rendition_ms.values()))) for name, ms in sorted(e.rendition_ms.items())
        },
    }
    assert {k: got[k] for k in want} == want, start_ms
    ordered = sorted(e.vst)
    for q, name in ((0.5, "vst_median_ms"), (0.95, "vst_p95_ms")):
        if not ordered:
            assert got[name] is None
            continue
        exact = ordered[math.floor(q * (len(ordered) - 1))]
        assert abs(got[name] - exact) <= 0.01 * exact + 1e-9, (name, got[name], exact)


def expected_totals(windows: Iterable[simulate.ExpectedWindow]) -> dict[str, Any]:
    """Σ numerator ÷ Σ denominator over the recount's integer sums (never a mean of percentages)."""
    ws = list(windows)
    views_ = sum(w.views for w in ws)
    watch = sum(w.watch_ms for w in ws)
    rebuffer_ms = sum(w.rebuffer_ms for w in ws)
    rebuffer_count = sum(w.rebuffer_count for w in ws)
    failures = sum(w.playback_failures for w in ws)
    startup_failures = sum(w.startup_failures for w in ws)
    ebvs = sum(w.ebvs for w in ws)
    vst = [v for w in ws for v in w.vst]
    return {
        "windows": len(ws),
        "views_started": sum(w.views_started for w in ws),
        "events": sum(w.events for w in ws),
        "bytes_served": sum(w.bytes for w in ws),
        "views": views_,
        "started_views": sum(w.started_views for w in ws),
        "playback_failures": failures,
        "video_startup_failures": startup_failures,
        "exits_before_video_start": ebvs,
        "watch_time_ms": watch,
        "rebuffer_ms": rebuffer_ms,
        "rebuffer_count": rebuffer_count,
        "vst_count": len(vst),
        "peak_concurrent_viewers": max((len(w.sessions) for w in ws), default=0),
        "playback_failure_percentage": pct(failures, views_),
        "video_startup_failure_percentage": pct(startup_failures, views_),
        "exits_before_video_start_percentage": pct(ebvs, views_),
        "rebuffer_percentage": pct(rebuffer_ms, watch),
        "rebuffer_frequency_per_min": None if watch == 0 else float(Fraction(rebuffer_count * 60_000, watch)),
        "vst_mean_ms": None if not vst else float(Fraction(sum(vst), len(vst))),
    }


def check_series(body: dict[str, Any], expected: list[tuple[int, simulate.ExpectedWindow]], g: int) -> None:
    assert [w["window_start"] for w in body["windows"]] == [iso_z(start) for start, _ in expected]
    for got, (start, e) in zip(body["windows"], expected, strict=True):
        check_window(got, start, g, e)
    totals = body["totals"]
    want = expected_totals(e for _, e in expected)
    assert {k: totals[k] for k in want} == want
    for name in ("vst_median_ms", "vst_p95_ms", "average_bitrate_kbps", "quality_distribution"):
        assert name not in totals and name in totals["notes"]


def busiest_video(data: DataSet) -> str:
    counts: dict[str, int] = {}
    for m in data.metrics:
        counts[m.video_id or "unknown"] = counts.get(m.video_id or "unknown", 0) + 1
    return max(sorted(counts), key=lambda v: counts[v])


# --- /videos/{id}/qoe -------------------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", [10, 60])
async def test_video_windows_and_totals_equal_the_recount(
    client: TestClient[Any, Any], qoe_data: QoeData, granularity: int
) -> None:
    data = qoe_data.recent
    video = busiest_video(data)
    start, end = data.first_ms - 60_000, data.last_ms + 60_000
    body = await get_json(
        client, f"/api/v1/videos/{video}/qoe", {"from": str(start), "to": iso_z(end), "granularity": granularity}
    )
    assert (body["video_id"], body["granularity_s"], body["from"], body["to"]) == (
        video,
        granularity,
        iso_z(start),
        iso_z(end),
    )
    expected = expected_windows(data, "video", video, granularity, start, end)
    assert len(expected) > 3
    check_series(body, expected, granularity)
    assert body["totals"]["views"] == sum(1 for m in data.metrics if m.video_id == video)
    assert body["totals"]["all_final"] is True and all(w["final"] for w in body["windows"])
    assert any(w["quality_distribution"] for w in body["windows"])


async def test_a_sub_range_holds_the_windows_that_start_in_it(client: TestClient[Any, Any], qoe_data: QoeData) -> None:
    data = qoe_data.recent
    video = busiest_video(data)
    starts = [start for start, _ in expected_windows(data, "video", video, 60, 0, 2**45)]
    assert len(starts) >= 3
    # from inside the first window (that window starts before it: excluded), to the start of the last one.
    start, end = starts[0] + 1, starts[-1]
    offset = from_ms(start).astimezone(UTC).isoformat()  # "+00:00", sent through params (encoded)
    body = await get_json(client, f"/api/v1/videos/{video}/qoe", {"from": offset, "to": str(end)})
    expected = expected_windows(data, "video", video, 60, start, end)
    assert [w["window_start"] for w in body["windows"]] == [iso_z(s) for s in starts[1:-1]]
    check_series(body, expected, 60)
    # The same with a literal "+" in the URL (it decodes to a space) and a +02:00 offset.
    local = from_ms(start).astimezone(timezone(timedelta(hours=2))).isoformat()
    async with client.get(f"/api/v1/videos/{video}/qoe?from={local}&to={end}") as reply:
        assert reply.status == 200
        assert (await reply.json())["windows"] == body["windows"]


async def test_the_default_range_is_the_last_hour_of_60s_windows(
    client: TestClient[Any, Any], qoe_data: QoeData
) -> None:
    data = qoe_data.recent
    video = busiest_video(data)
    before = to_ms(datetime.now(UTC))
    body = await get_json(client, f"/api/v1/videos/{video}/qoe")
    after = to_ms(datetime.now(UTC))
    to = to_ms(datetime.fromisoformat(body["to"]))
    assert before <= to <= after
    assert to - to_ms(datetime.fromisoformat(body["from"])) == 3_600_000
    assert body["granularity_s"] == 60
    check_series(body, expected_windows(data, "video", video, 60, to - 3_600_000, to), 60)


async def test_an_unknown_video_has_no_windows(client: TestClient[Any, Any], unique: str) -> None:
    body = await get_json(client, f"/api/v1/videos/nothing-{unique}/qoe")
    assert body["windows"] == []
    totals = body["totals"]
    assert (totals["windows"], totals["views"], totals["rebuffer_percentage"], totals["peak_concurrent_viewers"]) == (
        0,
        0,
        None,
        0,
    )


async def test_a_dense_day_of_10s_windows_is_read_whole(client: TestClient[Any, Any], qoe_data: QoeData) -> None:
    """8640 windows in one partition: more than one driver page (5000 rows)."""
    video = "dense-day"
    day_start = datetime(DENSE_DAY.year, DENSE_DAY.month, DENSE_DAY.day, tzinfo=UTC)
    insert = qoe_data.session.prepare(
        "INSERT INTO qoe_windows (scope, scope_id, day, granularity_s, window_start, window_end, final, views,"
        " watch_time_ms, rebuffer_ms, rebuffer_count, playback_failures, concurrent_viewers)"
        " VALUES ('video', ?, ?, 10, ?, ?, true, 1, ?, ?, 1, ?, ?)"
    )
    rows = []
    for i in range(8640):
        start = day_start + timedelta(seconds=10 * i)
        rows.append((video, DENSE_DAY, start, start + timedelta(seconds=10), 10_000, i % 7, int(i % 5 == 0), i % 11))
    results = await asyncio.to_thread(execute_concurrent_with_args, qoe_data.session, insert, rows, concurrency=64)
    assert all(ok for ok, _ in results)
    end = day_start + timedelta(days=1)
    body = await get_json(
        client,
        f"/api/v1/videos/{video}/qoe",
        {"from": day_start.isoformat(), "to": end.isoformat(), "granularity": 10},
    )
    assert len(body["windows"]) == 8640
    assert body["windows"][0]["window_start"] == iso_z(to_ms(day_start))
    assert body["windows"][-1]["window_end"] == iso_z(to_ms(end))
    totals = body["totals"]
    rebuffer = sum(i % 7 for i in range(8640))
    failures = sum(1 for i in range(8640) if i % 5 == 0)
    assert (totals["views"], totals["watch_time_ms"], totals["rebuffer_ms"], totals["playback_failures"]) == (
        8640,
        86_400_000,
        rebuffer,
        failures,
    )
    assert totals["rebuffer_percentage"] == pct(rebuffer, 86_400_000)
    assert totals["rebuffer_frequency_per_min"] == float(Fraction(8640 * 60_000, 86_400_000))
    assert totals["playback_failure_percentage"] == pct(failures, 8640)
    assert totals["peak_concurrent_viewers"] == 10


# --- /qoe/overview ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["recent", "midnight"])
async def test_the_overview_equals_the_recount_globally_and_per_device(
    client: TestClient[Any, Any], qoe_data: QoeData, which: str
) -> None:
    data: DataSet = getattr(qoe_data, which)
    start, end = data.first_ms, data.last_ms
    for g in GRANULARITIES_S:
        body = await get_json(
            client, "/api/v1/qoe/overview", {"from": iso_z(start), "to": iso_z(end), "granularity": g}
        )
        assert (body["granularity_s"], body["from"], body["to"]) == (g, iso_z(start), iso_z(end))
        check_series(body, expected_windows(data, "global", "all", g, start, end), g)
        assert list(body["devices"]) == list(DEVICES)
        for device in DEVICES:
            check_series(body["devices"][device], expected_windows(data, "device", device, g, start, end), g)
        used = [d for d in DEVICES if body["devices"][d]["windows"]]
        assert set(used) == {s.device_class for s in data.sessions}
        # Every view and event has one device class: the additive sums of the devices are the global ones.
        for column in ("views", "views_started", "events", "bytes_served", "watch_time_ms", "rebuffer_ms"):
            assert sum(body["devices"][d]["totals"][column] for d in DEVICES) == body["totals"][column]
        assert body["totals"]["views"] == len(data.metrics)
    if which == "midnight":
        days = {w["window_start"][:10] for w in body["windows"]}
        assert days == {"2025-12-31", "2026-01-01"}


# --- bad parameters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/videos/v-1/qoe", "/api/v1/qoe/overview"])
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"granularity": "30"}, "granularity"),
        ({"granularity": "sixty"}, "granularity"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01T00:00:00Z"}, "to"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        ({"from": "1767229200000", "to": "1767225600000"}, "to"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-08T00:00:00.001Z"}, "to"),
        ({"from": "2025-12-01T00:00:00Z"}, "to"),  # to defaults to now: more than 7 days
    ],
)
async def test_bad_parameters_are_a_400_naming_the_field(
    client: TestClient[Any, Any], path: str, params: dict[str, str], field: str
) -> None:
    body = await get_json(client, path, params, 400)
    assert body["error"] == "invalid query"
    assert field in body["detail"]


async def test_exactly_seven_days_is_allowed(client: TestClient[Any, Any]) -> None:
    body = await get_json(
        client, "/api/v1/qoe/overview", {"from": "2026-01-01T00:00:00Z", "to": "2026-01-08T00:00:00Z"}
    )
    assert (body["from"], body["to"]) == ("2026-01-01T00:00:00Z", "2026-01-08T00:00:00Z")


# --- /videos/{id}/viewers/live ----------------------------------------------------------------------------


async def test_live_viewers_are_the_latest_10s_window(
    client: TestClient[Any, Any], qoe_data: QoeData, unique: str
) -> None:
    store = qoe_data.store
    now = to_ms(datetime.now(UTC))
    current = window_start_ms(now, 10)
    video = f"live-{unique}"

    async def window_with(sessions: int, start_ms: int, scope_id: str = video) -> None:
        # One partial per Kafka partition, a session each: the row adds them up.
        partial = {**new_partial(), "events": 2, "bytes": 100, "concurrent": 1}
        for n in range(sessions):
            await store.write_partials(n, [(("video", scope_id, 10, start_ms), aggregate_json(partial), 1)])
        await store.write_window(("video", scope_id, 10, start_ms), final=False)

    await window_with(5, current - 30_000)
    await window_with(3, current)
    await window_with(9, current + 60_000)  # a client clock a minute ahead: not "now"
    body = await get_json(client, f"/api/v1/videos/{video}/viewers/live")
    assert (body["video_id"], body["concurrent_viewers"], body["window_start"], body["final"]) == (
        video,
        3,
        iso_z(current),
        False,
    )
    as_of = to_ms(datetime.fromisoformat(body["as_of"]))
    assert as_of - 60_000 <= current <= as_of

    stale = f"stale-{unique}"
    await window_with(4, current - 5 * 60_000, stale)
    body = await get_json(client, f"/api/v1/videos/{stale}/viewers/live")
    assert (body["concurrent_viewers"], body["window_start"]) == (0, None)
    body = await get_json(client, f"/api/v1/videos/never-{unique}/viewers/live")
    assert (body["concurrent_viewers"], body["window_start"]) == (0, None)


# --- /qoe/views/{view_id} ---------------------------------------------------------------------------------


async def test_a_view_is_returned_whole_by_its_id(client: TestClient[Any, Any], qoe_data: QoeData) -> None:
    checked = 0
    interesting = [
        m
        for m in qoe_data.recent.metrics
        if m.exit_before_video_start or m.video_startup_failure or m.rebuffer_count or m.close_reason == "inactive"
    ]
    for m in interesting[:6] + qoe_data.midnight.metrics[:2]:
        assert "/" in m.view_id
        body = await get_json(client, f"/api/v1/qoe/views/{m.view_id}")
        times = {k: body.pop(k) for k in ("started_at", "ended_at", "closed_at")}
        assert body == m.to_dict()
        assert times == {
            "started_at": iso_z(m.start_ts_ms),
            "ended_at": iso_z(m.end_ts_ms),
            "closed_at": iso_z(m.close_ts_ms),
        }
        checked += 1
    assert checked >= 4


async def test_an_unknown_view_is_a_404(client: TestClient[Any, Any], unique: str) -> None:
    body = await get_json(client, f"/api/v1/qoe/views/s-{unique}/SDK/0", status=404)
    assert body == {"error": "unknown view", "detail": {"view_id": f"s-{unique}/SDK/0"}}


# --- /viewers/{viewer_id}/progress ------------------------------------------------------------------------


async def test_resume_positions_latest_by_event_time(
    client: TestClient[Any, Any], qoe_data: QoeData, unique: str
) -> None:
    store = qoe_data.store
    viewer = f"profile-{unique}"
    t0 = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    await store.write_progress(viewer, "v-a", 120.5, t0 + timedelta(minutes=5))
    await store.write_progress(viewer, "v-a", 999.0, t0)  # an older heartbeat replayed later: does not win
    await store.write_progress(viewer, "v-b", 42.0, t0 + timedelta(minutes=9))
    await store.write_progress(f"other-{unique}", "v-a", 1.0, t0)
    body = await get_json(client, f"/api/v1/viewers/{viewer}/progress")
    assert body == {
        "viewer_id": viewer,
        "progress": [
            {"video_id": "v-b", "position_s": 42.0, "updated_at": "2026-01-02T12:09:00Z"},
            {"video_id": "v-a", "position_s": 120.5, "updated_at": "2026-01-02T12:05:00Z"},
        ],
    }
    assert await get_json(client, f"/api/v1/viewers/nobody-{unique}/progress") == {
        "viewer_id": f"nobody-{unique}",
        "progress": [],
    }


# --- who may read ------------------------------------------------------------------------------------------


async def test_a_videos_views_are_listed_newest_first_and_by_session(
    client: TestClient[Any, Any], qoe_data: QoeData
) -> None:
    metrics = [m for m in qoe_data.recent.metrics if m.video_id]
    video = metrics[0].video_id
    mine = sorted((m for m in metrics if m.video_id == video), key=lambda m: m.start_ts_ms, reverse=True)
    span = {"from": iso_z(qoe_data.recent.first_ms - 3_600_000), "to": iso_z(qoe_data.recent.last_ms + 60_000)}
    body = await get_json(client, f"/api/v1/videos/{video}/views", span)
    assert [v["view_id"] for v in body["views"]] == [m.view_id for m in mine]
    first = body["views"][0]
    assert (first["watch_time_ms"], first["video_startup_time_ms"], first["rebuffer_count"]) == (
        mine[0].watch_time_ms,
        mine[0].video_startup_time_ms,
        mine[0].rebuffer_count,
    )
    one = await get_json(client, f"/api/v1/videos/{video}/views", {**span, "session_id": mine[-1].session_id})
    assert {v["session_id"] for v in one["views"]} == {mine[-1].session_id}
    await get_json(client, f"/api/v1/videos/{video}/views", {**span, "limit": "0"}, status=400)


async def test_analysts_reads_need_the_owner_or_an_admin(
    anonymous: TestClient[Any, Any], qoe_data: QoeData, unique: str
) -> None:
    metric = next(m for m in qoe_data.recent.metrics if m.video_id)
    for path in (
        f"/api/v1/videos/{metric.video_id}/qoe",
        f"/api/v1/videos/{metric.video_id}/views",
        f"/api/v1/videos/{metric.video_id}/viewers/live",
        "/api/v1/qoe/overview",
        f"/api/v1/qoe/views/{metric.view_id}",
        f"/api/v1/viewers/profile-{unique}/progress",
    ):
        await get_json(anonymous, path, status=401)
    creator, who = await sign_up(anonymous, role="creator")
    # Someone else's (or no catalogue row's) video: not found; the overview is for admins only.
    for path in (f"/api/v1/videos/{metric.video_id}/qoe", f"/api/v1/qoe/views/{metric.view_id}"):
        async with anonymous.get(path, headers=creator) as reply:
            assert reply.status == 404
    async with anonymous.get("/api/v1/qoe/overview", headers=creator) as reply:
        assert reply.status == 403
    async with anonymous.get(f"/api/v1/viewers/profile-{unique}/progress", headers=creator) as reply:
        assert reply.status == 403
    async with anonymous.get(f"/api/v1/viewers/{who.viewer_id}/progress", headers=creator) as reply:
        assert reply.status == 200
    # The owner of a video reads its metrics.
    owned = f"owned-{unique}"
    catalog = anonymous.app[catalog_key]
    assert await catalog.create_video(owned, who.account_id, {"title": "mine"}, "uploads", "sources/x", None)
    async with anonymous.get(f"/api/v1/videos/{owned}/qoe", headers=creator) as reply:
        assert reply.status == 200 and (await reply.json())["video_id"] == owned
