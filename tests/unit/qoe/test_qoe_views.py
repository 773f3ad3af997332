"""Per-view state machine: hand-built sessions with exact expected values for every QOE.md metric, and
delivery order / duplicates / JSON round trips that must not change them."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from qoe_events import SID, T0, ev, numbered, r720, r1080, run

from common.qoe import views
from common.qoe.views import ViewMetrics


def full_session() -> list[dict[str, Any]]:
    """One view with every ingredient: player startup, startup, rebuffer, pause, switch, bytes, end."""
    return numbered(
        ("PLAYER_RESIZE", -900, {"player_width": 1920, "player_height": 1080, "video_id": None}),
        ("PLAYER_READY", -500, {"extras": {"player_init_ts": str(T0 - 1200)}, "video_id": None}),
        ("PLAY_REQUESTED", 0),
        ("RENDITION_CHANGE", 500, r720()),
        ("CMCD_REQUEST", 1000, {"bytes": 1000, "bitrate_kbps": 300}),
        ("FIRST_FRAME", 2000),
        ("HEARTBEAT", 7000, {"playhead_s": 5.0}),
        ("STALL_START", 10_000),
        ("STALL_END", 13_000),
        ("CMCD_REQUEST", 15_000, {"bytes": 2500, "bitrate_kbps": 300}),
        ("PAUSE", 20_000),
        ("PLAY", 50_000),
        ("RENDITION_CHANGE", 60_000, r1080()),
        ("HEARTBEAT", 65_000, {"playhead_s": 42.0}),
        ("END", 70_000),
    )


def test_a_full_view_has_every_metric_exactly() -> None:
    [m] = run(full_session())
    assert m.close_reason == "end"
    assert (m.start_ts_ms, m.end_ts_ms, m.close_ts_ms) == (T0, T0 + 70_000, T0 + 70_000)
    assert m.started and m.video_startup_time_ms == 2000
    assert m.player_startup_time_ms == 700  # ready at T0-500, initialised at T0-1200
    assert m.paused_ms == 30_000
    assert m.watch_time_ms == 40_000  # 70 s from play requested to end, minus 30 s paused
    assert (m.rebuffer_count, m.rebuffer_ms) == (1, 3000)
    assert m.rebuffer_percentage == 7.5
    assert m.rebuffer_frequency_per_min == 1.5  # one rebuffer in 40 s of watch time
    assert m.played_ms == 35_000 and m.seek_ms == 0
    assert m.rendition_ms == {"720p": 25_000, "1080p": 10_000}
    assert m.rendition_share == pytest.approx({"720p": 25 / 35, "1080p": 10 / 35})
    # The CMCD_REQUEST's br (300) describes a download, not what plays.
    assert m.bitrate_kbps_ms == 4500 * 25_000 + 7800 * 10_000 and m.bitrate_time_ms == 35_000
    assert m.average_bitrate_kbps == pytest.approx((4500 * 25_000 + 7800 * 10_000) / 35_000)
    # 720p fills a 1920x1080 player at 1.5x (50 % upscale), 1080p at 1x.
    assert m.upscale_percentage == pytest.approx(50 * 25 / 35)
    assert m.max_upscale_percentage == pytest.approx(50.0)
    assert m.startup_time_score == pytest.approx(80.0)
    assert m.smoothness_score == pytest.approx((100 / math.sqrt(1.25) + 100 * math.exp(-10 * 0.075)) / 2)
    assert m.video_quality_score == pytest.approx(100 * math.exp(-0.33 * (0.15 * 0.5 + 0.85 * 0.5 * 25 / 35)))
    assert m.playback_success_score == 100
    assert not (m.playback_failure or m.video_startup_failure or m.exit_before_video_start)
    assert m.bytes_served == 3500
    assert m.watched_position_s == 42.0
    assert m.initial_rendition == "720p"
    # Startup before the rendition was known (500 ms) belongs to the initial rendition.
    assert m.by_rendition["720p"].watch_ms == 30_000 and m.by_rendition["1080p"].watch_ms == 10_000
    assert m.by_rendition["720p"].rebuffer_count == 1 and m.by_rendition["1080p"].rebuffer_count == 0
    assert (m.video_id, m.device_class, m.session_id) == ("video-a", "desktop", SID)
    assert m.events == 13
    assert ViewMetrics.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_stalls_in_and_right_after_a_seek_are_seek_latency_not_rebuffering() -> None:
    [m] = run(
        numbered(
            ("PLAY_REQUESTED", 0, r720()),
            ("FIRST_FRAME", 1000),
            ("SEEK_START", 5000),
            ("STALL_START", 5200),  # inside the seek
            ("STALL_END", 6000),
            ("SEEK_END", 6500),
            ("STALL_START", 6500),  # right after the seek, before playback resumed
            ("STALL_END", 8000),
            ("HEARTBEAT", 10_000),  # playback resumed
            ("STALL_START", 20_000),  # a real rebuffer
            ("STALL_END", 21_000),
            ("STALL_START", 40_000),  # a rebuffer the viewer seeks out of
            ("SEEK_START", 42_000),
            ("SEEK_END", 43_000),
            ("STALL_END", 44_000),
            ("HEARTBEAT", 45_000),
            ("END", 50_000),
        )
    )
    assert (m.rebuffer_count, m.rebuffer_ms) == (2, 1000 + 2000)
    assert m.seek_ms == 3000 + 2000  # 5.0-8.0 s and 42-44 s
    assert m.watch_time_ms == 50_000
    assert m.played_ms == 50_000 - 1000 - 3000 - 5000
    assert m.rebuffer_percentage == 6.0


def test_a_stall_after_a_seek_end_without_any_sign_of_playback_is_still_seek_latency() -> None:
    [m] = run(
        numbered(
            ("PLAY_REQUESTED", 0, r720()),
            ("FIRST_FRAME", 1000),
            ("SEEK_START", 5000),
            ("SEEK_END", 5500),
            ("RENDITION_CHANGE", 5600, r1080()),  # not a sign that the playhead moves
            ("STALL_START", 5700),
            ("STALL_END", 7000),
            ("END", 9000),
        )
    )
    assert (m.rebuffer_count, m.rebuffer_ms, m.seek_ms) == (0, 0, 500 + 1300)


def test_paused_time_is_excluded_and_a_pause_ends_a_rebuffer() -> None:
    [m] = run(
        numbered(
            ("PLAY_REQUESTED", 0, r720()),
            ("FIRST_FRAME", 1000),
            ("STALL_START", 10_000),
            ("PAUSE", 12_000),
            ("STALL_START", 13_000),  # while paused: not a stall the viewer sees
            ("PLAY", 20_000),
            ("END", 25_000),
        )
    )
    assert (m.rebuffer_count, m.rebuffer_ms) == (1, 2000)
    assert m.paused_ms == 8000 and m.watch_time_ms == 17_000
    assert m.played_ms == 17_000 - 1000 - 2000


def test_exit_before_video_start_with_end() -> None:
    [m] = run(
        numbered(
            ("PLAY_REQUESTED", 0),
            ("STALL_START", 1000),  # a startup stall is startup, not rebuffering
            ("END", 4000),
        )
    )
    assert m.exit_before_video_start and not m.playback_failure and not m.video_startup_failure
    assert not m.started and m.video_startup_time_ms is None
    assert m.watch_time_ms == 4000 and m.rebuffer_count == 0 and m.rebuffer_ms == 0
    assert m.playback_success_score == 50
    assert m.startup_time_score is None and m.smoothness_score is None and m.video_quality_score is None
    assert m.initial_rendition is None and set(m.by_rendition) == {"unknown"}


def test_exit_before_video_start_by_inactivity_closes_30_s_after_the_last_event() -> None:
    state = views.new_session(SID)
    for event in numbered(("PLAY_REQUESTED", 0), ("HEARTBEAT", 3000)):
        views.apply(state, event)
    assert not views.expire(state, T0 + 32_999)
    assert views.expire(state, T0 + 33_000)
    assert views.expires_at(state) == T0 + 33_000
    m = views.close(state, "inactive")
    assert m is not None and m.exit_before_video_start
    assert (m.close_reason, m.end_ts_ms, m.close_ts_ms, m.watch_time_ms) == ("inactive", T0 + 3000, T0 + 33_000, 3000)
    assert not views.expire(state, T0 + 99_000)  # nothing left to close
    assert views.close(state) is None


def test_a_view_closed_inactive_is_neither_extended_by_the_sessions_next_events_nor_closed_again() -> None:
    """Regression: the quiet-partition timer closed a view as inactive from a copy of the state; the session's
    next event (after the gap) then extended the still-open view of the stored state, which was closed and
    counted a second time later. Once a view is closed inactive (from a copy or from the state itself), what the
    session sends afterwards lands outside it, and the view comes out of close / drain exactly once."""
    events = numbered(
        ("PLAY_REQUESTED", 0, r720()),
        ("FIRST_FRAME", 1000),
        ("HEARTBEAT", 5000),
        ("STALL_START", 8000),  # the network goes away mid-stall ...
        ("HEARTBEAT", 9000),  # ... after one more sign of life (delivered late, after the close)
        ("HEARTBEAT", 70_000),  # back 61 s later: no view is open
        ("PLAY_REQUESTED", 72_000, r720()),
        ("FIRST_FRAME", 72_400),
        ("END", 80_000),
    )
    state = views.new_session(SID)
    for event in events[:4]:
        views.apply(state, event)
    assert views.drain(state).views == []
    copy = json.loads(json.dumps(state))  # the timer works on a copy; the stored state stays open
    assert not views.expire(copy, T0 + 37_999) and views.expire(copy, T0 + 38_000)
    by_timer = views.close(copy, "inactive")
    assert by_timer is not None and views.drain(copy).views == []
    assert (by_timer.close_reason, by_timer.end_ts_ms, by_timer.close_ts_ms) == ("inactive", T0 + 8000, T0 + 38_000)
    # Watch time and the stall in progress run up to the last event, nothing after it.
    assert (by_timer.watch_time_ms, by_timer.played_ms, by_timer.rebuffer_count, by_timer.rebuffer_ms) == (
        8000,
        7000,
        1,
        0,
    )

    # The stream sweeps its own state before it applies the next event: the same view, the same values.
    swept = views.close(state, "inactive")
    assert swept == by_timer
    assert views.open_view(state) is None and views.close(state, "inactive") is None
    out = [swept]
    activity = []
    for event in [events[2], events[4], *events[5:], events[6]]:  # a duplicate, a straggler, the next view
        views.apply(state, event)
        drained = views.drain(state)
        out += drained.views
        activity += drained.activity
    last = views.close(state, "inactive")
    out += views.drain(state).views + ([last] if last else [])

    assert [m.view_id for m in out] == [f"{SID}/SDK/0", f"{SID}/SDK/6"]
    assert out[0] == by_timer, "the closed view is not touched by what came after it"
    second = out[1]
    assert (second.view_index, second.start_ts_ms, second.close_reason, second.watch_time_ms) == (
        1,
        T0 + 72_000,
        "end",
        8000,
    )
    # The straggler and the heartbeat after the gap are activity outside any view, not part of a view.
    outside = [a for a in activity if a["ts_ms"] in (T0 + 9000, T0 + 70_000)]
    assert [(a["event_type"], a["rendition"], a["starts_view"]) for a in outside] == [
        ("HEARTBEAT", None, False),
        ("HEARTBEAT", None, False),
    ]
    assert state["counters"]["duplicates"] == 2 and state["counters"]["orphans"] == 0


def test_video_startup_failure() -> None:
    [m] = run(numbered(("PLAY_REQUESTED", 0), ("ERROR", 2500, {"fatal": True, "error_code": "MEDIA_ERR_DECODE"})))
    assert m.video_startup_failure and m.playback_failure and not m.exit_before_video_start
    assert (m.close_reason, m.error_code, m.watch_time_ms) == ("fatal_error", "MEDIA_ERR_DECODE", 2500)
    assert m.playback_success_score == 0 and m.video_startup_time_ms is None


def test_playback_failure_after_start_and_events_after_it_open_no_view() -> None:
    state = views.new_session(SID)
    for event in numbered(
        ("PLAY_REQUESTED", 0, r720()),
        ("FIRST_FRAME", 1000),
        ("ERROR", 5000, {"fatal": False, "error_code": "FRAG_LOAD_TIMEOUT"}),
        ("ERROR", 9000, {"fatal": True, "error_code": "NETWORK"}),
        ("STALL_START", 9100),
        ("END", 9500),
    ):
        views.apply(state, event)
    [m] = views.drain(state).views
    assert m.playback_failure and not m.video_startup_failure and not m.exit_before_video_start
    assert (m.non_fatal_errors, m.error_code, m.end_ts_ms) == (1, "NETWORK", T0 + 9000)
    assert m.playback_success_score == 0 and m.video_startup_time_ms == 1000
    assert views.open_view(state) is None and state["counters"]["orphans"] == 2


def test_upscale_is_measured_on_the_first_dimension_that_fits() -> None:
    assert views.upscale_factor(1920, 1080, 640, 480) == 1.25  # height fits first: 1080/480 = 2.25
    assert views.upscale_factor(1920, 1080, 1280, 720) == 0.5
    assert views.upscale_factor(1280, 720, 1280, 720) == 0.0
    assert views.upscale_factor(390, 844, 1920, 1080) == 0.0  # downscaled, no upscale
    [m] = run(
        numbered(
            ("PLAYER_RESIZE", -10, {"player_width": 1920, "player_height": 1080}),
            ("PLAY_REQUESTED", 0, {"rendition": "480p", "bitrate_kbps": 1100, "video_width": 640, "video_height": 480}),
            ("FIRST_FRAME", 1000),
            ("PLAYER_RESIZE", 2000, {"player_width": 640, "player_height": 480}),
            ("END", 5000),
        )
    )
    assert m.max_upscale_percentage == pytest.approx(125.0)
    assert m.upscale_percentage == pytest.approx(125 * 1000 / 4000)
    assert m.video_quality_score == pytest.approx(100 * math.exp(-0.33 * (0.15 * 1.25 + 0.85 * 1.25 / 4)))


def test_scores_match_muxs_published_examples() -> None:
    assert [round(views.startup_time_score(ms)) for ms in (400, 2000, 8000, 20_000)] == [95, 80, 50, 29]
    assert round(views.video_quality_score(0.5, 0.5)) == 85  # "50% upscaling throughout: 85"
    assert views.video_quality_score(0, 0) == 100
    assert views.smoothness_score(0, 0.0) == 100


def test_views_split_on_another_video_and_after_end_but_not_on_a_repeated_play_request() -> None:
    out = run(
        numbered(
            ("PLAY_REQUESTED", 0, r720()),
            ("FIRST_FRAME", 1000),
            ("PAUSE", 2000),
            ("PLAY_REQUESTED", 5000),  # same video, open view: a play command
            ("PLAY_REQUESTED", 10_000, {"video_id": "video-b", **r720()}),
            ("FIRST_FRAME", 10_500),
            ("END", 12_000, {"video_id": "video-b"}),
            ("PLAY_REQUESTED", 20_000, {"video_id": "video-b", **r720()}),  # same video after END: new view
            ("FIRST_FRAME", 20_100, {"video_id": "video-b"}),
        )
    )
    assert [(m.video_id, m.close_reason, m.view_index) for m in out] == [
        ("video-a", "new_view", 0),
        ("video-b", "end", 1),
        ("video-b", "inactive", 2),
    ]
    first = out[0]
    assert (first.end_ts_ms, first.paused_ms, first.watch_time_ms) == (T0 + 10_000, 3000, 7000)
    assert out[2].close_ts_ms == T0 + 20_100 + 30_000
    assert [m.view_id for m in out] == [f"{SID}/SDK/0", f"{SID}/SDK/4", f"{SID}/SDK/7"]


def test_activity_records_carry_the_view_context_and_mark_view_starts() -> None:
    state = views.new_session(SID)
    for event in numbered(
        ("PLAYER_RESIZE", 0, {"video_id": None, "player_width": 1280, "player_height": 720}),
        ("PLAY_REQUESTED", 100),
        ("RENDITION_CHANGE", 200, r720()),
        ("CMCD_REQUEST", 300, {"bytes": 777}),
        ("END", 400),
    ):
        views.apply(state, event)
    activity = views.drain(state).activity
    assert [(a["event_type"], a["video_id"], a["rendition"], a["starts_view"], a["bytes"]) for a in activity] == [
        ("PLAYER_RESIZE", None, None, False, 0),
        ("PLAY_REQUESTED", "video-a", None, True, 0),
        ("RENDITION_CHANGE", "video-a", "720p", False, 0),
        ("CMCD_REQUEST", "video-a", "720p", False, 777),
        ("END", "video-a", "720p", False, 0),
    ]
    assert {a["device_class"] for a in activity} == {"desktop"}
    assert views.drain(state).activity == []


def test_cmcd_playing_state_resolves_startup_stall_and_seek() -> None:
    playing = {"extras": {"sta": "p"}, "source": "CMCD_V2"}
    events = [
        ev(0, "PLAY_REQUESTED", 0, source="CMCD_V2"),
        ev(1, "CMCD_EVENT", 1500, **playing),  # first frame
        ev(2, "STALL_START", 5000, source="CMCD_V2"),
        ev(3, "CMCD_EVENT", 6000, **playing),  # stall over
        ev(4, "SEEK_START", 8000, source="CMCD_V2"),
        ev(5, "SEEK_END", 9000, **playing),  # playing again: a later stall is a rebuffer
        ev(6, "STALL_START", 9500, source="CMCD_V2"),
        ev(7, "END", 10_000, source="CMCD_V2"),
    ]
    [m] = run(events)
    assert m.video_startup_time_ms == 1500
    assert (m.rebuffer_count, m.rebuffer_ms, m.seek_ms) == (2, 1000 + 500, 1000)
    assert m.view_id == f"{SID}/CMCD_V2/0"


def test_cmcd_v1_requests_skip_the_reorder_buffer_are_deduplicated_and_mark_starvation() -> None:
    state = views.new_session(SID)
    views.apply(state, ev(0, "PLAY_REQUESTED", 0))
    v1 = {"source": "CMCD_V1", "extras": {"bs": "true"}, "bytes": 100, "video_id": "vid", "rendition": "720p"}
    for seq in (1001, 1000, 1001):  # collector numbers, not contiguous with the SDK's
        views.apply(state, ev(seq, "CMCD_REQUEST", 500, **v1))
    views.apply(state, ev(1, "END", 1000))
    drained = views.drain(state)
    [m] = drained.views
    assert (m.starvation_marks, m.rebuffer_count) == (2, 0)
    assert state["counters"]["duplicates"] == 1
    # The requests' bytes go to the windows of their own video and rendition, not to the view.
    requests = [a for a in drained.activity if a["source"] == "CMCD_V1"]
    assert [(a["bytes"], a["video_id"], a["rendition"], a["ts_ms"]) for a in requests] == [
        (100, "vid", "720p", views.to_ms(T0) + 500)
    ] * 2
    assert m.bytes_served == 0


def test_a_cmcd_v1_request_ahead_of_the_sdk_events_before_it_changes_no_view_metric() -> None:
    """The collector publishes requests at once while the SDK batches: a request at 3 s processed before the
    SDK's first frame at 1 s must not move the view's clock."""
    sdk = [
        ev(0, "PLAY_REQUESTED", 0),
        ev(1, "FIRST_FRAME", 1000),
        ev(2, "STALL_START", 2000),
        ev(3, "STALL_END", 2600),
        ev(4, "END", 4000),
    ]
    request = ev(7, "CMCD_REQUEST", 3000, source="CMCD_V1", bytes=5000)
    in_order = views.new_session(SID)
    for event in [*sdk[:4], request, sdk[4]]:
        views.apply(in_order, event)
    ahead = views.new_session(SID)
    for event in [sdk[0], request, *sdk[1:]]:
        views.apply(ahead, event)
    [expected] = views.drain(in_order).views
    [got] = views.drain(ahead).views
    assert got == expected
    assert (got.video_startup_time_ms, got.watch_time_ms, got.rebuffer_ms) == (1000, 4000, 600)


def test_state_is_plain_json_and_survives_a_round_trip_after_every_event() -> None:
    assert run(full_session(), json_roundtrip=True) == run(full_session())
    state = views.new_session(SID)
    for event in full_session()[:9]:
        views.apply(state, event)
    assert json.loads(json.dumps(state)) == state


# -- (b) delivery order and duplicates ------------------------------------------------------------------


def mixed_session() -> list[dict[str, Any]]:
    return full_session() + [
        ev(15 + i, etype, 80_000 + at, **fields)
        for i, (etype, at, fields) in enumerate(
            [
                ("PLAY_REQUESTED", 0, {"video_id": "video-b", **r720()}),
                ("FIRST_FRAME", 900, {"video_id": "video-b"}),
                ("SEEK_START", 3000, {"video_id": "video-b"}),
                ("SEEK_END", 3500, {"video_id": "video-b"}),
                ("STALL_START", 3500, {"video_id": "video-b"}),
                ("STALL_END", 5000, {"video_id": "video-b"}),
                ("HEARTBEAT", 6000, {"video_id": "video-b", "playhead_s": 99.0}),
                ("STALL_START", 9000, {"video_id": "video-b"}),
                ("STALL_END", 9400, {"video_id": "video-b"}),
                ("ERROR", 12_000, {"video_id": "video-b", "fatal": True, "error_code": "X"}),
            ]
        )
    ]


@pytest.mark.parametrize("seed", range(25))
def test_b_shuffled_and_duplicated_delivery_gives_identical_metrics(seed: int) -> None:
    rng = random.Random(seed)
    in_order = run(mixed_session())
    delivered = mixed_session() + [dict(e) for e in rng.sample(mixed_session(), 8)]
    rng.shuffle(delivered)
    assert run(delivered, reorder_window_s=None, json_roundtrip=seed % 5 == 0) == in_order
    assert [m.close_reason for m in in_order] == ["end", "fatal_error"]


@pytest.mark.parametrize("seed", range(10))
def test_b_small_displacements_within_the_reorder_window_give_identical_metrics(seed: int) -> None:
    rng = random.Random(seed)
    # Each event arrives up to 3 s late, well inside the default 10 s reorder window.
    delivered = sorted(mixed_session() * 2, key=lambda e: views.to_ms(e["client_ts"]) + rng.randint(0, 3000))
    state = views.new_session(SID)
    for event in delivered:
        views.apply(state, event)
    assert state["counters"]["duplicates"] == len(mixed_session())
    assert state["counters"]["forced_releases"] == 0
    out = views.drain(state).views
    assert out == run(mixed_session())


def test_a_gap_is_skipped_after_the_reorder_window_and_its_late_event_is_counted() -> None:
    state = views.new_session(SID)
    events = numbered(
        ("PLAY_REQUESTED", 0, r720()),
        ("FIRST_FRAME", 1000),
        ("HEARTBEAT", 5000),  # seq 2: delayed beyond the window
        ("HEARTBEAT", 10_000),
        ("HEARTBEAT", 15_000),
        ("END", 20_000),
    )
    for event in (events[0], events[1], events[3], events[4]):
        views.apply(state, event)
    view = views.open_view(state)
    assert view is not None and view["last_ts"] == T0 + 1000  # seq 3 and 4 wait for seq 2
    views.apply(state, events[5])  # 10 s newer than the oldest waiting event: skip the gap
    assert state["counters"]["skipped"] == 1 and state["counters"]["forced_releases"] == 1
    views.apply(state, events[2])
    views.apply(state, events[3])
    assert state["counters"]["late"] == 1 and state["counters"]["duplicates"] == 1
    [m] = views.drain(state).views
    assert m.close_reason == "end" and m.watch_time_ms == 20_000


def test_tick_releases_events_held_behind_a_gap_on_the_callers_clock() -> None:
    state = views.new_session(SID)
    events = numbered(("PLAY_REQUESTED", 0), ("FIRST_FRAME", 1000), ("END", 2000))
    views.apply(state, events[0])
    views.apply(state, events[2])
    views.tick(state, T0 + 11_999)
    assert views.drain(state).views == []
    views.tick(state, T0 + 12_000)
    [m] = views.drain(state).views
    assert m.exit_before_video_start and m.close_reason == "end"


def test_a_session_whose_first_seq_never_comes_starts_at_its_lowest_seq_and_close_flushes_gaps() -> None:
    state = views.new_session(SID)
    views.apply(state, ev(5, "PLAY_REQUESTED", 0))
    views.apply(state, ev(7, "FIRST_FRAME", 800))
    assert views.open_view(state) is None and views.expire(state, T0 + 30_800)
    m = views.close(state, "inactive")
    assert m is not None and m.video_startup_time_ms == 800
    assert state["counters"]["skipped"] == 1
    views.apply(state, ev(2, "HEARTBEAT", 100))
    assert state["counters"]["late"] == 1


def test_the_reorder_buffer_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "MAX_BUFFERED_EVENTS", 3)
    state = views.new_session(SID)
    for seq in range(1, 6):
        views.apply(state, ev(seq, "HEARTBEAT", seq), reorder_window_s=None)
    assert sum(len(s["buffer"]) for s in state["streams"].values()) <= 3
    assert state["counters"]["forced_releases"] == state["counters"]["overflow"] == 1


def test_events_of_another_session_or_without_timestamps_are_refused() -> None:
    state = views.new_session(SID)
    with pytest.raises(ValueError, match="applied to"):
        views.apply(state, {**ev(0, "PLAY", 0), "session_id": "other"})
    with pytest.raises(ValueError, match="client_ts"):
        views.apply(state, {k: v for k, v in ev(0, "PLAY", 0).items() if k != "client_ts"})
    with pytest.raises(ValueError, match="timezone"):
        views.to_ms(ev(0, "PLAY", 0)["client_ts"].replace(tzinfo=None))


def test_unknown_event_types_are_accepted_as_activity_only() -> None:
    [m] = run(numbered(("PLAY_REQUESTED", 0), ("SOMETHING_NEW", 500), ("FIRST_FRAME", 1000), ("END", 2000)))
    assert m.video_startup_time_ms == 1000 and m.events == 4
