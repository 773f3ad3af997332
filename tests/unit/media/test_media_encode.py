"""Chunked CMAF encoding with real ffmpeg: chunks encoded apart must play back as one continuous track."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import m3u8
import pytest
from media_clips import decode_all, decode_frames, frame_lumas, make_clip

from processors.media import mp4
from processors.media.encode import (
    EncodeError,
    RenditionChunk,
    SegmentInfo,
    encode_audio,
    encode_chunk,
    make_poster,
    make_storyboard,
)
from processors.media.ladder import EncoderTuning, Ladder, Rung, ladder_chunks, plan_chunks, plan_ladder
from processors.media.manifests import VideoRendition, ladder_renditions, multivariant_playlist, write_manifests
from processors.media.probe import SourceInfo, probe_source

pytestmark = pytest.mark.slow

FAST = EncoderTuning(x264_preset="ultrafast", x265_preset="ultrafast", svtav1_preset="12")


def merge(results: Sequence[dict[str, RenditionChunk]]) -> dict[str, list[SegmentInfo]]:
    merged: dict[str, list[SegmentInfo]] = {}
    for result in results:
        for name, chunk in result.items():
            merged.setdefault(name, []).extend(chunk.segments)
    return {name: sorted(segs, key=lambda s: s.number) for name, segs in merged.items()}


def copy_tree(src: Path, dst: Path) -> None:
    """What uploading a worker's output to object storage amounts to."""
    shutil.copytree(src, dst, dirs_exist_ok=True)


def assert_continuous(frames: list[tuple[int, int]], expected_count: int) -> None:
    assert len(frames) == expected_count
    first_pts = frames[0][0]
    for index, (pts, duration) in enumerate(frames):
        assert pts == first_pts + index * duration, f"frame {index}: pts {pts} breaks the cadence"


@dataclasses.dataclass
class Package:
    root: Path
    info: SourceInfo
    ladder: Ladder
    worker_dirs: list[Path]
    results: list[dict[str, RenditionChunk]]
    audio: RenditionChunk
    segments: dict[str, list[SegmentInfo]]
    codecs: dict[str, str]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Package:
    """A 10 s 640x360 clip, chunked by two segments, each chunk encoded by a separate "worker" (own output
    directory, last chunk first), then gathered in one package directory with audio and manifests."""
    root = tmp_path_factory.mktemp("package")
    source = make_clip(root / "source.mp4", size="640x360", rate="30", seconds=10)
    info = probe_source(source)
    ladder = plan_ladder(info, tuning=FAST)
    chunks = ladder_chunks(ladder, info, chunk_segments=2)
    assert [c.segment_count for c in chunks] == [2, 1]

    package_dir = root / "package"
    worker_dirs, results = [], []
    for chunk in reversed(chunks):
        worker = root / f"worker-{chunk.index}"
        results.append(encode_chunk(source, chunk, ladder.rungs, worker, source_demuxer=info.demuxer))
        worker_dirs.append(worker)
        copy_tree(worker, package_dir)
    assert ladder.audio is not None
    audio = encode_audio(source, package_dir, ladder.segment_duration, ladder.audio, source_demuxer=info.demuxer)

    segments = {**merge(results), audio.rendition: list(audio.segments)}
    codecs = {name: chunk.codecs for result in [*results, {"audio": audio}] for name, chunk in result.items()}
    videos, audio_rendition = ladder_renditions(ladder, segments, codecs)
    write_manifests(package_dir, videos, audio_rendition)
    return Package(package_dir, info, ladder, worker_dirs, results, audio, segments, codecs)


def test_init_segment_is_identical_for_every_chunk(package: Package) -> None:
    for rung in package.ladder.rungs:
        inits = {(worker / rung.name / "init.mp4").read_bytes() for worker in package.worker_dirs}
        assert len(inits) == 1, f"{rung.name}: chunks wrote different init segments"
        assert len({result[rung.name].init_sha256 for result in package.results}) == 1


def test_segments_continue_each_others_decode_time(package: Package) -> None:
    for rung in package.ladder.rungs:
        directory = package.root / rung.name
        track = mp4.parse_init((directory / "init.mp4").read_bytes())
        assert track.timescale == rung.timescale
        files = sorted(directory.glob("seg_*.m4s"))
        assert [f.name for f in files] == ["seg_00000.m4s", "seg_00001.m4s", "seg_00002.m4s"]
        expected_start = 0
        for number, file in enumerate(files):
            data = file.read_bytes()
            assert data[4:8] == b"styp"
            (fragment,) = mp4.parse_fragments(data, track)
            assert fragment.base_media_decode_time == expected_start, f"{rung.name} segment {number}"
            assert fragment.starts_with_sync_sample
            assert fragment.sequence_number == number + 1
            expected_start = fragment.end_time
        assert expected_start == 10 * rung.timescale  # 10 s, not a tick more or less


def test_segment_records_match_the_files(package: Package) -> None:
    for result in package.results:
        for chunk in result.values():
            for segment in chunk.segments:
                data = (package.root / chunk.rendition / segment.path.name).read_bytes()
                assert segment.size_bytes == len(data)
                keyframe = data[segment.keyframe_offset : segment.keyframe_offset + segment.keyframe_size]
                assert keyframe[4:8] == b"moof" and len(keyframe) == segment.keyframe_size
                assert segment.start_s == segment.start_ticks / segment.timescale


def test_hls_plays_as_one_track(package: Package) -> None:
    assert decode_all(package.root / "master.m3u8") == ""
    for rung in package.ladder.rungs:
        frames = decode_frames(package.root / rung.name / "playlist.m3u8")
        assert_continuous(frames, package.info.frame_count)
        pts, duration = frames[-1]
        # Same timeline as the source, to within one frame.
        assert abs((pts + duration) * Fraction(1, 30) / duration - Fraction(10)) <= Fraction(1, 30)


def test_dash_plays_too(package: Package) -> None:
    assert decode_all(package.root / "manifest.mpd") == ""
    assert_continuous(decode_frames(package.root / "manifest.mpd"), package.info.frame_count)


def test_multivariant_playlist_parses_with_real_attributes(package: Package) -> None:
    parsed = m3u8.load(str(package.root / "master.m3u8"))
    assert [p.uri for p in parsed.playlists] == ["240p/playlist.m3u8", "360p/playlist.m3u8"]
    for playlist, rung in zip(parsed.playlists, package.ladder.rungs, strict=True):
        info = playlist.stream_info
        assert info.bandwidth > info.average_bandwidth > 0
        assert info.resolution == (rung.width, rung.height)
        assert info.frame_rate == 30
        video_codec, audio_codec = info.codecs.split(",")
        assert audio_codec == "mp4a.40.2"
        assert re.fullmatch(r"avc1\.[0-9a-f]{6}", video_codec)
        # The level in the codec string is the one in the stream.
        probe = subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=level,profile",
                "-of",
                "json",
                str(package.root / rung.name / "playlist.m3u8"),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        stream = json.loads(probe.stdout)["streams"][0]
        assert int(video_codec[-2:], 16) == stream["level"]
    assert parsed.media[0].type == "AUDIO" and parsed.media[0].uri == "audio/playlist.m3u8"
    assert len(parsed.iframe_playlists) == 2
    iframes = m3u8.load(str(package.root / "240p" / "iframes.m3u8"))
    assert iframes.is_i_frames_only and all(s.byterange for s in iframes.segments)


def test_playable_manifest_lists_the_lowest_rung_and_audio(package: Package) -> None:
    ladder = package.ladder
    assert ladder.audio is not None
    videos, audio = ladder_renditions(
        ladder, package.segments, package.codecs, only={ladder.lowest.name, ladder.audio.name}
    )
    parsed = m3u8.loads(multivariant_playlist(videos, audio))
    assert [p.uri for p in parsed.playlists] == ["240p/playlist.m3u8"]
    assert [m.uri for m in parsed.media] == ["audio/playlist.m3u8"]


def test_audio_is_segmented_once_for_the_whole_file(package: Package) -> None:
    segments = package.audio.segments
    assert package.audio.codecs == "mp4a.40.2"
    assert [s.number for s in segments] == list(range(len(segments)))
    for previous, current in zip(segments, segments[1:], strict=False):
        assert current.start_ticks == previous.start_ticks + previous.duration_ticks
    assert all(3.9 < s.duration_s < 4.1 for s in segments[:-1])
    total = sum(s.duration_s for s in segments)
    assert 10.0 <= total <= 10.05  # + the AAC encoder's priming samples
    track = mp4.parse_init(package.audio.init_path.read_bytes())
    assert track.timescale == 48000 and track.handler == "soun"


def test_frames_land_in_the_right_segments(tmp_path: Path) -> None:
    """Each frame has its own brightness: a frame dropped, doubled or shifted at a chunk edge shows up."""
    source = make_clip(
        tmp_path / "ramp.mp4",
        size="64x36",  # geq evaluates per pixel: paint small, then scale up
        seconds=9,
        audio=False,
        video_filter="geq=lum='mod(N*8,220)+16':cb=128:cr=128,scale=320:180:flags=neighbor",
    )
    info = probe_source(source)
    ladder = plan_ladder(info, tuning=FAST)
    chunks = ladder_chunks(ladder, info, chunk_segments=1)
    assert len(chunks) == 3
    results = [encode_chunk(source, chunk, ladder.rungs, tmp_path / "out") for chunk in chunks]
    rung = ladder.rungs[0]
    write_manifests(tmp_path / "out", [VideoRendition(rung, results[0][rung.name].codecs, merge(results)[rung.name])])
    lumas = frame_lumas(tmp_path / "out" / rung.name / "playlist.m3u8")
    expected = [(n * 8) % 220 + 16 for n in range(270)]
    assert len(lumas) == len(expected)
    wrong = [(n, got, want) for n, (got, want) in enumerate(zip(lumas, expected, strict=True)) if abs(got - want) > 3]
    assert not wrong, f"frames out of place: {wrong[:5]}"


def test_60fps_with_a_half_rate_rung_and_mixed_fanout(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "sixty.mp4", size="640x360", rate="60", seconds=6, audio=False)
    info = probe_source(source)
    ladder = plan_ladder(info, tuning=FAST)
    assert [(r.name, r.fps) for r in ladder.rungs] == [("240p", 30), ("360p60", 60)]
    first, second = ladder_chunks(ladder, info, chunk_segments=1)
    out = tmp_path / "out"
    # Chunk 0 with the whole ladder in one process, chunk 1 one process per rung: same init, one track.
    results = [encode_chunk(source, first, ladder.rungs, out)]
    results += [encode_chunk(source, second, [rung], out) for rung in ladder.rungs]
    merged = merge(results)
    codecs = {name: chunk.codecs for result in results for name, chunk in result.items()}
    write_manifests(out, [VideoRendition(r, codecs[r.name], merged[r.name]) for r in ladder.rungs])
    assert decode_all(out / "master.m3u8") == ""
    assert_continuous(decode_frames(out / "360p60" / "playlist.m3u8"), 360)
    assert_continuous(decode_frames(out / "240p" / "playlist.m3u8"), 180)
    parsed = m3u8.load(str(out / "master.m3u8"))
    assert [p.stream_info.frame_rate for p in parsed.playlists] == [30, 60]


@pytest.mark.parametrize(("codec", "prefix"), [("hevc", "hvc1."), ("av1", "av01.")])
def test_hevc_and_av1_rungs_are_continuous_too(tmp_path: Path, codec: str, prefix: str) -> None:
    source = make_clip(tmp_path / "clip.mp4", size="320x180", seconds=6, audio=False)
    info = probe_source(source)
    ladder = plan_ladder(info, tuning=FAST)
    base = ladder.rungs[0]
    rung = dataclasses.replace(
        base,
        name=f"{base.name}-{codec}",
        codec=codec,  # type: ignore[arg-type]  # parametrized as str
        preset=FAST.x265_preset if codec == "hevc" else FAST.svtav1_preset,
        crf=30,
    )
    results = [
        encode_chunk(source, chunk, [rung], tmp_path / f"w{chunk.index}") for chunk in ladder_chunks(ladder, info, 1)
    ]
    assert len({r[rung.name].init_sha256 for r in results}) == 1
    assert results[0][rung.name].codecs.startswith(prefix)
    for worker in tmp_path.glob("w*"):
        copy_tree(worker, tmp_path / "out")
    write_manifests(tmp_path / "out", [VideoRendition(rung, results[0][rung.name].codecs, merge(results)[rung.name])])
    assert decode_all(tmp_path / "out" / "master.m3u8") == ""
    assert_continuous(decode_frames(tmp_path / "out" / rung.name / "playlist.m3u8"), 180)


def test_retry_overwrites_and_a_foreign_init_is_refused(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "clip.mp4", size="320x180", seconds=6, audio=False)
    info = probe_source(source)
    ladder = plan_ladder(info, tuning=FAST)
    first, second = ladder_chunks(ladder, info, 1)
    out = tmp_path / "out"
    rung = ladder.rungs[0]
    once = encode_chunk(source, first, [rung], out)[rung.name]
    again = encode_chunk(source, first, [rung], out)[rung.name]
    assert [s.path for s in once.segments] == [s.path for s in again.segments]
    assert sorted(p.name for p in (out / rung.name).iterdir()) == ["init.mp4", "seg_00000.m4s"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"

    other: Rung = dataclasses.replace(rung, preset="medium")  # another codec configuration
    with pytest.raises(EncodeError, match="init segment differs"):
        encode_chunk(source, second, [other], out)


def test_encoding_a_missing_source_fails_cleanly(tmp_path: Path) -> None:
    ladder = plan_ladder(
        SourceInfo(320, 180, Fraction(30), 4.0, False, "h264", None, None, "mov", "mov", 1), tuning=FAST
    )
    chunk = plan_chunks(4.0, ladder.segment_duration, 1, fps=ladder.fps)[0]
    with pytest.raises(EncodeError):
        encode_chunk(tmp_path / "nope.mp4", chunk, ladder.rungs, tmp_path / "out")


def test_poster_and_storyboard(package: Package, tmp_path: Path) -> None:
    source = package.root.parent / "source.mp4"
    poster = make_poster(source, 2.5, tmp_path / "poster.jpg")
    assert poster.read_bytes()[:2] == b"\xff\xd8"
    board = make_storyboard(
        source, package.info.duration_s, tmp_path / "board", display_width=640, display_height=360, interval_s=2
    )
    assert (board.count, board.columns, board.rows) == (5, 5, 1)
    assert (board.thumb_width, board.thumb_height) == (160, 90)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "json", str(board.sprite_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    stream = json.loads(probe.stdout)["streams"][0]
    assert (stream["width"], stream["height"]) == (800, 90)
    vtt = board.vtt_path.read_text().splitlines()
    assert vtt[0] == "WEBVTT"
    cues = [line for line in vtt if "#xywh=" in line]
    assert cues[0] == "sprite.jpg#xywh=0,0,160,90" and cues[-1] == "sprite.jpg#xywh=640,0,160,90"
    assert "00:00:08.000 --> 00:00:10.000" in vtt
    # Without the display size, the thumbnail height comes back from the sprite itself.
    again = make_storyboard(source, package.info.duration_s, tmp_path / "board2", interval_s=2)
    assert (again.thumb_width, again.thumb_height) == (160, 90)
