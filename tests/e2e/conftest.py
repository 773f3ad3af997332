"""An isolated platform for end-to-end tests: fresh topics (a unique prefix), its own API port and
workers, on the real Kafka, Cassandra and S3 servers. Black-box: tests talk to the API over HTTP."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from common.settings import Settings
from infra.services import Service, down, platform_services, up
from infra.topics import reconcile


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Platform:
    settings: Settings
    services: list[Service]
    home: Path
    # The Authorization header of the creator account every upload of the run is made by.
    auth: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)


@pytest.fixture(scope="session")
def platform(live_servers: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    prefix = f"e2e-{uuid.uuid4().hex[:8]}."
    metrics = free_port()
    # No CDN edge here (players talk to the API): the control worker has nothing to purge.
    settings = dataclasses.replace(
        live_servers, topic_prefix=prefix, api_port=free_port(), metrics_port=metrics, edge_url=""
    )
    reconcile(settings)
    home = tmp_path_factory.mktemp("platform")
    services = platform_services(settings, transcode_workers=1, home=home)
    for service in services:
        # Ports next to a free one may be taken; give each worker its own free metrics port.
        if service.name != "api":
            service.env["METRICS_PORT"] = str(free_port())
        # A killed worker's partitions move on after this long.
        service.env["FAUST_SESSION_TIMEOUT_S"] = "10"
    up(services)
    platform = Platform(settings, services, home)
    account = {"email": f"e2e-{uuid.uuid4().hex[:8]}@example.test", "password": uuid.uuid4().hex, "role": "creator"}
    tokens = call("POST", f"{platform.api}/api/v1/auth/signup", account)
    platform.auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    yield platform
    down(services)


def call(
    method: str, url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as reply:
        return dict(json.loads(reply.read() or b"{}"))


def upload(platform: Platform, path: Path, title: str, **metadata: Any) -> str:
    """Create, PUT to the presigned URL, complete: what a creator's client does. Returns the video id."""
    size = path.stat().st_size
    body = {"title": title, "size_bytes": max(size, 1), **metadata}
    created = call("POST", f"{platform.api}/api/v1/videos", body, platform.auth)
    with path.open("rb") as body:
        put = urllib.request.Request(created["upload"]["url"], data=body.read(), method="PUT")
        urllib.request.urlopen(put, timeout=120).close()
    try:
        call("POST", f"{platform.api}/api/v1/videos/{created['video_id']}/complete", headers=platform.auth)
    except urllib.error.HTTPError as refused:
        refused.close()
        raise
    return str(created["video_id"])


def wait_for(platform: Platform, video_id: str, statuses: set[str], timeout_s: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    video: dict[str, Any] = {}
    while time.monotonic() < deadline:
        video = call("GET", f"{platform.api}/api/v1/videos/{video_id}", headers=platform.auth)
        if video["status"] in statuses:
            return video
        time.sleep(0.3)
    raise AssertionError(f"video {video_id} still {video.get('status')} after {timeout_s:.0f}s, wanted {statuses}")


def make_clip(path: Path, size: str = "854x480", rate: int = 30, seconds: int = 10, audio: bool = True) -> Path:
    command = [
        "ffmpeg",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={rate}:duration={seconds}",
    ]
    if audio:
        command += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}", "-c:a", "aac"]
    command += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-shortest", str(path)]
    subprocess.run(command, check=True)
    return path


def upload_form(platform: Platform, path: Path, title: str) -> str:
    """The seed's one-request upload (multipart/form-data), as a browser form sends it."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\n{title}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{platform.api}/api/v1/videos/upload",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", **platform.auth},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            answer = json.loads(reply.read())
    except urllib.error.HTTPError as refused:
        # Refused at once (an empty file, say): the answer names the video, whose row says why.
        with refused:
            return str(json.loads(refused.read())["detail"]["video_id"])
    assert answer["status"] == "processing" and answer["estimated_processing_time_s"] > 0
    return str(answer["video_id"])
