"""Encode chunks of a source into CMAF (fragmented MP4) segments, plus audio, poster and storyboard.

The hard requirement: chunks encoded independently (by different workers, in any order, retried any number
of times) must form one continuous track per rendition. How it is met:

- every chunk starts on a segment boundary, and the source is cut at a whole frame of the output rate:
  input seek to a quarter frame before the boundary, `fps=<rate>:start_time=<quarter frame>` to pick exactly
  the frames of the chunk, then `setpts=N+<first frame number>` so timestamps are absolute frame numbers;
- GOPs are closed and exactly one segment long (`-g`/`keyint_min` = frames per segment, no scene-cut
  keyframes, x264/x265 open-gop off, IDR forced every `segment_frames` frames);
- the MP4 muxer writes CMAF fragments (`cmaf`: negative composition offsets, no edit list, so the first
  sample's presentation time is its decode time) and `frag_discont` makes it keep the absolute decode time
  of the first packet as the fragment's `tfdt` instead of restarting at 0. The track timescale is fixed per
  rung, so the `moov` depends on nothing but the codec configuration: the init segment is byte-identical
  for every chunk (checked here against an existing one before it is overwritten);
- the output is split here, not by ffmpeg: `ftyp`+`moov` become `<rendition>/init.mp4`, each
  `moof`+`mdat` (one per GOP) gets a `styp`, a renumbered `mfhd` and becomes `<rendition>/seg_<n:05d>.m4s`.
  Every fragment's `tfdt` is checked against `n * segment duration` and must start with a sync sample.
  Files are written to a temporary name and renamed, so a retry overwrites and a reader never sees half a
  segment.

All renditions of a chunk can be encoded by one ffmpeg process (decode once, `split` filter, one output per
rung) or one process per rung; `bench/transcode_fanout.py` measures the difference.

Audio is encoded once for the whole file by ffmpeg's HLS muxer, whose cut points follow the cumulative
segment duration (no drift against the video segments), and normalised to the same file layout.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from processors.media import mp4
from processors.media.ladder import DEFAULT_SEGMENT_S, AudioRung, Chunk, Rung
from processors.media.tools import FFMPEG, ToolError, ToolLimits, run_tool, untrusted_input_args

INIT_NAME = "init.mp4"
SEGMENT_PATTERN = "seg_{number:05d}.m4s"
STYP = mp4.make_styp()
# Encoders reserve a lot of address space (frame pools, lookahead, per-thread stacks); 8 GiB covers a full
# 2160p ladder in one process while still stopping a runaway.
ENCODE_LIMITS = ToolLimits(timeout_s=900.0, memory_bytes=8 * 1024**3)
MOVFLAGS = "+frag_keyframe+empty_moov+default_base_moof+cmaf+frag_discont+skip_trailer"


class EncodeError(RuntimeError):
    """The encoder failed or its output breaks the continuity rules; the chunk must not be published."""


@dataclass(frozen=True)
class SegmentInfo:
    """One media segment file, as the manifests and the SegmentReady event need it."""

    number: int
    start_s: float
    duration_s: float
    size_bytes: int
    path: Path
    timescale: int
    start_ticks: int  # tfdt
    duration_ticks: int
    # Byte range (in this file) of the moof + the first sample, which is a keyframe: enough for a player to
    # show the picture, which is what EXT-X-I-FRAMES-ONLY byte ranges point at.
    keyframe_offset: int
    keyframe_size: int


@dataclass(frozen=True)
class RenditionChunk:
    """What one chunk produced for one rendition (or the whole audio track)."""

    rendition: str
    init_path: Path
    init_sha256: str  # equal for every chunk of a rendition; lets the manifest agent check it
    codecs: str  # RFC 6381, read from the init segment
    timescale: int
    segments: tuple[SegmentInfo, ...]


# ---------------------------------------------------------------------------------------------- video


def encode_chunk(
    source: Path,
    chunk: Chunk,
    rungs: Sequence[Rung],
    out_dir: Path,
    *,
    threads: int = 2,
    source_demuxer: str | None = None,
    limits: ToolLimits = ENCODE_LIMITS,
) -> dict[str, RenditionChunk]:
    """Encode `chunk` of `source` for `rungs` in one ffmpeg process; returns results by rendition name.

    Pass a single rung to encode one rendition per call. `threads` caps decoder, filter and encoder threads
    (per encoder: with several rungs in one process they share the cores). Every rung must have the same
    segment duration (they do when they come from one `plan_ladder`).
    """
    if not rungs:
        raise ValueError("no rungs to encode")
    seg_durations = {rung.segment_duration for rung in rungs}
    if len(seg_durations) != 1:
        raise ValueError(f"rungs disagree on the segment duration: {sorted(seg_durations)}")
    # Absolute paths: the tools run in an empty scratch directory, not in ours.
    out_dir = Path(out_dir).resolve()
    rendition_dirs = [out_dir / rung.name for rung in rungs]
    for directory in rendition_dirs:
        directory.mkdir(parents=True, exist_ok=True)
    names = [rung.name for rung in rungs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate rendition names in {names}")

    with tempfile.TemporaryDirectory(prefix=".chunk-", dir=out_dir) as tmp:
        outputs = [Path(tmp) / f"{i}.mp4" for i in range(len(rungs))]
        command = chunk_command(source, chunk, rungs, outputs, threads=threads, source_demuxer=source_demuxer)
        try:
            run_tool(command, limits)
        except ToolError as exc:
            raise EncodeError(f"encoding chunk {chunk.index} failed: {exc}") from exc
        return {
            rung.name: _split_video(output, rung, chunk, directory)
            for rung, output, directory in zip(rungs, outputs, rendition_dirs, strict=True)
        }


def chunk_frames(chunk: Chunk, rung: Rung) -> int:
    """Frames `rung` has in `chunk`: whole segments, or what is left of the source in the last chunk."""
    if not chunk.is_last:
        return chunk.segment_count * rung.segment_frames
    return math.ceil(chunk.duration_s * rung.fps - Fraction(1, 1000))


def chunk_command(
    source: Path,
    chunk: Chunk,
    rungs: Sequence[Rung],
    outputs: Sequence[Path],
    *,
    threads: int = 2,
    source_demuxer: str | None = None,
) -> list[str]:
    """The ffmpeg command that encodes `chunk` for `rungs` into one fragmented MP4 per rung."""
    fastest = max(rung.fps for rung in rungs)
    # Seek a quarter frame early: a frame whose timestamp rounds to a hair before the boundary must not be
    # trimmed by the accurate seek. The fps filter's start_time then re-anchors the grid on the boundary.
    lead = min(chunk.start_s, Fraction(1, 4) / fastest)
    seek = chunk.start_s - lead
    # Read a second past the chunk so the fps filter sees the frame after the last one it must emit.
    read = chunk.duration_s + lead + 1

    graph: list[str] = [f"[0:v:0]split={len(rungs)}" + "".join(f"[s{i}]" for i in range(len(rungs)))]
    for i, rung in enumerate(rungs):
        first_frame = chunk.first_segment * rung.segment_frames
        graph.append(
            f"[s{i}]fps=fps={rung.fps}:start_time={float(lead):.6f}:round=near,"
            f"setpts=N+{first_frame},"
            f"scale=w={rung.width}:h={rung.height}:flags=bicubic,setsar=1,format=yuv420p[v{i}]"
        )

    command = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error"]
    command += ["-threads", str(threads), "-ss", f"{float(seek):.6f}", "-t", f"{float(read):.6f}"]
    command += untrusted_input_args(source, demuxer=source_demuxer)
    command += ["-filter_complex_threads", str(threads), "-filter_complex", ";".join(graph)]
    for i, (rung, output) in enumerate(zip(rungs, outputs, strict=True)):
        command += ["-map", f"[v{i}]", "-an", "-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1"]
        # passthrough: the timestamps from setpts are final; the default cfr sync would pad from 0.
        command += ["-fps_mode", "passthrough", "-frames:v", str(chunk_frames(chunk, rung))]
        command += _video_codec_args(rung, threads)
        command += ["-video_track_timescale", str(rung.timescale), "-movflags", MOVFLAGS]
        command += ["-fflags", "+bitexact", "-f", "mp4", str(output)]
    return command


def _video_codec_args(rung: Rung, threads: int) -> list[str]:
    gop = rung.segment_frames
    rate = ["-maxrate", str(rung.bitrate), "-bufsize", str(rung.buffer_size)]
    keyframes = ["-g", str(gop), "-keyint_min", str(gop), "-force_key_frames", f"expr:eq(mod(n,{gop}),0)"]
    if rung.codec == "h264":
        return [
            "-c:v",
            "libx264",
            "-preset",
            rung.preset,
            "-profile:v",
            "high",
            "-crf",
            str(rung.crf),
            *rate,
            *keyframes,
            "-sc_threshold",
            "0",
            "-forced-idr",
            "1",
            "-x264-params",
            "open-gop=0",
            "-threads",
            str(threads),
        ]
    if rung.codec == "hevc":
        params = (
            f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0:"
            f"pools={threads}:frame-threads={min(threads, 2)}:log-level=error"
        )
        return [
            "-c:v",
            "libx265",
            # hvc1 (parameter sets in the init segment only) is what Apple requires for HEVC in HLS.
            "-tag:v",
            "hvc1",
            "-preset",
            rung.preset,
            "-profile:v",
            "main",
            "-crf",
            str(rung.crf),
            *rate,
            *keyframes,
            "-forced-idr",
            "1",
            "-x265-params",
            params,
        ]
    if rung.codec == "av1":
        # SVT-AV1 places key frames every `-g` frames and closes GOPs by default (irefresh-type=2).
        return [
            "-c:v",
            "libsvtav1",
            "-preset",
            rung.preset,
            "-crf",
            str(rung.crf),
            *keyframes,
            "-svtav1-params",
            f"lp={threads}:mbr={rung.bitrate // 1000}",
        ]
    raise ValueError(f"unknown codec {rung.codec!r}")


def _split_video(output: Path, rung: Rung, chunk: Chunk, directory: Path) -> RenditionChunk:
    data = output.read_bytes()
    first_moof = next((box for box in mp4.iter_boxes(data) if box.type == "moof"), None)
    if first_moof is None:
        raise EncodeError(f"{rung.name}: the encoder produced no media for chunk {chunk.index}")
    init = data[: first_moof.offset]
    track = mp4.parse_init(init)
    if track.timescale != rung.timescale:
        raise EncodeError(f"{rung.name}: track timescale {track.timescale}, expected {rung.timescale}")
    fragments = mp4.parse_fragments(data, track, first_moof.offset)

    seg_ticks = rung.segment_ticks
    expected_count = chunk.segment_count
    if len(fragments) != expected_count:
        raise EncodeError(
            f"{rung.name}: chunk {chunk.index} produced {len(fragments)} fragments, expected {expected_count} "
            "(a keyframe off the segment grid, or the source ended early)"
        )
    segments: list[tuple[int, bytes, mp4.Fragment]] = []
    for offset, fragment in enumerate(fragments):
        number = chunk.first_segment + offset
        if fragment.base_media_decode_time != number * seg_ticks:
            raise EncodeError(
                f"{rung.name}: segment {number} starts at tick {fragment.base_media_decode_time}, "
                f"expected {number * seg_ticks}: the track would not be continuous"
            )
        if not fragment.starts_with_sync_sample:
            raise EncodeError(f"{rung.name}: segment {number} does not start with a keyframe")
        is_final = chunk.is_last and offset == len(fragments) - 1
        if fragment.duration != seg_ticks and not (is_final and fragment.duration < seg_ticks):
            raise EncodeError(f"{rung.name}: segment {number} lasts {fragment.duration} ticks, expected {seg_ticks}")
        segments.append((number, data[fragment.moof.offset : fragment.mdat.end], fragment))

    init_path = _write_init(directory, init, rung.name)
    infos = [
        _write_segment(directory, number, body, fragment, fragment.moof.offset, track.timescale)
        for number, body, fragment in segments
    ]
    return RenditionChunk(
        rendition=rung.name,
        init_path=init_path,
        init_sha256=hashlib.sha256(init).hexdigest(),
        codecs=track.codecs,
        timescale=track.timescale,
        segments=tuple(infos),
    )


def _write_init(directory: Path, init: bytes, rendition: str) -> Path:
    path = directory / INIT_NAME
    if path.exists() and path.read_bytes() != init:
        # Another chunk of this rendition was encoded with a different codec configuration (other ffmpeg
        # build, other tuning): its segments cannot share one EXT-X-MAP with ours.
        raise EncodeError(f"{rendition}: init segment differs from the one already in {directory}")
    _atomic_write(path, init)
    return path


def _write_segment(
    directory: Path, number: int, body: bytes, fragment: mp4.Fragment, base: int, timescale: int
) -> SegmentInfo:
    """Write styp + moof + mdat with mfhd renumbered to the segment number (chunks each restart at 1)."""
    buffer = bytearray(STYP + body)
    shift = len(STYP) - base
    buffer[fragment.sequence_number_offset + shift : fragment.sequence_number_offset + shift + 4] = (
        number + 1
    ).to_bytes(4, "big")
    path = directory / SEGMENT_PATTERN.format(number=number)
    _atomic_write(path, bytes(buffer))
    keyframe_end = fragment.first_sample_offset + fragment.first_sample_size + shift
    return SegmentInfo(
        number=number,
        start_s=fragment.base_media_decode_time / timescale,
        duration_s=fragment.duration / timescale,
        size_bytes=len(buffer),
        path=path,
        timescale=timescale,
        start_ticks=fragment.base_media_decode_time,
        duration_ticks=fragment.duration,
        keyframe_offset=fragment.moof.offset + shift,
        keyframe_size=keyframe_end - (fragment.moof.offset + shift),
    )


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- audio


def encode_audio(
    source: Path,
    out_dir: Path,
    segment_duration_s: Fraction | float = DEFAULT_SEGMENT_S,
    audio: AudioRung | None = None,
    *,
    threads: int = 2,
    source_demuxer: str | None = None,
    limits: ToolLimits = ENCODE_LIMITS,
) -> RenditionChunk:
    """Encode the first audio stream of the whole file into `<out_dir>/<audio.name>/` (init + segments).

    Pass the ladder's `segment_duration` (4.004 s at NTSC rates) so audio and video segments line up. Only
    call it for sources with audio (`SourceInfo.has_audio`). The AAC encoder's 1024 priming samples are kept
    at the start (21 ms at 48 kHz), as with any fMP4 AAC track without an edit list.
    """
    audio = audio or AudioRung()
    out_dir = Path(out_dir).resolve()
    directory = out_dir / audio.name
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".audio-", dir=out_dir) as tmp:
        work = Path(tmp)
        command = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-threads", str(threads)]
        command += untrusted_input_args(source, demuxer=source_demuxer)
        command += ["-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1"]
        # async resampling fills timestamp gaps (phones drop audio packets) so audio stays in sync.
        command += ["-af", f"aresample={audio.sample_rate}:async=1:first_pts=0"]
        command += ["-c:a", "aac", "-profile:a", "aac_low", "-b:a", str(audio.bitrate)]
        command += ["-ac", str(audio.channels), "-ar", str(audio.sample_rate), "-threads", str(threads)]
        command += ["-f", "hls", "-hls_time", f"{float(segment_duration_s):.6f}", "-hls_playlist_type", "vod"]
        command += ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", INIT_NAME, "-start_number", "0"]
        command += ["-hls_segment_filename", str(work / "seg_%05d.m4s"), "-fflags", "+bitexact"]
        command += [str(work / "audio.m3u8")]
        try:
            run_tool(command, limits)
        except ToolError as exc:
            raise EncodeError(f"encoding audio failed: {exc}") from exc
        return _collect_audio(work, directory, audio.name)


def _collect_audio(work: Path, directory: Path, name: str) -> RenditionChunk:
    init = (work / INIT_NAME).read_bytes()
    track = mp4.parse_init(init)
    files = sorted(work.glob("seg_*.m4s"))
    if not files:
        raise EncodeError("the audio encoder produced no segments")
    infos: list[SegmentInfo] = []
    expected_start = 0
    for number, file in enumerate(files):
        if file.name != SEGMENT_PATTERN.format(number=number):
            raise EncodeError(f"unexpected audio segment name {file.name}")
        data = file.read_bytes()
        fragments = mp4.parse_fragments(data, track)
        if len(fragments) != 1:
            raise EncodeError(f"audio segment {number} has {len(fragments)} fragments")
        fragment = fragments[0]
        if fragment.base_media_decode_time != expected_start:
            raise EncodeError(
                f"audio segment {number} starts at {fragment.base_media_decode_time}, expected {expected_start}"
            )
        expected_start = fragment.end_time
        # Same layout as video segments (styp, moof, mdat): the muxer's sidx is dropped, nothing needs it.
        body = data[fragment.moof.offset : fragment.mdat.end]
        infos.append(_write_segment(directory, number, body, fragment, fragment.moof.offset, track.timescale))
    init_path = _write_init(directory, init, name)
    return RenditionChunk(
        rendition=name,
        init_path=init_path,
        init_sha256=hashlib.sha256(init).hexdigest(),
        codecs=track.codecs,
        timescale=track.timescale,
        segments=tuple(infos),
    )


# ------------------------------------------------------------------------------------ poster, storyboard

IMAGE_LIMITS = ToolLimits(timeout_s=300.0, memory_bytes=4 * 1024**3)


def make_poster(
    source: Path,
    at_s: float,
    out_path: Path,
    *,
    max_width: int = 1280,
    source_demuxer: str | None = None,
    threads: int = 2,
) -> Path:
    """Write one JPEG frame at `at_s` (display orientation, at most `max_width` wide) to `out_path`."""
    out_path = Path(out_path).resolve()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    command = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-threads", str(threads)]
    command += ["-ss", f"{max(0.0, at_s):.3f}", *untrusted_input_args(source, demuxer=source_demuxer)]
    command += ["-map", "0:v:0", "-frames:v", "1", "-an", "-sn", "-dn", "-map_metadata", "-1"]
    command += ["-vf", f"scale=w='min({max_width},iw)':h=-2:flags=bicubic,setsar=1"]
    command += ["-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p", "-f", "mjpeg", str(tmp)]
    try:
        run_tool(command, IMAGE_LIMITS)
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise EncodeError(f"no frame at {at_s:.3f} s for the poster")
        os.replace(tmp, out_path)
    except ToolError as exc:
        raise EncodeError(f"poster failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


@dataclass(frozen=True)
class Storyboard:
    sprite_path: Path
    vtt_path: Path
    interval_s: float
    count: int
    columns: int
    rows: int
    thumb_width: int
    thumb_height: int


def make_storyboard(
    source: Path,
    duration_s: float,
    out_dir: Path,
    *,
    display_width: int | None = None,
    display_height: int | None = None,
    interval_s: float = 5.0,
    thumb_width: int = 160,
    columns: int = 10,
    max_thumbs: int = 200,
    source_demuxer: str | None = None,
    threads: int = 2,
) -> Storyboard:
    """One sprite JPEG (`sprite.jpg`) of thumbnails every `interval_s` and a WebVTT (`storyboard.vtt`)
    whose cues point into it with `sprite.jpg#xywh=x,y,w,h` (the format players' thumbnail tracks read).

    Long videos get a longer interval so the sprite stays under `max_thumbs` pictures. Thumbnails keep the
    display aspect ratio: from `display_width`/`display_height` when given (SourceInfo has them), otherwise
    ffmpeg picks the height and it is read back from the sprite.
    """
    if duration_s <= 0:
        raise ValueError("duration must be positive")
    interval = max(interval_s, duration_s / max_thumbs)
    count = max(1, math.ceil(duration_s / interval - 1e-9))
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    thumb_height: int | None = None
    if display_width and display_height:
        thumb_height = max(2, int(round(thumb_width * display_height / display_width / 2)) * 2)

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    sprite = out_dir / "sprite.jpg"
    vtt = out_dir / "storyboard.vtt"
    tmp = sprite.with_name(f".{sprite.name}.{os.getpid()}.tmp")
    # fps=1/interval picks the frame nearest each tick; tile packs them and pads the grid at the end.
    filters = (
        f"fps=fps=1/{interval:.6f}:start_time=0:round=near,"
        f"scale=w={thumb_width}:h={thumb_height or -2}:flags=bicubic,setsar=1,"
        f"tile=layout={columns}x{rows}"
    )
    command = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-threads", str(threads)]
    command += [*untrusted_input_args(source, demuxer=source_demuxer), "-map", "0:v:0", "-an", "-sn", "-dn"]
    command += ["-vf", filters, "-frames:v", "1", "-fps_mode", "passthrough"]
    command += ["-c:v", "mjpeg", "-q:v", "4", "-pix_fmt", "yuvj420p", "-f", "mjpeg", str(tmp)]
    try:
        run_tool(command, IMAGE_LIMITS)
        if thumb_height is None:
            thumb_height = jpeg_size(tmp.read_bytes())[1] // rows
        os.replace(tmp, sprite)
    except ToolError as exc:
        raise EncodeError(f"storyboard failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)

    lines = ["WEBVTT", ""]
    for i in range(count):
        start = i * interval
        end = min(duration_s, (i + 1) * interval)
        x, y = (i % columns) * thumb_width, (i // columns) * thumb_height
        lines += [
            f"{_vtt_time(start)} --> {_vtt_time(end)}",
            f"{sprite.name}#xywh={x},{y},{thumb_width},{thumb_height}",
            "",
        ]
    _atomic_write(vtt, "\n".join(lines).encode())
    return Storyboard(sprite, vtt, interval, count, columns, rows, thumb_width, thumb_height)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame marker."""
    pos = 2
    while pos + 9 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        # SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC), carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return width, height
        pos += 2 + length
    raise EncodeError("not a JPEG with a frame header")


def _vtt_time(seconds: float) -> str:
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"
