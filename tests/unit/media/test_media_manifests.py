"""Manifest rendering from segment lists (synthetic segments, no ffmpeg)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import m3u8
import pytest

from processors.media.encode import SegmentInfo
from processors.media.ladder import AudioRung, Rung
from processors.media.manifests import (
    AudioRendition,
    ManifestError,
    VideoRendition,
    dash_mpd,
    iframe_playlist,
    media_playlist,
    multivariant_playlist,
    peak_bitrate,
    target_duration,
    write_manifests,
)

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


def rung(name: str, height: int, fps: Fraction = Fraction(30), codec: str = "h264") -> Rung:
    return Rung(
        name=name,
        codec=codec,  # type: ignore[arg-type]  # tests pass codec names as plain strings
        width=height * 16 // 9 // 2 * 2,
        height=height,
        fps=fps,
        bitrate=1_000_000,
        buffer_size=2_000_000,
        segment_frames=int(4 * fps),
        timescale=15360,
        preset="veryfast",
        crf=23,
    )


def segments(sizes: list[int], durations: list[float] | None = None, timescale: int = 15360) -> list[SegmentInfo]:
    durations = durations or [4.0] * len(sizes)
    out, start = [], 0
    for number, (size, duration) in enumerate(zip(sizes, durations, strict=True)):
        ticks = int(round(duration * timescale))
        out.append(
            SegmentInfo(
                number=number,
                start_s=start / timescale,
                duration_s=ticks / timescale,
                size_bytes=size,
                path=Path(f"seg_{number:05d}.m4s"),
                timescale=timescale,
                start_ticks=start,
                duration_ticks=ticks,
                keyframe_offset=24,
                keyframe_size=size // 10,
            )
        )
        start += ticks
    return out


def audio_rendition() -> AudioRendition:
    return AudioRendition(AudioRung(), "mp4a.40.2", segments([64_000, 64_000, 32_000], [4.0107, 3.9893, 2.0], 48000))


def test_peak_bitrate_follows_rfc8216bis_windows() -> None:
    segs = segments([500_000, 1_000_000, 500_000, 20_000], [4, 4, 4, 0.1])
    target = target_duration(segs)
    assert target == 4
    # The 1 MB segment is the peak (2 Mbit/s); the tiny last segment is only judged together with the
    # one before it, so its keyframe-heavy 1.6 Mbit/s does not become the peak on its own.
    assert peak_bitrate(segs, target) == 2_000_000
    assert peak_bitrate(segments([1000], [1.0]), 4) == 8000  # shorter than half a target: whole average


def test_target_duration_rounds_to_nearest() -> None:
    assert target_duration(segments([1, 1], [4.004, 2.0])) == 4
    assert target_duration(segments([1, 1], [4.6, 2.0])) == 5


def test_media_playlist_is_vod_with_map_and_exact_durations() -> None:
    text = media_playlist(segments([1, 2, 3], [4.004, 4.004, 2.002], timescale=30000))
    parsed = m3u8.loads(text)
    assert parsed.playlist_type == "vod" and parsed.is_endlist and parsed.version == 7
    assert parsed.target_duration == 4
    assert parsed.segment_map[0].uri == "init.mp4"
    assert [s.uri for s in parsed.segments] == ["seg_00000.m4s", "seg_00001.m4s", "seg_00002.m4s"]
    assert "#EXTINF:4.004000," in text and "#EXTINF:2.002000," in text


def test_iframe_playlist_has_byteranges() -> None:
    text = iframe_playlist(segments([1000, 2000]))
    parsed = m3u8.loads(text)
    assert parsed.is_i_frames_only
    assert [s.byterange for s in parsed.segments] == ["100@24", "200@24"]


@pytest.mark.parametrize(
    "broken",
    [
        lambda s: s[:1] + s[2:],  # a missing segment
        lambda s: [s[0], *[seg.__class__(**{**seg.__dict__, "start_ticks": seg.start_ticks + 1}) for seg in s[1:]]],
        lambda s: [],
    ],
)
def test_gaps_and_holes_are_refused(broken: object) -> None:
    segs = segments([1, 2, 3])
    with pytest.raises(ManifestError):
        media_playlist(broken(segs))  # type: ignore[operator]


def test_multivariant_lists_bandwidth_codecs_resolution_frame_rate_audio() -> None:
    videos = [
        VideoRendition(rung("240p", 240), "avc1.64000d", segments([100_000, 150_000, 50_000], [4, 4, 2])),
        VideoRendition(
            rung("720p60", 720, Fraction(60)), "avc1.640020", segments([900_000, 1_000_000, 400_000], [4, 4, 2])
        ),
    ]
    audio = audio_rendition()
    parsed = m3u8.loads(multivariant_playlist(videos, audio))
    assert parsed.is_variant and parsed.version == 7 and parsed.is_independent_segments
    first, second = parsed.playlists
    assert first.uri == "240p/playlist.m3u8"
    assert first.stream_info.codecs == "avc1.64000d,mp4a.40.2"
    assert first.stream_info.resolution == (426, 240)
    assert second.stream_info.frame_rate == 60
    audio_peak = peak_bitrate(audio.segments, 4)
    assert first.stream_info.bandwidth == 300_000 + audio_peak
    assert first.stream_info.average_bandwidth < first.stream_info.bandwidth
    assert first.stream_info.audio == "audio-aac"
    assert [m.uri for m in parsed.media] == ["audio/playlist.m3u8"]
    assert parsed.media[0].type == "AUDIO" and parsed.media[0].channels == "2"
    assert [p.uri for p in parsed.iframe_playlists] == ["240p/iframes.m3u8", "720p60/iframes.m3u8"]
    assert parsed.iframe_playlists[0].iframe_stream_info.codecs == "avc1.64000d"


def test_playable_variant_lists_only_what_the_caller_passes(tmp_path: Path) -> None:
    low = VideoRendition(rung("240p", 240), "avc1.64000d", segments([10, 10]))
    files = write_manifests(tmp_path, [low], audio_rendition())
    parsed = m3u8.load(str(files.multivariant))
    assert [p.uri for p in parsed.playlists] == ["240p/playlist.m3u8"]
    assert set(files.media_playlists) == {"240p", "audio"}
    assert (tmp_path / "240p" / "playlist.m3u8").exists() and (tmp_path / "manifest.mpd").exists()


def test_mpd_has_adaptation_sets_per_codec_family_and_exact_timelines() -> None:
    videos = [
        VideoRendition(rung("1440p", 1440), "avc1.640032", segments([1, 1, 1], [4, 4, 1.5])),
        VideoRendition(rung("1440p-hevc", 1440, codec="hevc"), "hvc1.1.6.L150.90", segments([1, 1, 1], [4, 4, 1.5])),
    ]
    root = ET.fromstring(dash_mpd(videos, audio_rendition()))
    assert root.get("type") == "static"
    assert root.get("profiles") == "urn:mpeg:dash:profile:isoff-live:2011"
    assert root.get("mediaPresentationDuration") == "PT10.000S"
    sets = root.findall("d:Period/d:AdaptationSet", NS)
    assert [s.get("contentType") for s in sets] == ["video", "video", "audio"]
    assert [[r.get("codecs") for r in s.findall("d:Representation", NS)] for s in sets] == [
        ["avc1.640032"],
        ["hvc1.1.6.L150.90"],
        ["mp4a.40.2"],
    ]
    template = sets[0].find("d:Representation/d:SegmentTemplate", NS)
    assert template is not None
    assert template.get("media") == "$RepresentationID$/seg_$Number%05d$.m4s"
    assert template.get("initialization") == "$RepresentationID$/init.mp4"
    timeline = [dict(s.attrib) for s in template.findall("d:SegmentTimeline/d:S", NS)]
    assert timeline == [{"t": "0", "d": "61440", "r": "1"}, {"t": "122880", "d": "23040"}]
