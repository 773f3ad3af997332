"""Test media generated with ffmpeg at test time (never committed), and small decode helpers.

Imported by the media tests directly (pytest puts this directory on sys.path), so it needs no conftest.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

FFMPEG = "ffmpeg"


def make_clip(
    path: Path,
    *,
    size: str = "640x360",
    rate: str = "30",
    seconds: float = 10.0,
    audio: bool = True,
    video_filter: str | None = None,
    extra: tuple[str, ...] = (),
) -> Path:
    """testsrc2 (+ a 440 Hz sine) encoded as H.264/AAC; `video_filter` replaces testsrc2's picture."""
    source = f"testsrc2=size={size}:rate={rate}:duration={seconds}"
    if video_filter is not None:
        source = f"nullsrc=size={size}:rate={rate}:duration={seconds},{video_filter}"
    command = [FFMPEG, "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", source]
    if audio:
        command += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-threads", "2"]
    if audio:
        command += ["-c:a", "aac", "-b:a", "96k"]
    command += [*extra, str(path)]
    subprocess.run(command, check=True)
    return path


def decode_frames(url: Path | str, *, select: str = "0:v:0") -> list[tuple[int, int]]:
    """(pts, duration) of every decoded frame, in the stream's time base, via ffmpeg's framemd5 muxer."""
    result = subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-i", str(url), "-map", select, "-f", "framemd5", "-"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert result.stderr == "", result.stderr
    frames = []
    for line in result.stdout.splitlines():
        if line.startswith("#"):
            continue
        _stream, _dts, pts, duration, *_ = (part.strip() for part in line.split(","))
        frames.append((int(pts), int(duration)))
    return frames


def decode_all(url: Path | str) -> str:
    """Decode every stream of `url`; returns ffmpeg's stderr at level error (empty when clean)."""
    result = subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-i", str(url), "-map", "0", "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def frame_lumas(url: Path | str) -> list[float]:
    """Mean luma (Y as coded, limited range) of every decoded frame of the first video stream.

    Frames are scaled to 8x8 and kept as yuv420p: 64 bytes of Y, then 16 + 16 of chroma. (Converting to
    grey would expand the range and shift every value.)"""
    result = subprocess.run(
        [
            FFMPEG,
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(url),
            "-map",
            "0:v:0",
            "-vf",
            "scale=8:8:flags=area,format=yuv420p",
            "-f",
            "rawvideo",
            "-",
        ],
        check=True,
        capture_output=True,
    )
    data = result.stdout
    return [sum(data[i : i + 64]) / 64 for i in range(0, len(data), 96)]


def ffprobe_json(path: Path, *entries: str) -> str:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", ",".join(entries), "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout
