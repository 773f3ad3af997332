"""Oracle: simulated players whose ground truth the simulator booked itself, delivered late, out of order
and duplicated, go through views + windows the way the agents will run them; every count and ratio must
equal the simulator's recount exactly (integer milliseconds), percentiles within the sketch's 1 %."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest

from common.qoe import simulate, views, windows
from common.qoe.views import ViewMetrics

SWEEP_EVERY_MS = 1000


@dataclass
class Result:
    views: list[ViewMetrics]
    rows: list[windows.WindowRow]
    late: dict[tuple[str, str, int], dict[str, int]]
    counters: dict[str, int]


def stream(deliveries: list[simulate.Delivery], *, json_every: int = 0) -> Result:
    """Run deliveries in arrival order like the agents: apply, drain into the windows; every second of
    event time tick the reorder buffers, close expired views, then close the windows behind the watermark."""
    sessions: dict[str, dict[str, Any]] = {}
    state = windows.new_windows()
    closed_views: list[ViewMetrics] = []
    rows: list[windows.WindowRow] = []
    clock = None
    last_sweep = None

    def take(session: dict[str, Any], extra: ViewMetrics | None = None) -> None:
        drained = views.drain(session)
        for a in drained.activity:
            windows.add_activity(state, a)
        for m in drained.views + ([extra] if extra else []):
            closed_views.append(m)
            windows.add_view(state, m)

    def sweep(now: int) -> None:
        for sid, session in sessions.items():
            views.tick(session, now)
            expired = views.close(session, "inactive") if views.expire(session, now) else None
            take(session, expired)
            sessions[sid] = session
        rows.extend(windows.close_windows(state))

    for n, delivery in enumerate(deliveries):
        event = delivery.event
        ts = views.to_ms(event["client_ts"])
        clock = ts if clock is None else max(clock, ts)
        session = sessions.setdefault(event["session_id"], views.new_session(event["session_id"]))
        views.apply(session, event)
        take(session)
        if json_every and n % json_every == 0:
            sessions[event["session_id"]] = json.loads(json.dumps(session))
            state = json.loads(json.dumps(state))
        if last_sweep is None or clock - last_sweep >= SWEEP_EVERY_MS:
            sweep(clock)
            last_sweep = clock
    for session in sessions.values():  # end of input: everything still open expires
        take(session, views.close(session, "inactive"))
    rows.extend(windows.flush(state))
    counters = {k: sum(s["counters"][k] for s in sessions.values()) for k in views.new_session("x")["counters"]}
    return Result(closed_views, rows, windows.late_counts(state), counters)


def check_views(sessions: list[simulate.Session], got: list[ViewMetrics]) -> None:
    by_id = {m.view_id: m for m in got}
    truths = [v for s in sessions for v in s.views]
    assert len(got) == len(by_id) == len(truths)
    for t in truths:
        m = by_id[t.view_id]
        assert (m.session_id, m.video_id, m.device_class, m.view_index) == (
            t.session_id,
            t.video_id,
            t.device_class,
            t.index,
        )
        assert (m.start_ts_ms, m.end_ts_ms, m.close_ts_ms, m.close_reason) == (
            t.start_ms,
            t.end_ms,
            t.close_ms,
            t.close_reason,
        ), t.view_id
        assert (m.started, m.video_startup_time_ms, m.player_startup_time_ms) == (
            t.started,
            t.vst_ms,
            t.player_startup_ms,
        )
        assert (m.watch_time_ms, m.paused_ms, m.played_ms, m.seek_ms) == (
            t.watch_ms,
            t.paused_ms,
            t.played_ms,
            t.seek_ms,
        ), t.view_id
        assert (m.rebuffer_count, m.rebuffer_ms) == (t.rebuffer_count, t.rebuffer_ms), t.view_id
        assert (m.playback_failure, m.video_startup_failure, m.exit_before_video_start) == (
            t.playback_failure,
            t.startup_failure,
            t.ebvs,
        )
        assert m.playback_success_score == (0 if t.playback_failure else 50 if t.ebvs else 100)
        assert m.rebuffer_percentage == (None if t.watch_ms == 0 else float(Fraction(100 * t.rebuffer_ms, t.watch_ms)))
        assert (m.bitrate_kbps_ms, m.bitrate_time_ms, m.rendition_ms) == (
            t.bitrate_kbps_ms,
            t.bitrate_time_ms,
            t.rendition_ms,
        )
        assert m.initial_rendition == t.initial_rendition
        assert {k: vars(s) for k, s in m.by_rendition.items()} == {k: vars(s) for k, s in t.slices.items()}
        assert (m.bytes_served, m.events) == (t.bytes, t.events)
        if t.upscale_time_ms:
            assert m.upscale_percentage == pytest.approx(float(100 * t.upscale_weighted / t.upscale_time_ms))
            assert m.max_upscale_percentage == pytest.approx(float(100 * (t.max_upscale or 0)))
        if t.started:
            assert m.watched_position_s is not None


def pct(num: int, den: int) -> float | None:
    return None if den == 0 else float(Fraction(num * 100, den))


def check_windows(sessions: list[simulate.Session], rows: list[windows.WindowRow]) -> None:
    expected = simulate.recount(sessions)
    got = {(r.scope, r.scope_id, r.granularity_s, r.window_start_ms): r for r in rows}
    assert len(got) == len(rows), "one row per key"
    assert set(got) == set(expected)
    for key, e in expected.items():
        r = got[key]
        counts = (
            r.views_started,
            r.concurrent_viewers,
            r.events,
            r.bytes_served,
            r.views,
            r.started_views,
            r.playback_failures,
            r.video_startup_failures,
            r.exits_before_video_start,
            r.watch_time_ms,
            r.rebuffer_ms,
            r.rebuffer_count,
            r.played_ms,
            r.bitrate_kbps_ms,
            r.bitrate_time_ms,
            r.rendition_ms,
            r.vst_count,
        )
        assert counts == (
            e.views_started,
            len(e.sessions),
            e.events,
            e.bytes,
            e.views,
            e.started_views,
            e.playback_failures,
            e.startup_failures,
            e.ebvs,
            e.watch_ms,
            e.rebuffer_ms,
            e.rebuffer_count,
            e.played_ms,
            e.bitrate_kbps_ms,
            e.bitrate_time_ms,
            {k: v for k, v in sorted(e.rendition_ms.items())},
            len(e.vst),
        ), key
        assert r.playback_failure_percentage == pct(e.playback_failures, e.views)
        assert r.video_startup_failure_percentage == pct(e.startup_failures, e.views)
        assert r.exits_before_video_start_percentage == pct(e.ebvs, e.views)
        assert r.rebuffer_percentage == pct(e.rebuffer_ms, e.watch_ms)
        assert r.rebuffer_frequency_per_min == (
            None if e.watch_ms == 0 else float(Fraction(e.rebuffer_count * 60_000, e.watch_ms))
        )
        assert r.average_bitrate_kbps == (
            None if e.bitrate_time_ms == 0 else float(Fraction(e.bitrate_kbps_ms, e.bitrate_time_ms))
        )
        played = sum(e.rendition_ms.values())
        assert r.quality_distribution == {k: float(Fraction(v, played)) for k, v in sorted(e.rendition_ms.items())}
        if e.vst:
            ordered = sorted(e.vst)
            assert r.vst_mean_ms == float(Fraction(sum(ordered), len(ordered)))
            for q, estimate in ((0.5, r.vst_median_ms), (0.95, r.vst_p95_ms)):
                exact = ordered[math.floor(q * (len(ordered) - 1))]
                assert estimate is not None and abs(estimate - exact) <= 0.01 * exact + 1e-9, (key, q)
        else:
            assert r.vst_median_ms is None and r.vst_p95_ms is None


def run_streaming(n_sessions: int, seed: int, *, json_every: int = 0) -> None:
    sessions = simulate.generate(seed, n_sessions)
    deliveries = simulate.deliveries(sessions, seed, duplicate_rate=0.15, max_delay_ms=2000)
    result = stream(deliveries, json_every=json_every)
    check_views(sessions, result.views)
    check_windows(sessions, result.rows)
    assert result.late == {}
    n_events = sum(len(s.events) for s in sessions)
    assert result.counters["accepted"] == n_events
    assert result.counters["duplicates"] == len(deliveries) - n_events
    assert result.counters["forced_releases"] == result.counters["skipped"] == result.counters["late"] == 0
    assert result.counters["orphans"] == 0


def run_shuffled(n_sessions: int, seed: int) -> None:
    """Each session's events (with duplicates) in a fully random order, then everything is closed."""
    rng = random.Random(seed)
    sessions = simulate.generate(seed, n_sessions)
    closed: list[ViewMetrics] = []
    state = windows.new_windows()
    for s in sessions:
        delivered = [d.event for d in s.deliveries(rng, duplicate_rate=0.3)]
        rng.shuffle(delivered)
        session = views.new_session(s.session_id)
        for event in delivered:
            views.apply(session, event, reorder_window_s=None)
        last = views.close(session, "inactive")
        drained = views.drain(session)
        got = drained.views + ([last] if last else [])
        closed += got
        for a in drained.activity:
            windows.add_activity(state, a)
        for m in got:
            windows.add_view(state, m)
    check_views(sessions, closed)
    check_windows(sessions, windows.flush(state))


@pytest.mark.parametrize("seed", [1, 2])
def test_c_oracle_streaming_small(seed: int) -> None:
    run_streaming(60, seed, json_every=29)


def test_c_oracle_shuffled_sessions_small() -> None:
    run_shuffled(60, 11)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [101, 202, 303])
def test_c_oracle_streaming_many_players(seed: int) -> None:
    run_streaming(1500, seed)


@pytest.mark.slow
def test_c_oracle_shuffled_many_players() -> None:
    run_shuffled(1500, 404)


def test_the_simulator_covers_every_kind_of_view() -> None:
    sessions = simulate.generate(5, 300)
    views_ = [v for s in sessions for v in s.views]
    reasons = {v.close_reason for v in views_}
    assert reasons == {"end", "fatal_error", "inactive", "new_view"}
    assert any(v.ebvs and v.close_reason == "inactive" for v in views_)
    assert any(v.startup_failure for v in views_) and any(v.playback_failure and v.started for v in views_)
    assert any(v.rebuffer_count for v in views_) and any(v.seek_ms for v in views_)
    assert any(v.paused_ms for v in views_) and any(len(v.slices) > 1 for v in views_)
    assert any(v.initial_rendition is None for v in views_)
    types = {e["event_type"] for s in sessions for e in s.events}
    assert types >= set(views.EVENT_TYPES) - {"CMCD_EVENT", "UNKNOWN"}
    assert simulate.generate(5, 3)[0].events == sessions[0].events, "deterministic per seed"
