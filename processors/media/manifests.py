"""HLS and DASH manifests for a packaged video.

Input: the renditions to list (a video `Rung` or the `AudioRung`, with the RFC 6381 codecs string read from
its init segment and its complete, ordered segment list). Output: text.

- HLS multivariant playlist (EXT-X-VERSION 7, EXT-X-INDEPENDENT-SEGMENTS): one EXT-X-STREAM-INF per video
  rendition with BANDWIDTH (peak segment bit rate, as RFC 8216bis defines it, video + audio),
  AVERAGE-BANDWIDTH, CODECS, RESOLUTION, FRAME-RATE and the AUDIO group; audio as EXT-X-MEDIA; one
  EXT-X-I-FRAME-STREAM-INF per video rendition;
- HLS media playlists (VOD, EXT-X-MAP to `init.mp4`, exact EXTINF durations) and I-frame playlists
  (EXT-X-I-FRAMES-ONLY; each entry a BYTERANGE over the segment's moof and its first, key, sample);
- a static DASH MPD (isoff-live profile, SegmentTemplate + SegmentTimeline in track ticks, one AdaptationSet
  per video codec family plus one for audio).

"Playable" vs "ready" is the caller's choice of renditions: pass only the lowest rung and audio to publish
a playable video early, everything once all renditions are whole. The functions refuse incomplete or
non-contiguous segment lists, so a broken playlist is never written.

The m3u8 library's model classes render the playlists; the output is parsed back with it as a check.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import m3u8

from processors.media.encode import INIT_NAME, SEGMENT_PATTERN, SegmentInfo
from processors.media.ladder import AudioRung, Ladder, Rung

MULTIVARIANT_NAME = "master.m3u8"
MEDIA_PLAYLIST_NAME = "playlist.m3u8"
IFRAME_PLAYLIST_NAME = "iframes.m3u8"
MPD_NAME = "manifest.mpd"
AUDIO_GROUP = "audio-aac"
HLS_VERSION = 7
DASH_NS = "urn:mpeg:dash:schema:mpd:2011"
DASH_PROFILE = "urn:mpeg:dash:profile:isoff-live:2011"
_CODEC_FAMILY = {"avc1": "h264", "avc3": "h264", "hvc1": "hevc", "hev1": "hevc", "av01": "av1"}


class ManifestError(ValueError):
    """The segment lists cannot make a valid manifest (gap, overlap, missing segment)."""


@dataclass(frozen=True)
class VideoRendition:
    rung: Rung
    codecs: str  # RFC 6381 from the init segment, e.g. "avc1.64001f"
    segments: Sequence[SegmentInfo]

    @property
    def name(self) -> str:
        return self.rung.name


@dataclass(frozen=True)
class AudioRendition:
    audio: AudioRung
    codecs: str  # "mp4a.40.2"
    segments: Sequence[SegmentInfo]
    language: str | None = None

    @property
    def name(self) -> str:
        return self.audio.name


def ladder_renditions(
    ladder: Ladder,
    segments: Mapping[str, Sequence[SegmentInfo]],
    codecs: Mapping[str, str],
    *,
    only: Collection[str] | None = None,
) -> tuple[list[VideoRendition], AudioRendition | None]:
    """The ladder's renditions that have segments, in ladder order, optionally limited to `only` names.

    For the "playable" manifests pass `only={ladder.lowest.name, ladder.audio.name}`; for "ready", nothing.
    Segment lists are sorted by number here; completeness is checked when rendering.
    """

    def wanted(name: str) -> bool:
        return name in segments and (only is None or name in only)

    videos = [
        VideoRendition(rung, codecs[rung.name], sorted(segments[rung.name], key=lambda s: s.number))
        for rung in ladder.rungs
        if wanted(rung.name)
    ]
    audio = None
    if ladder.audio is not None and wanted(ladder.audio.name):
        ordered = sorted(segments[ladder.audio.name], key=lambda s: s.number)
        audio = AudioRendition(ladder.audio, codecs[ladder.audio.name], ordered)
    return videos, audio


# -------------------------------------------------------------------------------------------- bit rates


def check_contiguous(name: str, segments: Sequence[SegmentInfo]) -> None:
    """Segments numbered 0..n-1, each starting where the previous one ended (in track ticks)."""
    if not segments:
        raise ManifestError(f"{name}: no segments")
    expected_start = segments[0].start_ticks
    for index, segment in enumerate(segments):
        if segment.number != index:
            raise ManifestError(f"{name}: segment {index} is missing (found number {segment.number})")
        if segment.start_ticks != expected_start:
            raise ManifestError(
                f"{name}: segment {index} starts at tick {segment.start_ticks}, expected {expected_start}"
            )
        if segment.duration_ticks <= 0:
            raise ManifestError(f"{name}: segment {index} is empty")
        expected_start += segment.duration_ticks


def _seconds(segment: SegmentInfo) -> Fraction:
    return Fraction(segment.duration_ticks, segment.timescale)


def target_duration(segments: Iterable[SegmentInfo]) -> int:
    # RFC 8216 4.3.3.1: every EXTINF, rounded to the nearest integer, must be <= the target duration.
    return max(1, max(math.floor(_seconds(s) + Fraction(1, 2)) for s in segments))


def peak_bitrate(segments: Sequence[SegmentInfo], target: int, *, sizes: Sequence[int] | None = None) -> int:
    """Peak segment bit rate (RFC 8216bis 4.3.4.2): the largest bit rate of any run of contiguous segments
    lasting between 0.5 and 1.5 target durations. A lone short last segment thus cannot dominate."""
    byte_counts = list(sizes) if sizes is not None else [s.size_bytes for s in segments]
    durations = [_seconds(s) for s in segments]
    low, high = Fraction(target, 2), Fraction(3 * target, 2)
    best: Fraction = Fraction(0)
    for i in range(len(segments)):
        total_bytes, total_time = 0, Fraction(0)
        for j in range(i, len(segments)):
            total_bytes += byte_counts[j]
            total_time += durations[j]
            if total_time > high:
                break
            if total_time >= low:
                best = max(best, Fraction(total_bytes * 8) / total_time)
    if best == 0:  # the whole thing is shorter than half a target duration
        best = Fraction(sum(byte_counts) * 8) / sum(durations, Fraction(0))
    return math.ceil(best)


def average_bitrate(segments: Sequence[SegmentInfo]) -> int:
    return math.ceil(sum(s.size_bytes for s in segments) * 8 / sum(_seconds(s) for s in segments))


def _iframe_sizes(segments: Sequence[SegmentInfo]) -> list[int]:
    return [s.keyframe_size for s in segments]


# ------------------------------------------------------------------------------------------------- HLS


def media_playlist(segments: Sequence[SegmentInfo], *, name: str = "rendition") -> str:
    """VOD media playlist; URIs relative to the rendition directory."""
    check_contiguous(name, segments)
    playlist = _new_media_playlist(segments)
    for segment in segments:
        playlist.add_segment(
            m3u8.Segment(
                uri=SEGMENT_PATTERN.format(number=segment.number),
                duration=float(_seconds(segment)),
                init_section={"uri": INIT_NAME},
            )
        )
    return _checked(playlist.dumps(infspec="microseconds"))


def iframe_playlist(segments: Sequence[SegmentInfo], *, name: str = "rendition") -> str:
    """I-frame playlist: every segment opens with an IDR, so one entry per segment, its duration the
    distance to the next one, its BYTERANGE the moof plus that first sample."""
    check_contiguous(name, segments)
    playlist = _new_media_playlist(segments)
    playlist.is_i_frames_only = True
    for segment in segments:
        playlist.add_segment(
            m3u8.Segment(
                uri=SEGMENT_PATTERN.format(number=segment.number),
                duration=float(_seconds(segment)),
                byterange=f"{segment.keyframe_size}@{segment.keyframe_offset}",
                init_section={"uri": INIT_NAME},
            )
        )
    return _checked(playlist.dumps(infspec="microseconds"))


def _new_media_playlist(segments: Sequence[SegmentInfo]) -> m3u8.M3U8:
    playlist = m3u8.M3U8()
    playlist.version = HLS_VERSION
    playlist.target_duration = target_duration(segments)
    playlist.media_sequence = 0
    playlist.playlist_type = "vod"
    playlist.is_independent_segments = True
    playlist.is_endlist = True
    return playlist


def multivariant_playlist(
    videos: Sequence[VideoRendition], audio: AudioRendition | None = None, *, iframes: bool = True
) -> str:
    """The multivariant (master) playlist, variants in the order given (put the preferred start first)."""
    if not videos:
        raise ManifestError("a multivariant playlist needs at least one video rendition")
    playlist = m3u8.M3U8()
    playlist.version = HLS_VERSION
    playlist.is_independent_segments = True
    playlist.is_variant = True

    audio_peak = audio_avg = 0
    media: list[m3u8.Media] = []
    if audio is not None:
        check_contiguous(audio.name, audio.segments)
        target = target_duration(audio.segments)
        audio_peak, audio_avg = peak_bitrate(audio.segments, target), average_bitrate(audio.segments)
        media.append(
            m3u8.Media(
                uri=f"{audio.name}/{MEDIA_PLAYLIST_NAME}",
                type="AUDIO",
                group_id=AUDIO_GROUP,
                language=audio.language,
                name=audio.language or "default",
                default="YES",
                autoselect="YES",
                channels=str(audio.audio.channels),
            )
        )
        playlist.add_media(media[0])

    for video in videos:
        check_contiguous(video.name, video.segments)
        target = target_duration(video.segments)
        codecs = video.codecs if audio is None else f"{video.codecs},{audio.codecs}"
        stream_info = {
            "bandwidth": peak_bitrate(video.segments, target) + audio_peak,
            "average_bandwidth": average_bitrate(video.segments) + audio_avg,
            "codecs": codecs,
            "resolution": f"{video.rung.width}x{video.rung.height}",
            "frame_rate": f"{float(video.rung.fps):.3f}",
            "video_range": "SDR",
            "closed_captions": "NONE",
        }
        if audio is not None:
            stream_info["audio"] = AUDIO_GROUP
        playlist.add_playlist(
            m3u8.Playlist(
                uri=f"{video.name}/{MEDIA_PLAYLIST_NAME}", stream_info=stream_info, media=media, base_uri=None
            )
        )
        if iframes:
            iframe_info = {
                "bandwidth": peak_bitrate(video.segments, target, sizes=_iframe_sizes(video.segments)),
                "average_bandwidth": math.ceil(
                    sum(_iframe_sizes(video.segments)) * 8 / sum(_seconds(s) for s in video.segments)
                ),
                "codecs": video.codecs,
                "resolution": f"{video.rung.width}x{video.rung.height}",
                "video_range": "SDR",
            }
            playlist.add_iframe_playlist(
                m3u8.IFramePlaylist(
                    base_uri=None, uri=f"{video.name}/{IFRAME_PLAYLIST_NAME}", iframe_stream_info=iframe_info
                )
            )
    return _checked(playlist.dumps())


def _checked(text: str) -> str:
    # Parse what we wrote with the same library in strict mode: a tag it cannot read is a bug here.
    m3u8.M3U8(text, strict=True)
    return text


# ------------------------------------------------------------------------------------------------ DASH


def _duration_iso(seconds: Fraction | float) -> str:
    return f"PT{float(seconds):.3f}S"


def _timeline(parent: ET.Element, segments: Sequence[SegmentInfo]) -> None:
    timeline = ET.SubElement(parent, "SegmentTimeline")
    run_start: SegmentInfo | None = None
    repeat = 0
    for segment in [*segments, None]:
        if run_start is not None and segment is not None and segment.duration_ticks == run_start.duration_ticks:
            repeat += 1
            continue
        if run_start is not None:
            attrs = {"t": str(run_start.start_ticks), "d": str(run_start.duration_ticks)}
            if repeat:
                attrs["r"] = str(repeat)
            ET.SubElement(timeline, "S", attrs)
        run_start, repeat = segment, 0


def _segment_template(parent: ET.Element, timescale: int, segments: Sequence[SegmentInfo]) -> None:
    template = ET.SubElement(
        parent,
        "SegmentTemplate",
        {
            "timescale": str(timescale),
            "initialization": f"$RepresentationID$/{INIT_NAME}",
            "media": "$RepresentationID$/" + SEGMENT_PATTERN.replace("{number:05d}", "$Number%05d$"),
            "startNumber": str(segments[0].number),
        },
    )
    _timeline(template, segments)


def _total_seconds(segments: Sequence[SegmentInfo]) -> Fraction:
    return sum((_seconds(s) for s in segments), Fraction(0))


def _fps_attr(fps: Fraction) -> str:
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


def dash_mpd(videos: Sequence[VideoRendition], audio: AudioRendition | None = None) -> str:
    """Static MPD; representation directories double as Representation ids."""
    if not videos:
        raise ManifestError("an MPD needs at least one video rendition")
    listed: list[VideoRendition | AudioRendition] = [*videos, *([audio] if audio else [])]
    for rendition in listed:
        check_contiguous(rendition.name, rendition.segments)
    duration = max(_total_seconds(r.segments) for r in listed)
    max_segment = max(float(_seconds(s)) for r in videos for s in r.segments)

    mpd = ET.Element(
        "MPD",
        {
            "xmlns": DASH_NS,
            "profiles": DASH_PROFILE,
            "type": "static",
            "mediaPresentationDuration": _duration_iso(duration),
            "minBufferTime": _duration_iso(max_segment),
        },
    )
    period = ET.SubElement(mpd, "Period", {"id": "0", "start": "PT0S"})

    families: dict[str, list[VideoRendition]] = {}
    for video in videos:
        families.setdefault(_CODEC_FAMILY.get(video.codecs.split(".")[0], video.rung.codec), []).append(video)
    for set_id, group in enumerate(families.values()):
        adaptation = ET.SubElement(
            period,
            "AdaptationSet",
            {
                "id": str(set_id),
                "contentType": "video",
                "mimeType": "video/mp4",
                "segmentAlignment": "true",
                "startWithSAP": "1",
                "maxWidth": str(max(v.rung.width for v in group)),
                "maxHeight": str(max(v.rung.height for v in group)),
                "maxFrameRate": _fps_attr(max(v.rung.fps for v in group)),
            },
        )
        for video in group:
            target = target_duration(video.segments)
            representation = ET.SubElement(
                adaptation,
                "Representation",
                {
                    "id": video.name,
                    "codecs": video.codecs,
                    "bandwidth": str(peak_bitrate(video.segments, target)),
                    "width": str(video.rung.width),
                    "height": str(video.rung.height),
                    "frameRate": _fps_attr(video.rung.fps),
                    "sar": "1:1",
                },
            )
            _segment_template(representation, video.segments[0].timescale, video.segments)

    if audio is not None:
        attrs = {
            "id": str(len(families)),
            "contentType": "audio",
            "mimeType": "audio/mp4",
            "segmentAlignment": "true",
            "startWithSAP": "1",
        }
        if audio.language:
            attrs["lang"] = audio.language
        adaptation = ET.SubElement(period, "AdaptationSet", attrs)
        target = target_duration(audio.segments)
        representation = ET.SubElement(
            adaptation,
            "Representation",
            {
                "id": audio.name,
                "codecs": audio.codecs,
                "bandwidth": str(peak_bitrate(audio.segments, target)),
                "audioSamplingRate": str(audio.audio.sample_rate),
            },
        )
        ET.SubElement(
            representation,
            "AudioChannelConfiguration",
            {
                "schemeIdUri": "urn:mpeg:dash:23003:3:audio_channel_configuration:2011",
                "value": str(audio.audio.channels),
            },
        )
        _segment_template(representation, audio.segments[0].timescale, audio.segments)

    ET.indent(mpd)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(mpd, encoding="unicode") + "\n"


# ------------------------------------------------------------------------------------------- whole set


@dataclass(frozen=True)
class PackageFiles:
    multivariant: Path
    mpd: Path
    media_playlists: dict[str, Path]
    iframe_playlists: dict[str, Path]


def write_manifests(
    out_dir: Path, videos: Sequence[VideoRendition], audio: AudioRendition | None = None
) -> PackageFiles:
    """Write every manifest for the given renditions under `out_dir` (next to the rendition directories).

    Media playlists first, multivariant and MPD last, each by atomic rename: a player fetching the top-level
    manifest never finds a rendition playlist missing.
    """
    out_dir = Path(out_dir)
    media: dict[str, Path] = {}
    iframes: dict[str, Path] = {}
    for video in videos:
        media[video.name] = _write(
            out_dir / video.name / MEDIA_PLAYLIST_NAME, media_playlist(video.segments, name=video.name)
        )
        iframes[video.name] = _write(
            out_dir / video.name / IFRAME_PLAYLIST_NAME, iframe_playlist(video.segments, name=video.name)
        )
    if audio is not None:
        media[audio.name] = _write(
            out_dir / audio.name / MEDIA_PLAYLIST_NAME, media_playlist(audio.segments, name=audio.name)
        )
    multivariant = _write(out_dir / MULTIVARIANT_NAME, multivariant_playlist(videos, audio))
    mpd = _write(out_dir / MPD_NAME, dash_mpd(videos, audio))
    return PackageFiles(multivariant, mpd, media, iframes)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
