"""Running ffmpeg and ffprobe on untrusted media.

Every invocation of ffmpeg/ffprobe in `processors.media` goes through `run_tool`, and every command that reads
an upload builds its input with `untrusted_input_args`. Together they implement the platform guarantee that
"untrusted media never reaches the network or the local filesystem beyond its own file":

- the only protocol is `file` (no http, tcp, data, concat, subfile, crypto, ...);
- only a short list of demuxers may open the file, so playlist-like formats (hls, concat, image2, tty,
  lavfi, ...) that would open further URLs are refused before they read anything;
- the path is passed as `file:<absolute path>`, so a name such as `concat:a|b` or `http://x` stays a name;
- the process runs in an empty temporary directory, with a scrubbed environment (no proxy variables),
  a wall-clock timeout and address-space / file-size / CPU limits.

The binaries are looked up on PATH; set FFMPEG_BIN / FFPROBE_BIN to use others.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FFMPEG = os.environ.get("FFMPEG_BIN", "ffmpeg")
FFPROBE = os.environ.get("FFPROBE_BIN", "ffprobe")

# Demuxers an upload may be opened with. Names are libavformat demuxer names; "mov" is the demuxer behind
# mp4/m4v/mov/3gp, "matroska" the one behind mkv/webm. Anything else (hls, dash, concat, image2, tty, lavfi,
# data, rtsp, sdp, raw elementary streams, ...) is refused at open time by `-format_whitelist`.
ALLOWED_DEMUXERS: tuple[str, ...] = ("mov", "matroska", "avi", "mpegts", "flv")

# Decoders an upload may reach. Limiting them keeps rarely-fuzzed decoders out of reach of hostile input.
ALLOWED_DECODERS: tuple[str, ...] = (
    # video
    "h264",
    "hevc",
    "vp8",
    "vp9",
    "av1",
    "libdav1d",
    "libaom-av1",
    "mpeg4",
    "mpeg2video",
    "mpeg1video",
    "prores",
    "dnxhd",
    "mjpeg",
    "flv",
    "h263",
    # audio
    "aac",
    "aac_fixed",
    "mp3",
    "mp3float",
    "mp2",
    "mp2float",
    "opus",
    "libopus",
    "vorbis",
    "flac",
    "alac",
    "ac3",
    "ac3_fixed",
    "eac3",
    "pcm_s16le",
    "pcm_s16be",
    "pcm_s24le",
    "pcm_s24be",
    "pcm_s32le",
    "pcm_f32le",
    "pcm_u8",
    "pcm_mulaw",
    "pcm_alaw",
    "adpcm_ima_qt",
    "amrnb",
    "amrwb",
    "libopencore_amrnb",
    "libopencore_amrwb",
    # ffprobe opens a decoder for every stream, so the harmless companions of real uploads must be here
    # too: subtitles, and cover art.
    "mov_text",
    "subrip",
    "webvtt",
    "ass",
    "ssa",
    "dvdsub",
    "pgssub",
    "dvbsub",
    "png",
    "bmp",
)


class ToolError(RuntimeError):
    """ffmpeg/ffprobe failed, timed out or was killed by a resource limit."""

    def __init__(self, message: str, *, stderr: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.returncode = returncode


@dataclass(frozen=True)
class ToolLimits:
    """Resource limits for one ffmpeg/ffprobe process."""

    timeout_s: float = 60.0
    # Address space, not resident memory: decoders reserve more than they touch, so this is generous.
    memory_bytes: int = 2 * 1024**3
    # Largest file the process may write; probing writes nothing, so callers that only read set 0.
    max_output_bytes: int | None = None
    cpu_seconds: int | None = None


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stdout: bytes
    stderr: str


def untrusted_input_args(path: Path, *, demuxer: str | None = None) -> list[str]:
    """Input options that confine a demuxer to one local file; put them right before (and including) `-i`.

    `demuxer`, when known from an earlier probe, pins the demuxer so a file cannot be re-detected as
    something else between probe and transcode.
    """
    args = [
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        ",".join(ALLOWED_DEMUXERS),
        "-codec_whitelist",
        ",".join(ALLOWED_DECODERS),
    ]
    if demuxer is not None:
        if demuxer not in ALLOWED_DEMUXERS:
            raise ValueError(f"demuxer {demuxer!r} is not in the allowed list {ALLOWED_DEMUXERS}")
        args += ["-f", demuxer]
        if demuxer == "mov":
            # mov can follow "data references" to other files. Off by default; keep it visibly off. (A
            # demuxer-private option, so it can only be given once the demuxer is pinned.)
            args += ["-enable_drefs", "0"]
    return [*args, "-i", file_url(path)]


def file_url(path: Path) -> str:
    """`file:` URL for a local path, so ffmpeg never parses the name as another protocol."""
    return "file:" + str(Path(path).resolve())


def tool_path(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ToolError(f"{name} is not installed or not on PATH (install Debian's ffmpeg package)")
    return found


def _limit_resources(limits: ToolLimits) -> None:
    # Runs in the child between fork and exec. Only setrlimit calls: no locks, no imports, no logging,
    # which keeps preexec_fn safe enough even when the parent has threads.
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.max_output_bytes is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_output_bytes, limits.max_output_bytes))
    if limits.cpu_seconds is not None:
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))


def run_tool(args: Sequence[str], limits: ToolLimits, *, check: bool = True) -> ToolResult:
    """Run ffmpeg/ffprobe (`args[0]` is the binary name) confined as described in the module docstring.

    Raises ToolError on timeout, on a resource-limit kill, and (with `check`) on a non-zero exit.
    """
    binary = tool_path(args[0])
    # A scrubbed environment: no http_proxy & co., and C locale so error text is predictable.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    with tempfile.TemporaryDirectory(prefix="media-tool-") as cwd:
        try:
            proc = subprocess.run(
                [binary, *args[1:]],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=limits.timeout_s,
                preexec_fn=lambda: _limit_resources(limits),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            stderr = (exc.stderr or b"").decode("utf-8", "replace")
            raise ToolError(f"{args[0]} timed out after {limits.timeout_s:g} s", stderr=stderr) from exc
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode < 0:
        raise ToolError(
            f"{args[0]} was killed by signal {-proc.returncode} (resource limit?)",
            stderr=stderr,
            returncode=proc.returncode,
        )
    if check and proc.returncode != 0:
        raise ToolError(
            f"{args[0]} exited with {proc.returncode}: {last_lines(stderr)}",
            stderr=stderr,
            returncode=proc.returncode,
        )
    return ToolResult(proc.returncode, proc.stdout, stderr)


def last_lines(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) if lines else "(no output)"
