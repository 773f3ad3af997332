"""The CDN edge's configuration without starting it: the VCL compiles (``varnishd -C``), points at the API and
caches only the playback routes; the edge binds loopback from the project's state, and says what is missing."""

from __future__ import annotations

import dataclasses
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.settings import Settings
from infra.services import EDGE_VCL, ServiceError, edge_address, edge_service, render_edge_vcl, varnishd_binary


def playback_re() -> re.Pattern[str]:
    """The request test of vcl_recv, as the VCL writes it (VCL strings have no escapes: the regex as is)."""
    found = re.search(r'if \(req\.url !~ "([^"]+)"\)', EDGE_VCL.read_text())
    assert found, "vcl_recv tests req.url against the playback routes"
    return re.compile(found.group(1))


PLAYBACK_RE = playback_re()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory Varnish's unprivileged users can read (pytest's tmp_path is the owner's alone)."""
    path = Path(tempfile.mkdtemp(prefix="vidplat-edge-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_vcl_compiles_with_the_apis_address(open_dir: Path) -> None:
    varnishd = varnishd_binary()
    assert varnishd, "varnishd missing: `make bootstrap` installs Debian's varnish"
    vcl = open_dir / "edge.vcl"
    vcl.write_text(render_edge_vcl("127.0.0.1", 18080))
    assert '.host = "127.0.0.1";' in vcl.read_text() and '.port = "18080";' in vcl.read_text()
    assert "{backend" not in vcl.read_text()
    compiled = subprocess.run(
        [varnishd, "-C", "-n", str(open_dir / "n"), "-f", str(vcl)], capture_output=True, text=True, timeout=120
    )
    assert compiled.returncode == 0, compiled.stderr[-2000:]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/videos/v1/playlist.m3u8",
        "/api/v1/videos/v1/manifest.mpd",
        "/api/v1/videos/v1/stream",
        "/api/v1/videos/v1/poster.jpg",
        "/api/v1/videos/v1/storyboard.vtt",
        "/api/v1/videos/v1/storyboard.jpg",
        "/api/v1/videos/v1/360p/init.mp4",
        "/api/v1/videos/v1/360p/seg_00001.m4s",
        "/api/v1/videos/v1/1080p-hevc/playlist.m3u8",
        "/api/v1/videos/v1/audio/iframes.m3u8",
        "/api/v1/videos/v1/p/tok.en_x-y/playlist.m3u8",
        "/api/v1/videos/v1/p/tok/360p/seg_00002.m4s",
        "/api/v1/videos/v1/360p/seg_00001.m4s?CMCD=br%3D500",
    ],
)
def test_playback_routes_are_looked_up(path: str) -> None:
    assert PLAYBACK_RE.search(path)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/videos",
        "/api/v1/videos/v1",
        "/api/v1/videos/v1/status",
        "/api/v1/videos/v1/complete",
        "/api/v1/videos/v1/comments",
        "/api/v1/videos/v1/comments/c1",
        "/api/v1/videos/v1/viewers/live",
        "/api/v1/videos/v1/engagement",
        "/api/v1/videos/v1/related",
        "/api/v1/videos/v1/qoe",
        "/api/v1/videos/../360p/seg_00001.m4s",
        "/api/v1/videos/v1/360p/seg_1.m4s",
        "/api/v1/search?q=/api/v1/videos/v1/playlist.m3u8",
        "/api/v1/health",
    ],
)
def test_every_other_route_passes(path: str) -> None:
    assert not PLAYBACK_RE.search(path)


def test_the_edge_runs_in_the_foreground_on_loopback_from_the_state_dir(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings(), edge_url="http://127.0.0.1:18081", api_port=18080)
    edge = edge_service(settings, tmp_path)
    command = edge.command
    assert "-F" in command
    assert command[command.index("-a") + 1] == "127.0.0.1:18081"
    assert command[command.index("-n") + 1] == str(tmp_path / "edge" / "varnish")
    assert command[command.index("-T") + 1].startswith("127.0.0.1:")
    assert command[command.index("-s") + 1] == "malloc,256m"
    vcl = Path(command[command.index("-f") + 1])
    assert edge.prepare is not None
    edge.prepare(edge)
    assert '.port = "18080";' in vcl.read_text()


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        edge = edge_service(dataclasses.replace(Settings(), edge_url=f"http://127.0.0.1:{port}"), tmp_path)
        assert edge.prepare is not None
        with pytest.raises(ServiceError, match=f"port {port} .* in use"):
            edge.prepare(edge)


def test_edge_urls() -> None:
    assert edge_address("http://127.0.0.1:8081") == ("127.0.0.1", 8081)
    assert edge_address("http://localhost") == ("localhost", 80)
    with pytest.raises(ServiceError, match="EDGE_URL"):
        edge_address("127.0.0.1:8081")
