"""Ladder and chunk planning rules (pure functions, no ffmpeg)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from processors.media.ladder import (
    Chunk,
    ladder_chunks,
    output_frame_rate,
    plan_chunks,
    plan_ladder,
    total_frames,
)
from processors.media.probe import SourceInfo


def source(width: int, height: int, fps: Fraction | int = 30, duration: float = 60.0, audio: bool = True) -> SourceInfo:
    return SourceInfo(
        width=width,
        height=height,
        fps=Fraction(fps),
        duration_s=duration,
        has_audio=audio,
        video_codec="h264",
        audio_codec="aac" if audio else None,
        bit_rate=10_000_000,
        demuxer="mov",
        format_name="mov,mp4,m4a,3gp,3g2,mj2",
        size_bytes=1,
    )


def test_1080p30_gets_h264_rungs_up_to_the_source_only() -> None:
    ladder = plan_ladder(source(1920, 1080))
    assert [r.name for r in ladder.rungs] == ["240p", "360p", "480p", "540p", "720p", "1080p"]
    assert {r.codec for r in ladder.rungs} == {"h264"}
    assert ladder.rungs[-1].width == 1920 and ladder.rungs[-1].height == 1080
    assert all(r.fps == 30 for r in ladder.rungs)
    assert [r.bitrate for r in ladder.rungs] == sorted(r.bitrate for r in ladder.rungs)
    assert ladder.audio is not None and ladder.audio.bitrate == 128_000 and ladder.audio.channels == 2


def test_no_upscale_for_a_720p_source() -> None:
    ladder = plan_ladder(source(1280, 720))
    assert max(r.height for r in ladder.rungs) == 720
    assert ladder.rungs[-1].name == "720p"


def test_an_odd_source_size_keeps_rungs_below_it() -> None:
    ladder = plan_ladder(source(1000, 562))
    assert [r.name for r in ladder.rungs] == ["240p", "360p", "480p", "540p"]
    assert all(r.width % 2 == 0 and r.height % 2 == 0 for r in ladder.rungs)


def test_a_tiny_source_still_gets_one_rung_at_its_own_size() -> None:
    ladder = plan_ladder(source(320, 180))
    assert [(r.name, r.width, r.height) for r in ladder.rungs] == [("180p", 320, 180)]
    assert ladder.lowest is ladder.rungs[0]


def test_portrait_video_gets_the_ladder_rotated() -> None:
    ladder = plan_ladder(source(1080, 1920))
    top = ladder.rungs[-1]
    assert (top.name, top.width, top.height) == ("1080p", 1080, 1920)
    assert all(r.height > r.width for r in ladder.rungs)


def test_60fps_is_kept_on_the_upper_rungs_and_halved_below_540p() -> None:
    ladder = plan_ladder(source(1920, 1080, fps=60))
    by_name = {r.name: r for r in ladder.rungs}
    assert list(by_name) == ["240p", "360p", "480p", "540p60", "720p60", "1080p60"]
    assert by_name["240p"].fps == 30 and by_name["720p60"].fps == 60
    # Same segment duration everywhere, GOPs aligned: 240 frames at 60 fps, 120 at 30.
    assert ladder.segment_duration == 4
    assert by_name["1080p60"].segment_frames == 240 and by_name["240p"].segment_frames == 120
    # 60 fps rungs get more bits than a 30 fps source at the same size would.
    assert by_name["1080p60"].bitrate > plan_ladder(source(1920, 1080)).rungs[-1].bitrate


def test_a_small_60fps_source_keeps_60fps_on_its_top_rung() -> None:
    ladder = plan_ladder(source(640, 360, fps=60))
    assert [(r.name, r.fps) for r in ladder.rungs] == [("240p", 30), ("360p60", 60)]


@pytest.mark.parametrize(
    ("measured", "expected"),
    [
        (Fraction(120), Fraction(60)),
        (Fraction(240), Fraction(60)),
        (Fraction(100), Fraction(50)),
        (Fraction(120000, 1001), Fraction(60000, 1001)),
        (Fraction(30000, 1001), Fraction(30000, 1001)),
        (Fraction(2987, 100), Fraction(30000, 1001)),  # a phone's variable-rate average
        (Fraction(25), Fraction(25)),
        (Fraction(15), Fraction(15)),
        (Fraction(125, 10), Fraction(12)),
    ],
)
def test_output_frame_rate(measured: Fraction, expected: Fraction) -> None:
    assert output_frame_rate(measured) == expected


def test_120fps_source_is_encoded_at_60() -> None:
    ladder = plan_ladder(source(1280, 720, fps=120))
    assert ladder.fps == 60
    assert ladder.rungs[-1].name == "720p60"


def test_ntsc_rates_get_whole_frame_segments() -> None:
    ladder = plan_ladder(source(1920, 1080, fps=Fraction(60000, 1001)))
    assert ladder.segment_duration == Fraction(4004, 1000)
    assert {r.segment_duration for r in ladder.rungs} == {Fraction(4004, 1000)}
    low = ladder.rungs[0]
    assert low.fps == Fraction(30000, 1001) and low.segment_frames == 120
    assert all(r.timescale % r.fps.numerator == 0 for r in ladder.rungs)
    assert all(r.segment_ticks * r.fps == r.segment_frames * r.timescale for r in ladder.rungs)


def test_second_codec_only_from_1440p() -> None:
    ladder = plan_ladder(source(3840, 2160, fps=30))
    names = [r.name for r in ladder.rungs]
    assert names[-4:] == ["1440p", "1440p-hevc", "2160p", "2160p-hevc"]
    assert all(r.codec == "h264" for r in ladder.rungs if r.height < 1440)
    hevc = {r.name: r for r in ladder.rungs if r.codec == "hevc"}
    assert set(hevc) == {"1440p-hevc", "2160p-hevc"}
    assert 16_000_000 <= ladder.rung("2160p").bitrate <= 20_000_000

    assert [r.name for r in plan_ladder(source(1920, 1080)).rungs if r.codec != "h264"] == []
    av1 = plan_ladder(source(2560, 1440, fps=60), top_codec="av1")
    assert [r.name for r in av1.rungs if r.codec == "av1"] == ["1440p60-av1"]
    assert {r.codec for r in plan_ladder(source(3840, 2160), top_codec=None).rungs} == {"h264"}


def test_no_audio_rung_without_audio() -> None:
    assert plan_ladder(source(1280, 720, audio=False)).audio is None


def test_chunks_are_segment_aligned_and_cover_the_duration() -> None:
    chunks = plan_chunks(30.0, 4, chunk_segments=3)
    assert [(c.first_segment, c.segment_count) for c in chunks] == [(0, 3), (3, 3), (6, 2)]
    assert [c.start_s for c in chunks] == [0, 12, 24]
    assert all(c.start_s % 4 == 0 for c in chunks)
    assert chunks[-1].is_last and not any(c.is_last for c in chunks[:-1])
    assert chunks[-1].end_s == 30 and chunks[-1].duration_s == 6
    assert [s for c in chunks for s in c.segments] == list(range(8))
    for previous, current in zip(chunks, chunks[1:], strict=False):
        assert previous.end_s == current.start_s


def test_chunks_with_exact_and_ragged_ends() -> None:
    assert [c.segment_count for c in plan_chunks(8.0, 4, 2)] == [2]
    # A container duration a hair past a boundary does not make an empty segment.
    assert [c.segment_count for c in plan_chunks(8.0004, 4, 2)] == [2]
    assert [c.segment_count for c in plan_chunks(8.01, 4, 2, fps=Fraction(30))] == [2]
    assert plan_chunks(8.04, 4, 2, fps=Fraction(30))[-1].duration_s == Fraction(1, 30)
    with pytest.raises(ValueError):
        plan_chunks(0, 4, 2)
    with pytest.raises(ValueError):
        plan_chunks(10, 4, 0)


def test_ladder_chunks_and_frame_totals() -> None:
    info = source(1280, 720, fps=Fraction(30000, 1001), duration=10.01)
    ladder = plan_ladder(info)
    chunks = ladder_chunks(ladder, info, chunk_segments=2)
    assert chunks == [
        Chunk(0, 0, 2, Fraction(0), Fraction(8008, 1000), False),
        Chunk(1, 2, 1, Fraction(8008, 1000), Fraction(2002, 1000), True),
    ]
    assert total_frames(chunks, ladder.fps) == info.frame_count == 300


def test_chunks_stay_short() -> None:
    # Two-hour film: every request covers seconds, not minutes.
    chunks = plan_chunks(7200.0, 4, 2)
    assert len(chunks) == 900
    assert max(c.duration_s for c in chunks) == 8
