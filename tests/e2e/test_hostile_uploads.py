"""Hostile uploads end `failed` with a reason; nothing outside the upload is read; no network is tried.

Canaries prove it: a named pipe that a writer thread blocks on (opening it to read would release the
writer) and a TCP listener that counts connections (a fetch attempt would connect)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Platform, make_clip, upload, upload_form, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


class Canaries:
    def __init__(self, directory: Path) -> None:
        self.fifo = directory / "canary.fifo"
        os.mkfifo(self.fifo)
        self.fifo_opened = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        threading.Thread(target=self._wait_for_reader, daemon=True).start()
        threading.Thread(target=self._accept, daemon=True).start()

    def _wait_for_reader(self) -> None:
        # open() for writing blocks until someone opens the pipe for reading.
        with open(self.fifo, "wb"):
            self.fifo_opened.set()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        if not self.fifo_opened.is_set():
            # Release the writer thread by opening the pipe ourselves.
            with open(self.fifo, "rb"):
                pass


@pytest.fixture(scope="module")
def canaries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Canaries]:
    guard = Canaries(tmp_path_factory.mktemp("canaries"))
    yield guard
    guard.close()


def hostile_files(directory: Path, canaries: Canaries) -> dict[str, Path]:
    files = {}
    files["zero bytes"] = directory / "empty.mp4"
    files["zero bytes"].write_bytes(b"")
    files["text named .mp4"] = directory / "notes.mp4"
    files["text named .mp4"].write_text("these are my holiday notes, not a video\n" * 50)
    good = make_clip(directory / "good.mp4", size="320x180", seconds=4)
    files["truncated mp4"] = directory / "truncated.mp4"
    files["truncated mp4"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["hls playlist renamed .mp4"] = directory / "playlist.mp4"
    files["hls playlist renamed .mp4"].write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\n"
        f"http://127.0.0.1:{canaries.port}/segment.ts\n#EXTINF:4,\nfile://{canaries.fifo}\n#EXT-X-ENDLIST\n"
    )
    files["ffconcat pointing at local files"] = directory / "concat.mp4"
    files["ffconcat pointing at local files"].write_text(
        f"ffconcat version 1.0\nfile '{canaries.fifo}'\nfile '/etc/passwd'\nfile 'http://127.0.0.1:{canaries.port}/x'\n"
    )
    return files


def test_hostile_uploads_fail_with_a_reason_and_touch_nothing(
    platform: Platform, canaries: Canaries, tmp_path: Path
) -> None:
    outcomes = {}
    for label, path in hostile_files(tmp_path, canaries).items():
        # Both upload paths: the presigned PUT needs a declared size above zero, so the empty file comes
        # through the one-request form upload.
        send = upload_form if path.stat().st_size == 0 else upload
        outcomes[label] = send(platform, path, f"hostile: {label}")
    for label, video_id in outcomes.items():
        video = wait_for(platform, video_id, {"failed", "ready", "playable"}, timeout_s=180)
        assert video["status"] == "failed", f"{label}: {video['status']}"
        reason = video["status_reason"] or ""
        assert len(reason) > 10 and "invalid request" not in reason, f"{label}: no readable reason ({reason})"
        assert "Traceback" not in reason
        print(f"{label}: {reason}")
    assert not canaries.fifo_opened.is_set(), "a hostile upload made the pipeline open a local file"
    assert canaries.connections == 0, "a hostile upload made the pipeline connect out"


def test_a_worker_never_reads_outside_its_own_file(platform: Platform) -> None:
    # The probe and the encoders read sources only through a confined file: URL (protocol and format
    # whitelists); check the running workers' open files never include the canary locations above.
    for service in platform.services:
        pid = service.pid()
        assert pid is not None, f"{service.name} is not running"
        listing = subprocess.run(["ls", "-l", f"/proc/{pid}/fd"], capture_output=True, text=True, check=False).stdout
        assert "canary" not in listing and "/etc/passwd" not in listing
