"""Probe an upload and decide whether the platform accepts it.

`probe_source(path, limits)` returns a `SourceInfo` or raises `RejectedUpload(reason)` with a reason a person
can read ("the file is empty", "HLS playlists are not accepted", "longer than the 4 h limit", ...).

Order of checks, cheapest and safest first:

1. the file is a regular, non-empty file below the size limit (no ffprobe at all);
2. ffprobe under the confinement of `tools.py` (only the `file` protocol, only the whitelisted demuxers and
   decoders, empty cwd, memory/time limits). A playlist or concat script is refused by libavformat's
   format whitelist *before* its demuxer reads anything, so the URLs inside are never opened;
3. the result is checked again in Python (format in the whitelist, a real video stream, limits on
   duration, pixels, frame rate and stream count);
4. a short decode of the first and the last second: catches truncated files whose index promises more
   than the file holds (an MP4 with `moov` up front cut in half probes fine but has no tail).

Run `python -m processors.media.probe FILE` to print the SourceInfo or the rejection reason.
"""

from __future__ import annotations

import json
import math
import re
import stat
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from processors.media.tools import (
    ALLOWED_DEMUXERS,
    FFMPEG,
    FFPROBE,
    ToolError,
    ToolLimits,
    run_tool,
    untrusted_input_args,
)


class RejectedUpload(Exception):
    """The upload is not something we will transcode; `reason` is meant for the uploader."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ProbeLimits:
    max_bytes: int = 20 * 1024**3
    max_duration_s: float = 4 * 3600.0
    min_duration_s: float = 0.1
    # 4096x2304 covers DCI 4K and UHD in either orientation.
    max_pixels: int = 4096 * 2304
    max_side: int = 4096
    max_fps: float = 240.0
    max_streams: int = 16
    allowed_demuxers: tuple[str, ...] = ALLOWED_DEMUXERS
    decode_check: bool = True
    tool: ToolLimits = field(default_factory=lambda: ToolLimits(timeout_s=30.0, max_output_bytes=0))
    decode_tool: ToolLimits = field(default_factory=lambda: ToolLimits(timeout_s=60.0, max_output_bytes=0))


@dataclass(frozen=True)
class SourceInfo:
    """What the ladder planner and the encoder need to know about an accepted upload."""

    width: int  # display size: rotation and sample aspect ratio applied, like ffmpeg's autorotate
    height: int
    fps: Fraction  # average frame rate of the video stream as measured, not yet snapped to a standard rate
    duration_s: float
    has_audio: bool
    video_codec: str
    audio_codec: str | None
    bit_rate: int | None  # bits/s of the whole file
    demuxer: str  # libavformat demuxer to pin when reading it again ("mov", "matroska", ...)
    format_name: str  # as ffprobe reports it, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    size_bytes: int
    rotation: int = 0  # quarter turns stored with the stream (0, 90, 180, 270); width/height already swapped
    coded_width: int = 0
    coded_height: int = 0
    pix_fmt: str = ""
    audio_channels: int | None = None
    audio_sample_rate: int | None = None

    @property
    def frame_count(self) -> int:
        """Frames at `fps` over `duration_s`, what a constant-frame-rate rendering of the source has."""
        return round(self.duration_s * self.fps)


# Human names for the demuxers people most often upload by mistake (or on purpose).
_DEMUXER_NAMES = {
    "hls": "an HLS playlist",
    "dash": "a DASH manifest",
    "concat": "an ffmpeg concat script",
    "image2": "an image sequence",
    "tty": "a text file",
    "lavfi": "a filter graph",
    "data": "raw data",
    "sdp": "an SDP description",
    "srt": "a subtitle file",
    "webvtt": "a subtitle file",
    "mp3": "an audio file",
    "wav": "an audio file",
    "aac": "an audio file",
    "flac": "an audio file",
    "ogg": "an Ogg file",
}
_WHITELIST_REFUSAL = re.compile(r"\[([\w,]+) @ 0x[0-9a-f]+\] Format not on whitelist")
_CODEC_REFUSAL = re.compile(r"Codec \(([\w-]+)\) not on whitelist")
_FORMAT_NAMES = "MP4/MOV, Matroska/WebM, AVI, MPEG-TS or FLV"


def probe_source(path: Path, limits: ProbeLimits | None = None) -> SourceInfo:
    """Accept or refuse the upload at `path` (a local file); see the module docstring."""
    limits = limits or ProbeLimits()
    path = Path(path)
    size = _check_file(path, limits)
    data = _ffprobe(path, limits)
    info = _source_info(data, size, limits)
    if limits.decode_check:
        _decode_check(path, info, limits)
    return info


def _check_file(path: Path, limits: ProbeLimits) -> int:
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise RejectedUpload("the upload was not found") from None
    if not stat.S_ISREG(st.st_mode):
        raise RejectedUpload("the upload is not a regular file")
    if st.st_size == 0:
        raise RejectedUpload("the file is empty (0 bytes)")
    if st.st_size > limits.max_bytes:
        raise RejectedUpload(f"the file is larger than the {limits.max_bytes / 1024**3:g} GiB limit")
    return st.st_size


def ffprobe_command(path: Path, limits: ProbeLimits) -> list[str]:
    """The exact ffprobe command `probe_source` runs (exposed so tests can assert the hardening)."""
    input_args = untrusted_input_args(path)
    # ffprobe takes the input without -i; keep the confinement options, swap "-i URL" for "URL".
    input_args[input_args.index("-format_whitelist") + 1] = ",".join(limits.allowed_demuxers)
    url = input_args[-1]
    return [
        FFPROBE,
        "-v",
        "error",
        "-hide_banner",
        *input_args[:-2],
        "-show_format",
        "-show_streams",
        "-of",
        "json",
        url,
    ]


def _ffprobe(path: Path, limits: ProbeLimits) -> dict[str, Any]:
    try:
        result = run_tool(ffprobe_command(path, limits), limits.tool, check=False)
    except ToolError as exc:
        raise RejectedUpload(f"the file could not be analysed ({exc})") from exc
    if result.returncode != 0:
        raise RejectedUpload(_explain_ffprobe_failure(result.stderr))
    try:
        data: dict[str, Any] = json.loads(result.stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise RejectedUpload("the file could not be analysed (unreadable probe output)") from exc
    if "format" not in data:
        raise RejectedUpload(_explain_ffprobe_failure(result.stderr))
    return data


def _explain_ffprobe_failure(stderr: str) -> str:
    refused = _WHITELIST_REFUSAL.search(stderr)
    if refused:
        detected = refused.group(1).split(",")[0]
        what = _DEMUXER_NAMES.get(detected, f"in the '{detected}' format")
        return f"the file is {what}, not a video in an accepted container ({_FORMAT_NAMES})"
    codec = _CODEC_REFUSAL.search(stderr)
    if codec:
        return f"the file contains a stream in an unsupported codec ({codec.group(1)})"
    if "moov atom not found" in stderr:
        return "not a readable video: no MP4 index (moov) was found, the file is truncated or not an MP4"
    if "Invalid data found" in stderr:
        return f"not a readable video: the data is not a recognised {_FORMAT_NAMES} file"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    detail = lines[-1] if lines else "unknown error"
    return f"not a readable video ({_strip_url(detail)})"


def _strip_url(text: str) -> str:
    # Error lines start with the input URL; the uploader does not need our local paths.
    return re.sub(r"file:\S+:\s*", "", text).strip()


def _source_info(data: dict[str, Any], size: int, limits: ProbeLimits) -> SourceInfo:
    fmt = data.get("format", {})
    format_name = str(fmt.get("format_name", ""))
    demuxer = next((d for d in limits.allowed_demuxers if d in format_name.split(",")), None)
    if demuxer is None:
        # Belt and braces: libavformat already refused these via -format_whitelist.
        first = format_name.split(",")[0] or "unknown"
        what = _DEMUXER_NAMES.get(first, f"in the '{first}' format")
        raise RejectedUpload(f"the file is {what}, not a video in an accepted container ({_FORMAT_NAMES})")

    streams: list[dict[str, Any]] = data.get("streams", [])
    if len(streams) > limits.max_streams:
        raise RejectedUpload(f"the file has {len(streams)} streams; at most {limits.max_streams} are accepted")
    videos = [s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not videos:
        kind = "an audio-only file" if audios else "not a video"
        raise RejectedUpload(f"the file is {kind}: it has no video stream")
    video = videos[0]
    audio = audios[0] if audios else None

    coded_w, coded_h = int(video.get("width") or 0), int(video.get("height") or 0)
    if coded_w <= 0 or coded_h <= 0:
        raise RejectedUpload("the video stream has no picture size (damaged or unsupported)")
    rotation = _rotation(video)
    width, height = _display_size(coded_w, coded_h, video.get("sample_aspect_ratio"), rotation)
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise RejectedUpload(
            f"the picture is {width}x{height}; the limit is {limits.max_side} pixels on the long side "
            f"and {limits.max_pixels} pixels in all"
        )

    fps = _frame_rate(video)
    if fps is None or fps <= 0:
        raise RejectedUpload("the video stream has no usable frame rate (damaged or a still image)")
    if fps > limits.max_fps:
        raise RejectedUpload(f"the frame rate is {float(fps):.3g} fps; at most {limits.max_fps:g} is accepted")

    duration = _duration(fmt, video)
    if duration is None:
        raise RejectedUpload("the file has no duration (damaged, or a live stream recording)")
    if duration > limits.max_duration_s:
        raise RejectedUpload(
            f"the video is {duration / 60:.1f} min long; the limit is {limits.max_duration_s / 60:g} min"
        )
    if duration < limits.min_duration_s:
        raise RejectedUpload(f"the video is only {duration:.3f} s long")

    bit_rate = fmt.get("bit_rate")
    return SourceInfo(
        width=width,
        height=height,
        fps=fps,
        duration_s=duration,
        has_audio=audio is not None,
        video_codec=str(video.get("codec_name", "unknown")),
        audio_codec=str(audio.get("codec_name")) if audio else None,
        bit_rate=int(bit_rate) if bit_rate not in (None, "N/A") else None,
        demuxer=demuxer,
        format_name=format_name,
        size_bytes=size,
        rotation=rotation,
        coded_width=coded_w,
        coded_height=coded_h,
        pix_fmt=str(video.get("pix_fmt", "")),
        audio_channels=int(audio["channels"]) if audio and audio.get("channels") else None,
        audio_sample_rate=int(audio["sample_rate"]) if audio and audio.get("sample_rate") else None,
    )


def _rotation(video: dict[str, Any]) -> int:
    """Quarter-turn rotation stored with the stream, as 0/90/180/270 (90 and 270 swap width and height).

    ffmpeg 5.x reports the display matrix as side data; older muxers wrote a "rotate" tag.
    """
    degrees: float = 0
    for side in video.get("side_data_list", []) or []:
        if "rotation" in side:
            degrees = float(side["rotation"])
            break
    else:
        tag = (video.get("tags") or {}).get("rotate")
        if tag is not None:
            try:
                degrees = float(tag)
            except ValueError:
                degrees = 0
    return int(round(degrees / 90.0)) * 90 % 360


def _display_size(width: int, height: int, sar: str | None, rotation: int) -> tuple[int, int]:
    if sar and ":" in sar:
        num, den = (int(x) for x in sar.split(":", 1))
        if num > 0 and den > 0 and num != den:
            width = int(round(width * num / den))
    if rotation in (90, 270):
        width, height = height, width
    return width, height


def _frame_rate(video: dict[str, Any]) -> Fraction | None:
    # avg_frame_rate is what a phone's variable-rate recording averages to; r_frame_rate can be a timebase
    # artefact (e.g. 90000/1) for such files, so it is only the fallback.
    for key in ("avg_frame_rate", "r_frame_rate"):
        raw = video.get(key)
        if not raw or raw in ("0/0", "0/1"):
            continue
        try:
            value = Fraction(raw)
        except (ValueError, ZeroDivisionError):
            continue
        if value > 0:
            return value
    return None


def _duration(fmt: dict[str, Any], video: dict[str, Any]) -> float | None:
    # Prefer the video stream's own duration: an audio track that runs longer must not add frames.
    for raw in (video.get("duration"), fmt.get("duration")):
        if raw is None:
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and value > 0:
            return value
    return None


# Demuxers whose header/index states the duration up front: a truncated file still claims the full length,
# so its tail has to be decoded to notice. (MPEG-TS, FLV and AVI without an index measure what is there.)
_INDEXED_DEMUXERS = frozenset({"mov", "matroska"})
# Long enough to reach a decodable picture at the start of a file that opens mid-GOP (MPEG-TS recordings);
# short at the end, where a truncated file has nothing left.
_HEAD_WINDOW_S = 2.0
_TAIL_WINDOW_S = 1.0


def _decode_check(path: Path, info: SourceInfo, limits: ProbeLimits) -> None:
    """Decode the first and (for indexed containers) the last seconds; both must produce pictures.

    Error lines alone do not reject: a seek into a long GOP legitimately logs missing references. A failed
    exit (`-xerror`) or a window without a single decoded picture does.
    """
    check_tail = info.demuxer in _INDEXED_DEMUXERS
    command = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-xerror", "-threads", "1"]
    command += ["-t", f"{min(_HEAD_WINDOW_S, info.duration_s):.3f}"]
    command += untrusted_input_args(path, demuxer=info.demuxer)
    if check_tail:
        command += ["-threads", "1", "-sseof", f"-{min(_TAIL_WINDOW_S, info.duration_s):.3f}"]
        command += untrusted_input_args(path, demuxer=info.demuxer)
    command += ["-map", "0:v:0"] + (["-map", "1:v:0"] if check_tail else [])
    # framecrc prints one line per decoded frame, prefixed with the output stream index: cheap to count.
    command += ["-f", "framecrc", "-"]
    try:
        result = run_tool(command, limits.decode_tool, check=False)
    except ToolError as exc:
        raise RejectedUpload(f"the video could not be decoded ({exc})") from exc
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    if result.returncode != 0:
        detail = _strip_url(errors[-1]) if errors else f"exit status {result.returncode}"
        raise RejectedUpload(f"the video is damaged or truncated: decoding failed ({detail})")
    counts = {0: 0, 1: 0}
    for line in result.stdout.decode("ascii", "replace").splitlines():
        if line and not line.startswith("#"):
            stream = int(line.split(",", 1)[0])
            counts[stream] = counts.get(stream, 0) + 1
    if counts[0] == 0:
        raise RejectedUpload("the video is damaged: its first seconds have no decodable picture")
    if check_tail and counts[1] == 0:
        raise RejectedUpload("the video is truncated: its last seconds have no decodable picture")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m processors.media.probe FILE", file=sys.stderr)
        return 2
    try:
        info = probe_source(Path(argv[0]))
    except RejectedUpload as exc:
        print(f"rejected: {exc.reason}")
        return 1
    print(info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
