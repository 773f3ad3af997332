"""Accounts and tokens for tests: ``sign_up`` a fresh account through the API and get ready-to-use headers.

    headers, principal = await sign_up(client, role="creator")
    await client.post("/api/v1/videos", json={...}, headers=headers)

``role`` is ``viewer`` or ``creator`` (self-service at sign-up) or ``admin`` (granted in the accounts store the way
an operator would, then logged in again so the token carries it). ``authorize(client, role)`` does the same and
puts the header on every request of that client (for tests written before accounts existed). A profile is
selected with ``profile_headers``; every token is scoped to the account's default profile otherwise.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from api.keys import accounts_key
from api.tokens import Principal

PASSWORD = "correct horse battery staple"


async def _tokens(client: TestClient[Any, Any], path: str, body: dict[str, Any], status: int) -> dict[str, Any]:
    async with client.post(path, json=body) as response:
        assert response.status == status, await response.text()
        tokens: dict[str, Any] = await response.json()
        return tokens


def _headers(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _principal(tokens: dict[str, Any]) -> Principal:
    return Principal(tokens["account_id"], tokens["profile_id"], frozenset(tokens["roles"]))


async def sign_up_tokens(
    client: TestClient[Any, Any], *, role: str = "viewer", email: str | None = None, password: str = PASSWORD
) -> dict[str, Any]:
    """The whole token answer (access and refresh tokens, ids) of a fresh account with ``role``."""
    email = email or f"user-{uuid.uuid4().hex[:12]}@example.test"
    self_service = "creator" if role in ("creator", "admin") else "viewer"
    body = {"email": email, "password": password, "role": self_service}
    tokens = await _tokens(client, "/api/v1/auth/signup", body, 201)
    if role == "admin":
        await client.app[accounts_key].set_roles(tokens["account_id"], {"viewer", "creator", "admin"})
        tokens = await _tokens(client, "/api/v1/auth/login", {"email": email, "password": password}, 200)
    tokens["email"] = email
    return tokens


async def sign_up(client: TestClient[Any, Any], *, role: str = "viewer") -> tuple[dict[str, str], Principal]:
    """Headers ``{"Authorization": "Bearer ..."}`` and the ``Principal`` of a fresh account with ``role``."""
    tokens = await sign_up_tokens(client, role=role)
    return _headers(tokens), _principal(tokens)


async def authorize(client: TestClient[Any, Any], *, role: str = "creator") -> Principal:
    """Sign up a fresh account and send its token with every later request of ``client``."""
    headers, principal = await sign_up(client, role=role)
    client.session.headers.update(headers)
    return principal


async def profile_headers(
    client: TestClient[Any, Any], headers: dict[str, str], name: str = "Second"
) -> tuple[dict[str, str], Principal]:
    """A new profile of the account behind ``headers``, and headers whose token selects it."""
    async with client.post("/api/v1/profiles", json={"name": name}, headers=headers) as response:
        assert response.status == 201, await response.text()
        profile_id = (await response.json())["profile_id"]
    async with client.post("/api/v1/auth/token", json={"profile_id": profile_id}, headers=headers) as response:
        assert response.status == 200, await response.text()
        tokens = await response.json()
    return _headers(tokens), _principal(tokens)
