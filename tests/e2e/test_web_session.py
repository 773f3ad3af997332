"""The web app's session and the admins' QoE dashboard in a real browser against the real platform: signing in
leaves the refresh token in an HttpOnly, SameSite=Strict cookie limited to /api/v1/auth (never in localStorage or
document.cookie), a reload stays signed in through it, /dashboard draws its tiles and uPlot charts with labelled,
keyboard-usable controls and no CSP violation, and signing out removes the cookie (web/app/e2e/session.mjs)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from typing import Any

import pytest

from common.cassandra import cassandra_session
from common.settings import REPO_ROOT
from sinks.accounts import Accounts
from tests.e2e.conftest import Platform, call

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCRIPT = REPO_ROOT / "web" / "app" / "e2e" / "session.mjs"


def admin_account(platform: Platform) -> dict[str, str]:
    """A fresh account granted admin in the accounts store, as an operator does."""
    account = {"email": f"admin-{uuid.uuid4().hex[:8]}@example.test", "password": uuid.uuid4().hex}
    tokens = call("POST", f"{platform.api}/api/v1/auth/signup", {**account, "role": "creator"})
    session = cassandra_session(platform.settings.cassandra)
    try:
        asyncio.run(Accounts(session).set_roles(tokens["account_id"], {"viewer", "creator", "admin"}))
    finally:
        session.cluster.shutdown()
    return account


def test_cookie_session_and_dashboard_in_the_browser(platform: Platform) -> None:
    assert (REPO_ROOT / "web" / "app" / "dist" / "index.html").is_file(), "web app not built: run make bootstrap"
    account = admin_account(platform)
    command = [
        "node",
        str(SCRIPT),
        "--base",
        platform.api,
        "--email",
        account["email"],
        "--password",
        account["password"],
        *(["--screenshots", screenshots] if (screenshots := os.environ.get("WEB_SCREENSHOTS")) else []),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.stdout, f"the session check printed nothing: {result.stderr[-2000:]}"
    outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"web session: {json.dumps(outcome['steps'])}")
    assert outcome["ok"] is True and result.returncode == 0, (outcome["failure"], outcome["console_errors"])
    steps = outcome["steps"]
    assert steps["cookie"] == {"httpOnly": True, "sameSite": "Strict", "path": "/api/v1/auth"}
    assert "vidplat.refresh" not in steps["local_storage_keys"] and steps["local_storage_has_token"] is False
    assert "vidplat_refresh" not in steps["document_cookie"]
    assert steps["rotated"] is True
    assert steps["charts"] == 7
    assert "Views started" in steps["tiles"] and "Average bitrate" in steps["tiles"]
    assert steps["cookie_after_sign_out"] is None
    assert outcome["csp_violations"] == []
