"""infra/stack.py on its own state directory and ports: up, idempotent up, status, down, port conflict.

Runs real Kafka and S3Proxy processes beside the shared stack (Cassandra is left out: it is the slow one
and the shared stack already proves it starts)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.settings import REPO_ROOT
from infra.stack import OWNER_PROPERTY, stray_pids

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_pair() -> int:
    """Kafka takes two consecutive ports (broker, controller)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture
def isolated_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "VIDPLAT_STATE_DIR": str(tmp_path / "state"),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port_pair()}",
        "S3_ENDPOINT": f"127.0.0.1:{free_port()}",
    }
    yield env
    subprocess.run(
        [sys.executable, "-m", "infra.stack", "down", "--only", "kafka,s3proxy"],
        env=env,
        cwd=REPO_ROOT,
        check=False,
    )


def stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.stack", *args, "--only", "kafka,s3proxy"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_up_is_idempotent_and_down_leaves_nothing(isolated_env: dict[str, str]) -> None:
    first = stack(isolated_env, "up")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "kafka: started" in first.stdout and "s3proxy: started" in first.stdout

    second = stack(isolated_env, "up")
    assert second.returncode == 0, second.stderr
    assert "kafka: already running" in second.stdout and "s3proxy: already running" in second.stdout
    assert "started pid" not in second.stdout

    status = stack(isolated_env, "status")
    assert status.returncode == 0
    assert status.stdout.count("healthy") == 2 and "MiB RSS" in status.stdout

    down = stack(isolated_env, "down")
    assert down.returncode == 0, down.stderr
    state = Path(isolated_env["VIDPLAT_STATE_DIR"]).resolve()
    assert stray_pids(f"{OWNER_PROPERTY}{state}/") == []
    assert stack(isolated_env, "status").returncode == 3


def test_a_port_taken_by_another_program_is_named(isolated_env: dict[str, str]) -> None:
    port = int(isolated_env["S3_ENDPOINT"].rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = subprocess.run(
            [sys.executable, "-m", "infra.stack", "up", "--only", "s3proxy"],
            env=isolated_env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1
    assert f"port {port} (http) is in use by another program" in result.stderr
