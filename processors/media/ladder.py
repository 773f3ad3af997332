"""Per-title encoding ladder and segment-aligned chunk plan.

`plan_ladder(info)` turns a probed source into the renditions worth encoding; `plan_chunks(...)` cuts the
timeline into short, segment-aligned pieces so that each transcode request takes seconds, not minutes (a Kafka
consumer that holds one message for minutes trips max.poll.interval and the work is done twice).

The ladder is modelled on Apple's HLS Authoring Specification (section 2, "Video"): bit rates per resolution
for 16:9 H.264 at up to 30 fps, HEVC for the rungs above 1080p. Rules applied per title:

- no rung above the source (compared on the short side, so portrait videos get the same ladder rotated);
  a source below the lowest rung still gets one rung, at its own size;
- output frame rate: the source rate snapped to a standard rate (29.97, 30, 50, ...); above 60 it is halved
  until it is at most 60 (120 -> 60, 100 -> 50). Rungs below 540p (and not the top rung) run at half that rate
  when it is above 30, as Apple's table does; rungs above 30 fps get 1.5x the bit rate and a "60"-style suffix;
- H.264 on every rung, plus HEVC (or AV1) for 1440p and up, where H.264 needs 1.5-2x the bits;
- every rung uses the same segment duration: a whole number of frames close to 4 s (4.004 s at 29.97 fps),
  even when a half-rate rung exists so that its GOPs stay aligned with the full-rate ones;
- audio once: AAC-LC, 128 kbit/s, stereo, 48 kHz.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from processors.media.probe import SourceInfo

VideoCodec = Literal["h264", "hevc", "av1"]
TopCodec = Literal["hevc", "av1"]

# (nominal height, H.264 kbit/s at <= 30 fps, HEVC/AV1 kbit/s or None when no second codec at that height).
# Apple's table, mapped onto the usual height names; 1440p/2160p H.264 extrapolated (Apple lists HEVC only).
LADDER_TABLE: tuple[tuple[int, int, int | None], ...] = (
    (240, 300, None),
    (360, 730, None),
    (480, 1100, None),
    (540, 2000, None),
    (720, 4500, None),
    (1080, 7800, None),
    (1440, 12000, 8100),
    (2160, 20000, 16800),
)
SECOND_CODEC_MIN_HEIGHT = 1440
FULL_RATE_MIN_HEIGHT = 540
HIGH_FPS_BITRATE_FACTOR = Fraction(3, 2)
MAX_OUTPUT_FPS = Fraction(60)
STANDARD_FRAME_RATES: tuple[Fraction, ...] = (
    Fraction(24000, 1001),
    Fraction(24),
    Fraction(25),
    Fraction(30000, 1001),
    Fraction(30),
    Fraction(48),
    Fraction(50),
    Fraction(60000, 1001),
    Fraction(60),
)
DEFAULT_SEGMENT_S = 4


@dataclass(frozen=True)
class EncoderTuning:
    """Speed/quality knobs. They change the codec configuration, so one video must use one tuning throughout
    (every chunk of a rendition has to produce a byte-identical init segment)."""

    x264_preset: str = "veryfast"
    x265_preset: str = "fast"
    svtav1_preset: str = "10"
    # Capped CRF: quality-driven, with the ladder bit rate as VBV ceiling, so easy titles get fewer bits.
    h264_crf: int = 23
    hevc_crf: int = 26
    av1_crf: int = 32


@dataclass(frozen=True)
class Rung:
    """One video rendition to encode."""

    name: str  # "360p", "720p60", "2160p-hevc"
    codec: VideoCodec
    width: int
    height: int
    fps: Fraction
    bitrate: int  # bit/s: nominal, also the VBV max rate
    buffer_size: int  # bits: VBV buffer
    segment_frames: int  # frames per segment (= GOP length) at this rung's fps
    timescale: int  # MP4 track timescale; a multiple of fps' numerator so every frame is a whole tick count
    preset: str
    crf: int

    @property
    def segment_duration(self) -> Fraction:
        return self.segment_frames / self.fps

    @property
    def frame_ticks(self) -> int:
        return int(self.timescale / self.fps)

    @property
    def segment_ticks(self) -> int:
        return self.segment_frames * self.frame_ticks


@dataclass(frozen=True)
class AudioRung:
    name: str = "audio"
    codec: Literal["aac"] = "aac"
    bitrate: int = 128_000
    channels: int = 2
    sample_rate: int = 48_000


@dataclass(frozen=True)
class Ladder:
    rungs: tuple[Rung, ...]  # lowest first
    audio: AudioRung | None
    fps: Fraction  # output frame rate of the full-rate rungs
    segment_duration: Fraction  # seconds, the same for every rung
    tuning: EncoderTuning = field(default_factory=EncoderTuning)

    @property
    def lowest(self) -> Rung:
        return self.rungs[0]

    def rung(self, name: str) -> Rung:
        for rung in self.rungs:
            if rung.name == name:
                return rung
        raise KeyError(name)


def output_frame_rate(source_fps: Fraction) -> Fraction:
    """The constant frame rate the ladder encodes at: standard rates snapped, > 60 halved down to <= 60."""
    fps = Fraction(source_fps)
    while fps > MAX_OUTPUT_FPS * Fraction(1001, 1000):
        fps /= 2
    # Phones record variable frame rate; their average (29.83, 59.7, ...) means the nearby standard rate.
    nearest = min(STANDARD_FRAME_RATES, key=lambda std: abs(std - fps))
    if abs(nearest - fps) / nearest <= Fraction(2, 100):
        return nearest
    if fps.denominator in (1, 1001):
        return fps
    # Anything else (12.5, 15.2, ...) is rounded to a whole rate, at least 1.
    return Fraction(max(1, round(fps)))


def reduced_frame_rate(fps: Fraction) -> Fraction:
    """Frame rate of the low rungs: at most 30, by halving (so GOPs of both rates stay aligned)."""
    return fps / 2 if fps > 30 * Fraction(1001, 1000) else fps


def segment_frames(fps: Fraction, target_s: float = DEFAULT_SEGMENT_S, *, even: bool = False) -> int:
    frames = max(1, round(fps * Fraction(target_s)))
    if even and frames % 2:
        frames += 1
    return frames


def track_timescale(fps: Fraction) -> int:
    # A power-of-two multiple of the rate's numerator, at least 10000: 30 -> 15360, 25 -> 12800,
    # 60 -> 15360, 30000/1001 -> 30000 (ffmpeg's own defaults), and every frame is a whole number of ticks.
    timescale = fps.numerator
    while timescale < 10000:
        timescale *= 2
    return timescale


def _even(value: float | Fraction) -> int:
    return max(2, int(round(value / 2)) * 2)


def plan_ladder(
    info: SourceInfo,
    *,
    top_codec: TopCodec | None = "hevc",
    segment_target_s: float = DEFAULT_SEGMENT_S,
    tuning: EncoderTuning | None = None,
) -> Ladder:
    """Renditions for this source, lowest first. See the module docstring for the rules."""
    tuning = tuning or EncoderTuning()
    fps = output_frame_rate(info.fps)
    low_fps = reduced_frame_rate(fps)
    seg_frames = segment_frames(fps, segment_target_s, even=low_fps != fps)
    segment_duration = seg_frames / fps

    portrait = info.height > info.width
    short_side, long_side = sorted((info.width, info.height))
    aspect = Fraction(long_side, short_side)

    heights = [(h, kbps, top) for h, kbps, top in LADDER_TABLE if h <= short_side]
    if not heights:
        # Smaller than the lowest rung: one rung at the source size, bit rate scaled by area.
        base_h, base_kbps, _ = LADDER_TABLE[0]
        scaled = max(100, round(base_kbps * short_side * long_side / (base_h * base_h * 16 / 9)))
        heights = [(_even(short_side), scaled, None)]

    rungs: list[Rung] = []
    for index, (height, kbps, top_kbps) in enumerate(heights):
        is_top = index == len(heights) - 1
        rung_fps = fps if (height >= FULL_RATE_MIN_HEIGHT or is_top) else low_fps
        width = _even(height * aspect)
        w, h = (height, width) if portrait else (width, height)
        suffix = f"{round(rung_fps)}" if rung_fps > 31 else ""
        frames = seg_frames * rung_fps / fps
        if frames.denominator != 1:
            raise AssertionError(f"segment of {seg_frames} frames does not divide at {rung_fps} fps")
        codecs: list[tuple[VideoCodec, int, str]] = [("h264", kbps, "")]
        if top_codec is not None and top_kbps is not None and height >= SECOND_CODEC_MIN_HEIGHT:
            codecs.append((top_codec, top_kbps, f"-{top_codec}"))
        for codec, rate_kbps, codec_suffix in codecs:
            bitrate = rate_kbps * 1000
            if rung_fps > 31:
                bitrate = int(bitrate * HIGH_FPS_BITRATE_FACTOR)
            rungs.append(
                Rung(
                    name=f"{height}p{suffix}{codec_suffix}",
                    codec=codec,
                    width=w,
                    height=h,
                    fps=rung_fps,
                    bitrate=bitrate,
                    buffer_size=2 * bitrate,
                    segment_frames=int(frames),
                    timescale=track_timescale(rung_fps),
                    preset=_preset(codec, tuning),
                    crf=_crf(codec, tuning),
                )
            )
    audio = AudioRung() if info.has_audio else None
    return Ladder(rungs=tuple(rungs), audio=audio, fps=fps, segment_duration=segment_duration, tuning=tuning)


def _preset(codec: VideoCodec, tuning: EncoderTuning) -> str:
    return {"h264": tuning.x264_preset, "hevc": tuning.x265_preset, "av1": tuning.svtav1_preset}[codec]


def _crf(codec: VideoCodec, tuning: EncoderTuning) -> int:
    return {"h264": tuning.h264_crf, "hevc": tuning.hevc_crf, "av1": tuning.av1_crf}[codec]


# ------------------------------------------------------------------------------------------------ chunks


@dataclass(frozen=True)
class Chunk:
    """A segment-aligned piece of the timeline, encoded by one transcode request."""

    index: int
    first_segment: int  # number of its first media segment (segments are numbered from 0)
    segment_count: int
    start_s: Fraction  # = first_segment * segment duration
    duration_s: Fraction  # segment_count * segment duration, except for a shorter last chunk
    is_last: bool

    @property
    def end_s(self) -> Fraction:
        return self.start_s + self.duration_s

    @property
    def segments(self) -> range:
        return range(self.first_segment, self.first_segment + self.segment_count)


def plan_chunks(
    duration_s: float | Fraction,
    segment_duration_s: float | Fraction = DEFAULT_SEGMENT_S,
    chunk_segments: int = 2,
    *,
    fps: Fraction | None = None,
) -> list[Chunk]:
    """Cut `duration_s` into chunks of `chunk_segments` segments (the last one shorter).

    With `fps` the duration is first rounded to whole frames, so a container duration a hair past a segment
    boundary does not produce an empty last segment; without it, remainders under 1 ms are dropped.
    """
    if chunk_segments < 1:
        raise ValueError("chunk_segments must be at least 1")
    seg = Fraction(segment_duration_s)
    if seg <= 0:
        raise ValueError("segment duration must be positive")
    total = Fraction(duration_s)
    if fps is not None:
        total = Fraction(round(total * fps)) / fps
    elif total - math.floor(total / seg) * seg < Fraction(1, 1000):
        total = math.floor(total / seg) * seg
    if total <= 0:
        raise ValueError(f"nothing to encode in {float(duration_s):.3f} s")
    segment_total = math.ceil(total / seg)

    chunks: list[Chunk] = []
    for index, first in enumerate(range(0, segment_total, chunk_segments)):
        count = min(chunk_segments, segment_total - first)
        start = first * seg
        is_last = first + count == segment_total
        duration = (total - start) if is_last else count * seg
        chunks.append(Chunk(index, first, count, start, duration, is_last))
    return chunks


def ladder_chunks(ladder: Ladder, info: SourceInfo, chunk_segments: int = 2) -> list[Chunk]:
    """`plan_chunks` for a planned ladder: its segment duration, rounded to its frame rate."""
    return plan_chunks(info.duration_s, ladder.segment_duration, chunk_segments, fps=ladder.fps)


def total_frames(chunks: Sequence[Chunk], fps: Fraction) -> int:
    """Frames a constant-rate rendering at `fps` has over the chunked timeline."""
    return math.ceil(chunks[-1].end_s * fps - Fraction(1, 1000)) if chunks else 0
