"""Tumbling windows: attribution, watermark closing, late counting, deterministic rows, the VST sketch."""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction
from typing import Any

import pytest
from ddsketch import DDSketch
from qoe_events import SID, T0, numbered, r720, r1080, run

from common.qoe import views, windows
from common.qoe.views import ViewMetrics


def one_view() -> tuple[ViewMetrics, list[views.Activity]]:
    state = views.new_session(SID)
    for event in numbered(
        ("PLAY_REQUESTED", 1000, r720()),
        ("CMCD_REQUEST", 1500, {"bytes": 4000}),
        ("FIRST_FRAME", 3000),
        ("STALL_START", 9000),
        ("STALL_END", 12_000),
        ("RENDITION_CHANGE", 14_000, r1080()),
        ("CMCD_REQUEST", 15_000, {"bytes": 6000}),
        ("END", 21_000),
    ):
        views.apply(state, event)
    drained = views.drain(state)
    [m] = drained.views
    return m, drained.activity


def rows_by_key(rows: list[windows.WindowRow]) -> dict[tuple[str, str, int, int], windows.WindowRow]:
    return {(r.scope, r.scope_id, r.granularity_s, r.window_start_ms): r for r in rows}


def test_views_count_by_close_time_and_activity_by_event_time() -> None:
    m, activity = one_view()
    state = windows.new_windows()
    for a in activity:
        windows.add_activity(state, a)
    windows.add_view(state, m)
    rows = rows_by_key(windows.flush(state))
    g10 = {k: r for k, r in rows.items() if k[:3] == ("global", "all", 10)}
    assert sorted(k[3] - T0 for k in g10) == [0, 10_000, 20_000]
    first, second, third = (g10[("global", "all", 10, T0 + s)] for s in (0, 10_000, 20_000))
    assert (first.views_started, first.events, first.bytes_served, first.concurrent_viewers) == (1, 4, 4000, 1)
    assert (second.views_started, second.events, second.bytes_served) == (0, 3, 6000)
    # The whole view lands in the window of its close time (the END at 21 s).
    assert (first.views, second.views, third.views) == (0, 0, 1)
    assert third.watch_time_ms == 20_000 and third.rebuffer_ms == 3000 and third.rebuffer_count == 1
    assert third.rebuffer_percentage == 15.0 and third.rebuffer_frequency_per_min == 3.0
    assert third.vst_count == 1 and third.vst_mean_ms == 2000
    assert third.vst_median_ms == pytest.approx(2000, rel=0.01) and third.vst_p95_ms == pytest.approx(2000, rel=0.01)
    assert third.playback_failure_percentage == 0.0 and third.exits_before_video_start_percentage == 0.0
    assert third.rendition_ms == {"720p": 8000, "1080p": 7000}
    assert third.quality_distribution == {"1080p": 7000 / 15_000, "720p": 8000 / 15_000}
    assert third.average_bitrate_kbps == float(Fraction(4500 * 8000 + 7800 * 7000, 15_000))
    assert first.rebuffer_percentage is None and first.average_bitrate_kbps is None and first.vst_median_ms is None
    g60 = rows[("global", "all", 60, T0)]
    assert (g60.views, g60.views_started, g60.events, g60.bytes_served) == (1, 1, 8, 10_000)


def test_rendition_scope_splits_times_and_gives_counts_to_the_initial_rendition() -> None:
    m, activity = one_view()
    state = windows.new_windows(granularities_s=[60])
    windows.add_view(state, m)
    for a in activity:
        windows.add_activity(state, a)
    rows = rows_by_key(windows.flush(state))
    r720_row, r1080_row = rows[("rendition", "720p", 60, T0)], rows[("rendition", "1080p", 60, T0)]
    assert (r720_row.views, r1080_row.views) == (1, 0)
    assert (r720_row.watch_time_ms, r1080_row.watch_time_ms) == (13_000, 7000)
    assert (r720_row.rebuffer_ms, r1080_row.rebuffer_ms) == (3000, 0)
    assert r720_row.vst_count == 1 and r1080_row.vst_count == 0
    assert (r720_row.bytes_served, r1080_row.bytes_served) == (4000, 6000)
    # The PLAY_REQUESTED named its rendition, so the view start is the 720p rendition's.
    assert (r720_row.views_started, r1080_row.views_started) == (1, 0)
    assert ("rendition", "unknown", 60, T0) not in rows
    for scope in ("video", "device", "global"):
        assert sum(r.views for k, r in rows.items() if k[0] == scope) == 1
        assert sum(r.events for k, r in rows.items() if k[0] == scope) == 8
    assert sum(r.events for k, r in rows.items() if k[0] == "rendition") == 8
    assert sum(r.watch_time_ms for k, r in rows.items() if k[0] == "rendition") == m.watch_time_ms


def test_watermark_closes_windows_and_later_input_is_counted_late() -> None:
    m, activity = one_view()
    state = windows.new_windows()
    for a in activity:
        windows.add_activity(state, a)
    assert windows.watermark(state) == T0 + 21_000 - 10_000
    ready = windows.closable(state)
    assert {(w["granularity_ms"], w["start_ms"] - T0) for w in ready} == {(10_000, 0)}
    rows = [windows.finalise(w) for w in ready]
    assert {r.scope for r in rows} == {"video", "rendition", "device", "global"}
    windows.evict(state)
    assert windows.closable(state) == []
    late = dict(activity[0])
    windows.add_activity(state, late)  # its 10 s window is closed, its 60 s window is not
    windows.add_view(state, m)
    counts = windows.late_counts(state)
    assert counts[("global", "all", 10)] == {"events": 1, "views": 0}
    assert ("global", "all", 60) not in counts
    g60 = rows_by_key(windows.flush(state))[("global", "all", 60, T0)]
    assert g60.events == len(activity) + 1 and g60.views == 1


def test_rows_are_deterministic_whatever_the_input_order() -> None:
    m, activity = one_view()
    reference = None
    for seed in range(5):
        inputs: list[Any] = [("a", a) for a in activity] + [("v", m)]
        random.Random(seed).shuffle(inputs)
        state = windows.new_windows()
        for kind, item in inputs:
            if kind == "a":
                windows.add_activity(state, item)
            else:
                windows.add_view(state, item.to_dict())
            state = json.loads(json.dumps(state))  # the state is plain JSON at every step
        rows = windows.flush(state)
        assert [r.key() for r in rows] == sorted((r.key() for r in rows), key=lambda k: (k[2], k[3], k[0], k[1])), (
            "rows come in key order"
        )
        reference = reference or rows
        assert rows == reference


def test_scopes_argument_restricts_the_update_to_one_scope() -> None:
    m, activity = one_view()
    state = windows.new_windows()
    only = [("video", "video-a")]
    for a in activity:
        windows.add_activity(state, a, scopes=only)
    windows.add_view(state, m, scopes=only)
    rows = windows.flush(state)
    assert {(r.scope, r.scope_id) for r in rows} == {("video", "video-a")}
    assert len(windows.view_contributions(m)) == 3 + 2  # video, device, global + two renditions


def test_failure_and_ebvs_percentages_are_over_views_ended() -> None:
    state = windows.new_windows(granularities_s=[60])
    outcomes: list[list[tuple[Any, ...]]] = [
        [("PLAY_REQUESTED", 0), ("FIRST_FRAME", 900), ("END", 5000)],
        [("PLAY_REQUESTED", 0), ("END", 3000)],
        [("PLAY_REQUESTED", 0), ("ERROR", 2000, {"fatal": True})],
        [("PLAY_REQUESTED", 0), ("FIRST_FRAME", 1100), ("ERROR", 4000, {"fatal": True})],
    ]
    for spec in outcomes:
        for m in run(numbered(*spec)):
            windows.add_view(state, m)
    row = rows_by_key(windows.flush(state))[("global", "all", 60, T0)]
    assert (row.views, row.started_views, row.exits_before_video_start) == (4, 2, 1)
    assert (row.playback_failures, row.video_startup_failures) == (2, 1)
    assert row.playback_failure_percentage == 50.0
    assert row.video_startup_failure_percentage == 25.0 and row.exits_before_video_start_percentage == 25.0
    assert row.vst_mean_ms == 1000.0


# -- the VST sketch -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_sketch_quantiles_are_within_one_percent_and_match_ddsketch(seed: int) -> None:
    rng = random.Random(seed)
    values = [int(rng.lognormvariate(7, 1)) for _ in range(rng.randint(1, 3000))] + [0] * rng.randint(0, 3)
    sketch = windows.new_sketch()
    reference = DDSketch(relative_accuracy=0.01)
    for value in values:
        windows.sketch_add(sketch, value)
        reference.add(value)
    ordered = sorted(values)
    for q in (0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0):
        exact = ordered[math.floor(q * (len(ordered) - 1))]
        estimate = windows.sketch_quantile(sketch, q)
        assert estimate is not None and abs(estimate - exact) <= 0.01 * exact + 1e-9
        assert estimate == pytest.approx(reference.get_quantile_value(q), rel=1e-12, abs=1e-12)
    assert json.loads(json.dumps(sketch)) == sketch


def test_sketches_merge_like_one() -> None:
    rng = random.Random(3)
    values = [rng.randint(1, 60_000) for _ in range(500)]
    whole, left, right = windows.new_sketch(), windows.new_sketch(), windows.new_sketch()
    for i, value in enumerate(values):
        windows.sketch_add(whole, value)
        windows.sketch_add(left if i % 2 else right, value)
    windows.sketch_merge(left, right)
    assert left == whole
    with pytest.raises(ValueError):
        windows.sketch_merge(left, windows.new_sketch(0.02))
    with pytest.raises(ValueError):
        windows.sketch_add(left, -1)
    assert windows.sketch_quantile(windows.new_sketch(), 0.5) is None
