"""QoE through the real Kafka, a real Faust QoE worker and Cassandra, against the simulator's ground truth.

Generated sessions (starts, stalls, switches, seeks, pauses, failures, exits before start, duplicates,
out-of-order delivery) go onto `playback.telemetry`; every per-view row and every window count and ratio in
Cassandra must equal the offline recount exactly, percentiles within the sketch's 1 %. Then the worker is
killed with SIGKILL mid-stream, restarted, and the rows must equal those of the run without the crash; and
Cassandra itself is killed and restarted under a running worker, which must lose nothing."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from cassandra.cluster import NoHostAvailable, Session

from common.avro import AvroCodec
from common.kafka import durable_producer
from common.qoe.views import ViewMetrics, from_ms
from common.settings import Settings
from infra.stack import find_java17, pid_alive, servers
from tests import qoe_simulate as simulate
from tests.scratch import WorkerRig as QoeRig
from tests.scratch import scratch_worker_rig
from tests.unit.qoe.test_qoe_oracle import check_views, pct

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CODEC = AvroCodec()
WINDOW_COUNTS = {
    "views_started": "views_started",
    "events": "events",
    "bytes_served": "bytes",
    "views": "views",
    "started_views": "started_views",
    "playback_failures": "playback_failures",
    "video_startup_failures": "startup_failures",
    "exits_before_video_start": "ebvs",
    "watch_time_ms": "watch_ms",
    "rebuffer_ms": "rebuffer_ms",
    "rebuffer_count": "rebuffer_count",
}


def fresh_rig(live_servers: Settings, home: Path) -> Iterator[QoeRig]:
    yield from scratch_worker_rig(live_servers, "qoe", "qoe", home)


def publish(settings: Settings, deliveries: list[simulate.Delivery]) -> None:
    producer = durable_producer(settings.kafka)
    topic = settings.topic("playback.telemetry")
    for delivery in deliveries:
        event = delivery.event
        producer.produce(topic, key=event["session_id"].encode(), value=CODEC.encode("PlaybackEvent", event))
        producer.poll(0)
    assert producer.flush(60) == 0


def stored_views(rig: QoeRig, view_ids: list[str]) -> dict[str, ViewMetrics]:
    found = {}
    statement = rig.session.prepare("SELECT metrics_json FROM qoe_views_by_id WHERE view_id = ?")
    for view_id in view_ids:
        row = rig.session.execute(statement, (view_id,)).one()
        if row is not None:
            found[view_id] = ViewMetrics.from_dict(json.loads(row.metrics_json))
    return found


def stored_windows(rig: QoeRig, keys: list[simulate.WindowKey]) -> dict[simulate.WindowKey, Any]:
    statement = rig.session.prepare(
        "SELECT * FROM qoe_windows WHERE scope = ? AND scope_id = ? AND day = ? AND granularity_s = ?"
        " AND window_start = ?"
    )
    found = {}
    for key in keys:
        scope, scope_id, granularity, start_ms = key
        start = from_ms(start_ms)
        row = rig.session.execute(statement, (scope, scope_id, start.date(), granularity, start)).one()
        if row is not None:
            found[key] = row
    return found


def window_mismatches(expected: dict[simulate.WindowKey, simulate.ExpectedWindow], rows: dict[Any, Any]) -> list[str]:
    problems = []
    for key, e in expected.items():
        row = rows.get(key)
        if row is None:
            problems.append(f"{key}: no row")
            continue
        got = {column: getattr(row, column) for column in WINDOW_COUNTS}
        want = {column: getattr(e, attr) for column, attr in WINDOW_COUNTS.items()}
        got["concurrent_viewers"], want["concurrent_viewers"] = row.concurrent_viewers, len(e.sessions)
        got["rebuffer_percentage"], want["rebuffer_percentage"] = (
            row.rebuffer_percentage,
            pct(e.rebuffer_ms, e.watch_ms),
        )
        got["playback_failure_percentage"] = row.playback_failure_percentage
        want["playback_failure_percentage"] = pct(e.playback_failures, e.views)
        got["exits_before_video_start_percentage"] = row.exits_before_video_start_percentage
        want["exits_before_video_start_percentage"] = pct(e.ebvs, e.views)
        got["average_bitrate_kbps"] = row.average_bitrate_kbps
        want["average_bitrate_kbps"] = (
            None if e.bitrate_time_ms == 0 else float(Fraction(e.bitrate_kbps_ms, e.bitrate_time_ms))
        )
        if got != want:
            problems.append(f"{key}: {sorted((k, got[k], want[k]) for k in got if got[k] != want[k])}")
            continue
        if e.vst:
            ordered = sorted(e.vst)
            for q, estimate in ((0.5, row.vst_median_ms), (0.95, row.vst_p95_ms)):
                exact = ordered[math.floor(q * (len(ordered) - 1))]
                if estimate is None or abs(estimate - exact) > 0.01 * exact + 1e-9:
                    problems.append(f"{key}: p{int(q * 100)} {estimate} vs exact {exact}")
    return problems


def wait_until_equal(rig: QoeRig, sessions: list[simulate.Session], timeout_s: float = 240) -> dict[str, Any]:
    truths = [v.view_id for s in sessions for v in s.views]
    expected = simulate.recount(sessions)
    deadline = time.monotonic() + timeout_s
    problems: list[str] = ["not checked yet"]
    while time.monotonic() < deadline:
        views = stored_views(rig, truths)
        if len(views) == len(truths):
            rows = stored_windows(rig, list(expected))
            problems = window_mismatches(expected, rows)
            if not problems:
                check_views(sessions, list(views.values()))
                return {"views": views, "windows": rows}
        else:
            missing = sorted(set(truths) - set(views))[:5]
            problems = [f"{len(views)}/{len(truths)} views stored, missing {missing}"]
        time.sleep(2)
    raise AssertionError("Cassandra never matched the recount: " + "; ".join(problems[:10]))


def snapshot(result: dict[str, Any]) -> dict[str, Any]:
    """The stored values, without the wall-clock bookkeeping columns."""
    windows = {
        key: {k: v for k, v in row._asdict().items() if k not in ("computed_at", "final")}
        for key, row in result["windows"].items()
    }
    return {"views": {k: v.to_dict() for k, v in result["views"].items()}, "windows": windows}


@pytest.fixture
def rig(live_servers: Settings, tmp_path: Path) -> Iterator[QoeRig]:
    yield from fresh_rig(live_servers, tmp_path)


SLOW_CLOCK_MS = 5 * 60 * 1000


def recent_start_ms() -> int:
    # Sessions of the last ten minutes (all over by now), as a platform catching up after a pause sees them.
    return int(datetime.now(UTC).timestamp() * 1000) - 600_000


def oracle_deliveries() -> tuple[list[simulate.Session], list[simulate.Delivery]]:
    """Sessions with gaps of 30 s and more (quiet_rate), duplicates and late, out-of-order delivery, and players
    whose clocks run five minutes slow, interleaved on the same partitions with the others: their views must be
    judged by the collector's clock, not cut short by the other players' event times."""
    sessions = simulate.generate(11, 80, start_ms=recent_start_ms(), spread_ms=120_000, n_videos=6, quiet_rate=0.25)
    slow = simulate.generate(12, 20, start_ms=recent_start_ms() - SLOW_CLOCK_MS, spread_ms=120_000, n_videos=6)
    deliveries = simulate.deliveries(sessions, 11, duplicate_rate=0.15, max_delay_ms=2000)
    for delivery in simulate.deliveries(slow, 12, duplicate_rate=0.15, max_delay_ms=2000):
        received = delivery.event["received_ts"] + timedelta(milliseconds=SLOW_CLOCK_MS)
        deliveries.append(delivery._replace(arrival_ms=delivery.arrival_ms + SLOW_CLOCK_MS))
        delivery.event["received_ts"] = received
    deliveries.sort(key=lambda d: (d.arrival_ms, d.tiebreak))
    return sessions + slow, deliveries


def check_against_the_recount(rig: QoeRig, workers: int) -> None:
    sessions, deliveries = oracle_deliveries()
    started = [rig.worker(f"qoe-oracle-{n}") for n in range(workers)]
    try:
        for worker in started:
            worker.start()
        for worker in started:
            worker.wait_ready()
        publish(rig.settings, deliveries)
        result = wait_until_equal(rig, sessions)
    finally:
        for worker in started:
            worker.stop()
    views = result["views"]
    resumed = [v for v in views.values() if v.close_reason == "inactive" and v.view_index < max(
        w.view_index for w in views.values() if w.session_id == v.session_id
    )]  # fmt: skip
    print(f"{len(views)} views ({len(resumed)} closed by a gap the player came back from), "
          f"{len(result['windows'])} windows equal the recount with {workers} worker(s)")  # fmt: skip
    assert resumed, "no session came back after a gap of 30 s or more"
    assert any(v.exit_before_video_start for v in views.values())
    assert any(v.rebuffer_count for v in views.values())
    assert any(v.playback_failure for v in views.values())


@pytest.mark.timeout(600)
def test_cassandra_equals_the_offline_recount(rig: QoeRig) -> None:
    check_against_the_recount(rig, workers=1)


@pytest.mark.timeout(600)
def test_two_workers_sharing_the_partitions_equal_the_offline_recount(rig: QoeRig) -> None:
    """Two worker processes in one group split the partitions (the second joining triggers a rebalance: each
    restores what it takes up from the checkpoints); each window row adds up both workers' partials."""
    check_against_the_recount(rig, workers=2)


@pytest.mark.timeout(900)
def test_a_worker_killed_mid_stream_writes_the_same_rows(live_servers: Settings, tmp_path: Path) -> None:
    sessions = simulate.generate(23, 30, start_ms=recent_start_ms(), spread_ms=120_000, n_videos=5)
    deliveries = simulate.deliveries(sessions, 23, duplicate_rate=0.1, max_delay_ms=2000)

    clean_rigs = fresh_rig(live_servers, tmp_path / "clean")
    clean = next(clean_rigs)
    worker = clean.worker("qoe-clean")
    try:
        worker.start()
        worker.wait_ready()
        publish(clean.settings, deliveries)
        baseline = snapshot(wait_until_equal(clean, sessions))
    finally:
        worker.stop()  # never left running behind a failed run, writing into the next tests' machine
        next(clean_rigs, None)

    crash_rigs = fresh_rig(live_servers, tmp_path / "crash")
    crashed = next(crash_rigs)
    worker = crashed.worker("qoe-crash")
    try:
        worker.start()
        worker.wait_ready()
        half = len(deliveries) // 2
        publish(crashed.settings, deliveries[:half])
        time.sleep(3)  # let it work through part of the stream, then kill it without warning
        pid = worker.pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        worker.stop()
        publish(crashed.settings, deliveries[half:])
        # Duplicate beacons on top: the same (session_id, seq) again must count once.
        publish(crashed.settings, deliveries[: len(deliveries) // 10])
        worker.start()
        worker.wait_ready()
        after = snapshot(wait_until_equal(crashed, sessions))
    finally:
        worker.stop()
        next(crash_rigs, None)
    assert after == baseline


def wait_for_cassandra(session: Session, timeout_s: float = 120) -> None:
    """Until this session's driver reconnected to the restarted node (it retries on its own schedule)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            session.execute("SELECT release_version FROM system.local")
            return
        except NoHostAvailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.mark.timeout(900)
def test_cassandra_killed_mid_stream_and_restarted_loses_nothing(rig: QoeRig) -> None:
    """Cassandra dies with SIGKILL while the worker writes, stays away while more events arrive, and is
    started again: the worker waits it out (processors/retry.py) and the rows still equal the recount."""
    cassandra = next(server for server in servers(rig.settings) if server.name == "cassandra")
    sessions = simulate.generate(31, 30, start_ms=recent_start_ms(), spread_ms=120_000, n_videos=4)
    deliveries = simulate.deliveries(sessions, 31, duplicate_rate=0.1, max_delay_ms=2000)
    worker = rig.worker("qoe-store-outage")
    worker.start()
    try:
        worker.wait_ready()
        half = len(deliveries) // 2
        publish(rig.settings, deliveries[:half])
        time.sleep(3)  # mid-stream: some rows written, the rest of the first half still being worked through
        pid = cassandra.pid()
        assert pid is not None, "Cassandra is not running"
        os.killpg(pid, signal.SIGKILL)
        while pid_alive(pid):
            time.sleep(0.1)
        publish(rig.settings, deliveries[half:])  # Kafka takes them; the worker cannot write them yet
        time.sleep(5)
        assert worker.pid() is not None, "the worker died while Cassandra was away"
        cassandra.start(find_java17())
        wait_for_cassandra(rig.session)
        result = wait_until_equal(rig, sessions)
    finally:
        worker.stop()
        if cassandra.pid() is None:  # never leave the next tests without Cassandra
            cassandra.start(find_java17())
    retries = worker.log_path.read_text(errors="replace").count("retrying in")
    print(f"{len(result['views'])} views, {len(result['windows'])} windows equal the recount; {retries} retries")
    assert retries > 0, "the worker never saw Cassandra away"
