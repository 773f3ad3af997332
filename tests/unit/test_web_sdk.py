"""The web telemetry SDK's delivery tests (web/sdk/vidplat-telemetry.test.mjs, `node --test`), run from pytest
so `make test` covers them: heartbeats batched; startup, fatal errors and the end sent at once; sendBeacon on
page hide; contiguous seqs through retries. Needs Node >= 20 (the same `node` that runs web/player-check), no
browser and no npm packages.

    .venv/bin/python -m pytest tests/unit/test_web_sdk.py -q
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from common.settings import REPO_ROOT

SDK_TESTS = REPO_ROOT / "web" / "sdk" / "vidplat-telemetry.test.mjs"


def test_sdk_delivery_node_tests_pass() -> None:
    node = shutil.which("node")
    if node is None:
        # A missing runtime is a broken setup, not a reason to skip (tests fail, never skip silently).
        pytest.fail("node (>= 20) is not on PATH: it runs the SDK's tests and web/player-check")
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(SDK_TESTS)],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"node --test failed:\n{output[-6000:]}"
    # A file that defined no test, or a runner that found nothing, also exits 0.
    assert "# fail 0" in output and "# pass 0" not in output, output[-2000:]
