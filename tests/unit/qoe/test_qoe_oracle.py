"""Oracle: simulated players whose ground truth the simulator booked itself, delivered late, out of order
and duplicated, go through views + windows the way the agents will run them; every count and ratio must
equal the simulator's recount exactly (integer milliseconds), percentiles within the sketch's 1 %.

Inactivity is judged as the platform judges it (common/qoe/partition.py, processors/telemetry.py): by the
collector's clock. Each delivery first moves the partition's watermark (the newest ``received_ts``), then
every session whose last arrival + 30 s is at or before it is closed as ``inactive``, and only then is the
event applied, so a session that comes back after a quiet gap finds its view closed."""

from __future__ import annotations

import bisect
import heapq
import json
import math
import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import pytest

from common.qoe import views, windows
from common.qoe.views import ViewMetrics
from tests import qoe_simulate as simulate

CLOSE_WINDOWS_EVERY_MS = 1000
INACTIVITY_MS = int(views.DEFAULT_INACTIVITY_S * 1000)


@dataclass
class Result:
    views: list[ViewMetrics]
    rows: list[windows.WindowRow]
    late: dict[tuple[str, str, int], dict[str, int]]
    counters: dict[str, int]
    # The views the inactivity sweep closed while the input went on (not the end-of-input close).
    swept: list[str] = field(default_factory=list)


def session_deadline(session: dict[str, Any]) -> int | None:
    """Collector time at which the session's open view (or its buffered events) expires, as the platform
    computes it (processors/telemetry.py, common/qoe/partition.py): last arrival + 30 s."""
    if views.expires_at(session) is None:
        return None
    return int(session["last_arrival_ms"] + INACTIVITY_MS)


def stream(deliveries: list[simulate.Delivery], *, json_every: int = 0) -> Result:
    """Run deliveries in arrival order like the agents: move the watermark to the event's arrival time, close
    the sessions quiet for 30 s of it, apply the event and drain into the windows; every second of arrival
    time close the windows behind the windows' own (event-time) watermark."""
    sessions: dict[str, dict[str, Any]] = {}
    state = windows.new_windows()
    closed_views: list[ViewMetrics] = []
    swept: list[str] = []
    rows: list[windows.WindowRow] = []
    watermark: int | None = None
    last_close: int | None = None
    deadlines: list[tuple[int, str]] = []  # heap; an entry is current while it equals the session's deadline

    def take(session: dict[str, Any], extra: ViewMetrics | None = None) -> None:
        drained = views.drain(session)
        for a in drained.activity:
            windows.add_activity(state, a)
        for m in drained.views + ([extra] if extra else []):
            closed_views.append(m)
            windows.add_view(state, m)

    def sweep(now: int) -> None:
        while deadlines and deadlines[0][0] <= now:
            deadline, sid = heapq.heappop(deadlines)
            session = sessions[sid]
            if session_deadline(session) != deadline:
                continue  # stale: the session was heard from (or closed) since
            expired = views.close(session, "inactive")
            if expired is not None:
                swept.append(expired.view_id)
            take(session, expired)

    for n, delivery in enumerate(deliveries):
        event = delivery.event
        sid = event["session_id"]
        arrived = views.to_ms(event["received_ts"])
        assert arrived == delivery.arrival_ms
        watermark = arrived if watermark is None else max(watermark, arrived)
        sweep(watermark)  # before the event: a session back from a quiet gap finds its view closed
        session = sessions.setdefault(sid, views.new_session(sid))
        views.apply(session, event)
        # Every event is a sign of life, a duplicate or one waiting in the reorder buffer included.
        session["last_arrival_ms"] = max(session.get("last_arrival_ms", arrived), arrived)
        take(session)
        deadline = session_deadline(session)
        if deadline is not None and session.get("scheduled") != deadline:
            session["scheduled"] = deadline
            heapq.heappush(deadlines, (deadline, sid))
        if json_every and n % json_every == 0:
            sessions[sid] = json.loads(json.dumps(session))
            state = json.loads(json.dumps(state))
        if last_close is None or watermark - last_close >= CLOSE_WINDOWS_EVERY_MS:
            rows.extend(windows.close_windows(state))
            last_close = watermark
    for session in sessions.values():  # end of input: everything still open expires
        take(session, views.close(session, "inactive"))
    rows.extend(windows.flush(state))
    counters = {k: sum(s["counters"][k] for s in sessions.values()) for k in views.new_session("x")["counters"]}
    return Result(closed_views, rows, windows.late_counts(state), counters, swept)


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


def run_streaming(
    n_sessions: int, seed: int, *, json_every: int = 0, quiet_rate: float = simulate.DEFAULT_QUIET_RATE
) -> tuple[list[simulate.Session], Result]:
    sessions = simulate.generate(seed, n_sessions, quiet_rate=quiet_rate)
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
    # Every view interrupted by a quiet gap was closed by the sweep, before the session came back.
    assert {v.view_id for v in interrupted(sessions)} <= set(result.swept)
    return sessions, result


def interrupted(sessions: list[simulate.Session]) -> list[simulate.ViewTruth]:
    """Views closed as inactive mid-session: the session went quiet in them and came back."""
    return [v for s in sessions for v in s.views[:-1] if v.close_reason == "inactive"]


def run_shuffled(n_sessions: int, seed: int, *, quiet_rate: float = simulate.DEFAULT_QUIET_RATE) -> None:
    """Each session's events (with duplicates) in a fully random order between its silences of 30 s or more
    (nothing is delivered across a silence: ``simulate.deliveries`` keeps them in arrival time), the session
    closed as inactive at each silence, then everything is closed."""
    rng = random.Random(seed)
    sessions = simulate.generate(seed, n_sessions, quiet_rate=quiet_rate)
    closed: list[ViewMetrics] = []
    state = windows.new_windows()
    for s in sessions:
        starts = [views.to_ms(burst[0]["client_ts"]) for burst in s.bursts()[1:]]
        delivered: list[list[dict[str, Any]]] = [[] for _ in range(len(starts) + 1)]
        for d in s.deliveries(rng, duplicate_rate=0.3):
            delivered[bisect.bisect_right(starts, views.to_ms(d.event["client_ts"]))].append(d.event)
        session = views.new_session(s.session_id)
        for burst in delivered:
            rng.shuffle(burst)
            for event in burst:
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


@pytest.mark.parametrize("seed", [3, 4])
def test_c_oracle_is_exact_with_sessions_that_go_quiet_and_come_back(seed: int) -> None:
    sessions, result = run_streaming(80, seed, json_every=31, quiet_rate=0.5)
    cut = interrupted(sessions)
    assert len(cut) >= 10
    got = {m.view_id: m for m in result.views}
    by_id = {s.session_id: s for s in sessions}
    idle_events = 0
    for truth in cut:
        m = got[truth.view_id]
        # Closed by the sweep at its last event, attributed to 30 s later ...
        assert (m.close_reason, m.end_ts_ms, m.close_ts_ms) == ("inactive", truth.end_ms, truth.end_ms + INACTIVITY_MS)
        # ... and the session came back: a new view of the same video after the gap.
        later = got[by_id[truth.session_id].views[truth.index + 1].view_id]
        assert later.video_id == m.video_id and later.view_index == m.view_index + 1
        assert later.start_ts_ms - m.end_ts_ms >= simulate.QUIET_MIN_MS
        # What the player sent in between (heartbeats, resizes) is activity outside any view, not an orphan.
        idle = [a for a in by_id[truth.session_id].activity if m.end_ts_ms < a.ts_ms < later.start_ts_ms]
        assert all(a.video_id == m.video_id and a.rendition is None for a in idle)
        idle_events += len(idle)
    assert idle_events > 0 and result.counters["orphans"] == 0


def test_c_oracle_a_session_alone_on_its_partition_is_closed_by_its_own_next_event() -> None:
    """Nothing else moves the watermark: the first event after the gap is what expires the session, so it must
    be swept before that event is applied (applied first, the event would extend the view)."""
    sessions = [s for s in simulate.generate(8, 60, quiet_rate=0.5) if interrupted([s])]
    assert len(sessions) >= 10
    rng = random.Random(8)
    for s in sessions:
        result = stream(s.deliveries(rng, duplicate_rate=0.15, max_delay_ms=2000), json_every=7)
        check_views([s], result.views)
        check_windows([s], result.rows)
        assert {v.view_id for v in interrupted([s])} <= set(result.swept)
        assert result.late == {} and result.counters["orphans"] == 0


def test_c_oracle_shuffled_sessions_with_quiet_gaps() -> None:
    run_shuffled(80, 12, quiet_rate=0.5)


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


def test_the_simulator_goes_quiet_mid_view_in_every_player_state() -> None:
    sessions = simulate.generate(6, 400)
    cut = interrupted(sessions)
    assert 10 <= len({v.session_id for v in cut}) <= 80, "about 10 % of the sessions, once each"
    ending = set()
    for truth in cut:
        session = next(s for s in sessions if s.session_id == truth.session_id)
        in_view = [e for e in session.events if e["source"] == "SDK" and truth.start_seq <= e["seq"]]
        in_view = [e for e in in_view if views.to_ms(e["client_ts"]) <= truth.end_ms]
        assert views.to_ms(in_view[-1]["client_ts"]) == truth.end_ms == truth.last_ms
        state_events = ("PLAY", "PAUSE", "STALL_START", "STALL_END", "SEEK_START", "SEEK_END", "FIRST_FRAME")
        ending.add([e["event_type"] for e in in_view if e["event_type"] in state_events][-1])
        assert truth.close_ms == truth.end_ms + INACTIVITY_MS and truth.started
    # Gone while paused, stalled, seeking, and while playing (after a play, a stall's or a seek's end, ...).
    assert {"PAUSE", "STALL_START", "SEEK_START"} < ending
    assert not interrupted(simulate.generate(6, 400, quiet_rate=0))


@pytest.mark.parametrize("seed", [1, 2])
def test_a_silence_of_the_player_is_as_long_for_the_collector(seed: int) -> None:
    """Delivery delays (0 .. max_delay_ms) neither hide a quiet gap nor make one out of an ordinary pause."""
    sessions = simulate.generate(seed, 150, quiet_rate=0.5)
    rng = random.Random(seed)
    gaps = 0
    for s in sessions:
        delivered = s.deliveries(rng, duplicate_rate=0.3, max_delay_ms=2000)
        assert all(0 <= d.arrival_ms - views.to_ms(d.event["client_ts"]) <= 2000 for d in delivered)
        bursts = s.bursts()
        assert [e for b in bursts for e in b] == s.events
        for before, after in zip(bursts, bursts[1:], strict=False):
            silence = views.to_ms(after[0]["client_ts"]) - views.to_ms(before[-1]["client_ts"])
            last_before = max(d.arrival_ms for d in delivered if d.event["client_ts"] <= before[-1]["client_ts"])
            first_after = min(d.arrival_ms for d in delivered if d.event["client_ts"] >= after[0]["client_ts"])
            assert first_after - last_before >= silence >= INACTIVITY_MS
            gaps += 1
        # Inside a view, the player is never silent for long.
        for v in s.views:
            times = [views.to_ms(e["client_ts"]) for e in s.events]
            inside = [t for t in times if v.start_ms <= t <= v.end_ms]
            assert all(b - a < simulate.MAX_EVENT_GAP_MS for a, b in zip(inside, inside[1:], strict=False))
    assert gaps > 0
    with pytest.raises(ValueError):
        simulate.deliveries(sessions, seed, max_delay_ms=simulate.INACTIVITY_MS - simulate.MAX_EVENT_GAP_MS)
