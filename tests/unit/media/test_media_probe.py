"""probe_source: accepts a real clip, refuses everything else with a readable reason, reads nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import pytest
from media_clips import make_clip

from processors.media.probe import ProbeLimits, RejectedUpload, _rotation, ffprobe_command, probe_source


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe")
    make_clip(root / "good.mp4", size="320x180", seconds=3)
    make_clip(root / "faststart.mp4", size="320x180", seconds=3, extra=("-movflags", "+faststart"))
    make_clip(root / "good.mkv", size="320x180", seconds=3)
    make_clip(root / "video_only.mp4", size="320x180", seconds=3, audio=False)
    return root


def _reject(path: Path, limits: ProbeLimits | None = None) -> str:
    with pytest.raises(RejectedUpload) as info:
        probe_source(path, limits)
    assert info.value.reason == str(info.value)
    return info.value.reason


def test_accepts_a_good_clip(clips: Path) -> None:
    info = probe_source(clips / "good.mp4")
    assert (info.width, info.height) == (320, 180)
    assert info.fps == Fraction(30)
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert info.has_audio and info.audio_codec == "aac"
    assert info.video_codec == "h264"
    assert info.demuxer == "mov"
    assert info.bit_rate and info.bit_rate > 0
    assert info.frame_count == 90


def test_accepts_matroska_and_video_without_audio(clips: Path) -> None:
    assert probe_source(clips / "good.mkv").demuxer == "matroska"
    info = probe_source(clips / "video_only.mp4")
    assert not info.has_audio and info.audio_codec is None


def test_refuses_zero_bytes(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert "empty" in _reject(empty)


def test_refuses_text_named_mp4(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("these are not the frames you are looking for\n" * 20)
    assert "not a readable video" in _reject(text)


def test_refuses_an_image_named_mp4(tmp_path: Path) -> None:
    image = tmp_path / "still.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x64",
            "-frames:v",
            "1",
            "-f",
            "image2",
            "-c:v",
            "png",
            str(image),
        ],
        check=True,
    )
    assert "not a video in an accepted container" in _reject(image)


def test_refuses_truncated_mp4_with_index_at_the_end(clips: Path, tmp_path: Path) -> None:
    data = (clips / "good.mp4").read_bytes()
    cut = tmp_path / "half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert "truncated" in _reject(cut)


def test_refuses_truncated_mp4_with_index_up_front(clips: Path, tmp_path: Path) -> None:
    # The moov survives the cut, so ffprobe is happy; only decoding the tail notices.
    data = (clips / "faststart.mp4").read_bytes()
    cut = tmp_path / "half_faststart.mp4"
    cut.write_bytes(data[: len(data) // 2])
    probe_source(clips / "faststart.mp4")  # the uncut file is fine
    assert "truncated" in _reject(cut)


def test_refuses_truncated_matroska(clips: Path, tmp_path: Path) -> None:
    data = (clips / "good.mkv").read_bytes()
    cut = tmp_path / "half.mkv"
    cut.write_bytes(data[: len(data) // 2])
    assert "truncated" in _reject(cut)


def test_refuses_audio_only(tmp_path: Path) -> None:
    audio = tmp_path / "song.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac", str(audio)], check=True
    )
    assert "no video stream" in _reject(audio)


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        (ProbeLimits(max_duration_s=2.0), "long"),
        (ProbeLimits(max_pixels=320 * 180 - 1), "320x180"),
        (ProbeLimits(max_side=300), "320x180"),
        (ProbeLimits(max_fps=25.0), "frame rate"),
        (ProbeLimits(max_streams=1), "streams"),
        (ProbeLimits(max_bytes=1000), "larger"),
    ],
)
def test_refuses_beyond_limits(clips: Path, limits: ProbeLimits, words: str) -> None:
    assert words in _reject(clips / "good.mp4", limits)


def test_hls_playlist_renamed_mp4_is_refused(clips: Path, tmp_path: Path) -> None:
    playlist = tmp_path / "movie.mp4"
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\n{clips / 'good.mp4'}\n#EXTINF:4,\nfile:/etc/passwd\n"
        "#EXT-X-ENDLIST\n"
    )
    reason = _reject(playlist)
    assert "HLS playlist" in reason and "not a video in an accepted container" in reason


class _FifoWatch:
    """A named pipe that records whether anybody opened it for reading.

    A writer thread blocks in open(O_WRONLY) until a reader appears; if the thread is still blocked after
    the probe, nothing touched the pipe. (A regular file could be read without leaving a trace.)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.opened = threading.Event()
        self._thread = threading.Thread(target=self._wait_for_reader, daemon=True)
        self._thread.start()

    def _wait_for_reader(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        self.opened.set()
        os.close(fd)

    def close(self) -> None:
        if not self.opened.is_set():
            # Release the blocked writer by opening the read end ourselves.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self._thread.join(timeout=5)
            os.close(fd)
        self._thread.join(timeout=5)


@pytest.mark.parametrize(
    ("name", "header", "entry", "footer", "kind"),
    [
        ("hls", "#EXTM3U\n#EXT-X-TARGETDURATION:4\n", "#EXTINF:4,\n{}\n", "#EXT-X-ENDLIST\n", "HLS playlist"),
        ("concat", "ffconcat version 1.0\n", "file {}\n", "", "concat script"),
    ],
)
def test_playlists_pointing_elsewhere_are_refused_without_reading_anything(
    tmp_path: Path, name: str, header: str, entry: str, footer: str, kind: str
) -> None:
    # The pipe has a relative name with an extension both demuxers accept, so an unconfined ffprobe would
    # open it (the control below proves it); /etc/passwd is listed as well, for the obvious attack.
    watch = _FifoWatch(tmp_path / "secret.ts")
    upload = tmp_path / f"{name}.mp4"
    upload.write_text(header + entry.format("secret.ts") + entry.format("/etc/passwd") + footer)
    try:
        reason = _reject(upload)
        assert kind in reason and "accepted container" in reason
        assert not watch.opened.wait(0.5), "the probe opened a file named inside the upload"
    finally:
        watch.close()

    # Control: plain ffprobe follows the reference. (Without /etc/passwd: this ffmpeg's hls and concat
    # demuxers refuse such a playlist at parse time, before opening anything.)
    control = _FifoWatch(tmp_path / "control.ts")
    upload.write_text(header + entry.format("control.ts") + footer)
    try:
        subprocess.run(["ffprobe", "-v", "quiet", f"file:{upload}"], timeout=30, check=False)
        assert control.opened.wait(5), "control: unconfined ffprobe did not open the referenced file"
    finally:
        control.close()


def test_probe_command_is_confined(tmp_path: Path) -> None:
    command = ffprobe_command(tmp_path / "x.mp4", ProbeLimits())
    joined = " ".join(command)
    assert "-protocol_whitelist file" in joined
    assert "-format_whitelist mov,matroska,avi,mpegts,flv" in joined
    assert "-codec_whitelist" in joined
    assert command[-1] == f"file:{(tmp_path / 'x.mp4').resolve()}"


def test_names_that_look_like_urls_stay_file_names(clips: Path, tmp_path: Path) -> None:
    odd = tmp_path / "concat:http:evil.mp4"
    shutil.copy(clips / "good.mp4", odd)
    assert probe_source(odd).width == 320


def test_rotation_from_display_matrix_and_tag() -> None:
    assert _rotation({"side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]}) == 270
    assert _rotation({"side_data_list": [{"rotation": 90}]}) == 90
    assert _rotation({"tags": {"rotate": "180"}}) == 180
    assert _rotation({}) == 0


def test_rotated_phone_video_reports_display_size(clips: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "portrait.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(clips / "good.mp4"),
            "-c",
            "copy",
            "-metadata:s:v:0",
            "rotate=90",
            str(rotated),
        ],
        check=True,
    )
    info = probe_source(rotated)
    assert (info.width, info.height) == (180, 320)
    assert (info.coded_width, info.coded_height) == (320, 180)
    assert info.rotation in (90, 270)
