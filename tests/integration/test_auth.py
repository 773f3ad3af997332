"""Accounts against the real Cassandra: sign-up, login, refresh rotation and revocation, profiles, and the
access-token checks (pinned algorithm, key, expiry, audience, issuer)."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from api.app import init_app
from api.keys import accounts_key, auth_key
from api.tokens import Principal, TokenService, load_secret
from common.settings import Settings
from tests.auth_tools import PASSWORD, profile_headers, sign_up, sign_up_tokens

pytestmark = pytest.mark.integration

Client = TestClient[Any, Any]


@pytest.fixture
async def client(aiohttp_client: Any, live_servers: Settings) -> Client:
    app_client: Client = await aiohttp_client(await init_app(live_servers))
    return app_client


async def me(client: Client, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with client.get("/api/v1/me", headers=headers) as response:
        return response.status, await response.json()


def email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.test"


# --- sign-up and login ----------------------------------------------------------------------------


async def test_sign_up_gives_tokens_a_default_profile_and_an_argon2id_hash(client: Client) -> None:
    tokens = await sign_up_tokens(client, role="creator")
    status, body = await me(client, {"Authorization": f"Bearer {tokens['access_token']}"})
    assert status == 200, body
    assert body["account_id"] == tokens["account_id"]
    assert body["email"] == tokens["email"]
    assert body["roles"] == ["creator", "viewer"]
    assert [p["profile_id"] for p in body["profiles"]] == [tokens["profile_id"]]
    assert body["profiles"][0]["default"] is True
    account = await client.app[accounts_key].get_account(tokens["account_id"])
    assert account is not None
    # argon2id at OWASP's parameters; the password itself is nowhere.
    assert account.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in account.password_hash


async def test_sign_up_refuses_duplicates_admin_and_weak_passwords(client: Client) -> None:
    address = email()
    async with client.post("/api/v1/auth/signup", json={"email": address, "password": PASSWORD}) as response:
        assert response.status == 201
    async with client.post("/api/v1/auth/signup", json={"email": address.upper(), "password": PASSWORD}) as response:
        assert response.status == 409  # e-mails are compared case-insensitively
    for body, field in (
        ({"email": email(), "password": PASSWORD, "role": "admin"}, "role"),
        ({"email": email(), "password": "short"}, "password"),
        ({"email": "not-an-address", "password": PASSWORD}, "email"),
        ({"email": email(), "password": PASSWORD, "roles": ["admin"]}, "roles"),
    ):
        async with client.post("/api/v1/auth/signup", json=body) as response:
            assert response.status == 400, body
            assert field in (await response.json())["detail"]


async def test_login_errors_do_not_tell_whether_the_email_exists(client: Client) -> None:
    tokens = await sign_up_tokens(client)
    answers = []
    for address, password in ((tokens["email"], "wrong password!"), (email(), "wrong password!")):
        async with client.post("/api/v1/auth/login", json={"email": address, "password": password}) as response:
            answers.append((response.status, await response.json()))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401
    async with client.post("/api/v1/auth/login", json={"email": tokens["email"], "password": PASSWORD}) as response:
        assert response.status == 200
        assert (await response.json())["account_id"] == tokens["account_id"]


async def test_repeated_failed_logins_are_rate_limited(client: Client) -> None:
    tokens = await sign_up_tokens(client)
    statuses = []
    for _ in range(11):
        body = {"email": tokens["email"], "password": "guess-" + uuid.uuid4().hex}
        async with client.post("/api/v1/auth/login", json=body) as response:
            statuses.append(response.status)
            retry_after = response.headers.get("Retry-After")
    assert statuses == [401] * 10 + [429]
    assert retry_after is not None and int(retry_after) > 0
    # Even the right password waits now: the limit is on the e-mail, not on wrong guesses alone.
    async with client.post("/api/v1/auth/login", json={"email": tokens["email"], "password": PASSWORD}) as response:
        assert response.status == 429


# --- refresh tokens -------------------------------------------------------------------------------


async def refresh(client: Client, token: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    async with client.post("/api/v1/auth/refresh", json={"refresh_token": token, **extra}) as response:
        return response.status, await response.json()


async def test_refresh_rotates_and_a_reused_token_revokes_the_login(client: Client) -> None:
    first = await sign_up_tokens(client)
    status, second = await refresh(client, first["refresh_token"])
    assert status == 200, second
    assert second["refresh_token"] != first["refresh_token"]
    assert (await me(client, {"Authorization": f"Bearer {second['access_token']}"}))[0] == 200
    # The first token was used: showing it again is a replay, and ends the login.
    status, body = await refresh(client, first["refresh_token"])
    assert status == 401, body
    status, body = await refresh(client, second["refresh_token"])
    assert status == 401, body


async def test_refresh_tokens_are_stored_hashed_and_forgeries_fail(client: Client) -> None:
    tokens = await sign_up_tokens(client)
    token_id, secret = tokens["refresh_token"].split(".")
    stored = await client.app[accounts_key].get_refresh(token_id)
    assert stored is not None
    assert secret.encode() not in stored.token_hash and len(stored.token_hash) == 32
    for forged in (f"{token_id}.{secret[:-2]}xx", f"{uuid.uuid4().hex}.{secret}", "garbage", ""):
        assert (await refresh(client, forged))[0] == 401


async def test_logout_revokes_one_login_and_logout_all_every_login(client: Client) -> None:
    tokens = await sign_up_tokens(client)
    logins = []
    for _ in range(2):
        body = {"email": tokens["email"], "password": PASSWORD}
        async with client.post("/api/v1/auth/login", json=body) as response:
            logins.append(await response.json())
    async with client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}) as response:
        assert response.status == 204
    assert (await refresh(client, tokens["refresh_token"]))[0] == 401
    status, rotated = await refresh(client, logins[0]["refresh_token"])
    assert status == 200
    headers = {"Authorization": f"Bearer {rotated['access_token']}"}
    async with client.post("/api/v1/auth/logout-all", headers=headers) as response:
        assert response.status == 204
    assert (await refresh(client, rotated["refresh_token"]))[0] == 401
    assert (await refresh(client, logins[1]["refresh_token"]))[0] == 401


# --- profiles -------------------------------------------------------------------------------------


async def test_profiles_select_the_viewer_and_stay_within_the_account(client: Client) -> None:
    headers, principal = await sign_up(client)
    second_headers, second = await profile_headers(client, headers, "Kids")
    assert second.account_id == principal.account_id
    assert second.viewer_id != principal.viewer_id and second.viewer_id == second.profile_id
    status, body = await me(client, second_headers)
    assert status == 200 and body["profile_id"] == second.profile_id
    assert {p["name"] for p in body["profiles"]} == {"Main", "Kids"}
    # Another account cannot pick this account's profile.
    other_headers, _ = await sign_up(client)
    body = {"profile_id": second.profile_id}
    async with client.post("/api/v1/auth/token", json=body, headers=other_headers) as response:
        assert response.status == 404
    # A refresh with profile_id moves the whole login to that profile.
    tokens = await sign_up_tokens(client)
    tokens_headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    _, kids = await profile_headers(client, tokens_headers, "Kids")
    status, moved = await refresh(client, tokens["refresh_token"], profile_id=kids.profile_id)
    assert status == 200 and moved["profile_id"] == kids.profile_id
    status, again = await refresh(client, moved["refresh_token"])
    assert status == 200 and again["profile_id"] == kids.profile_id
    # The default profile stays; others can go.
    async with client.delete(f"/api/v1/profiles/{principal.profile_id}", headers=headers) as response:
        assert response.status == 409
    async with client.delete(f"/api/v1/profiles/{second.profile_id}", headers=other_headers) as response:
        assert response.status == 404
    async with client.delete(f"/api/v1/profiles/{second.profile_id}", headers=headers) as response:
        assert response.status == 204
    async with client.get("/api/v1/profiles", headers=headers) as response:
        assert [p["profile_id"] for p in (await response.json())["profiles"]] == [principal.profile_id]


async def test_an_account_has_at_most_five_profiles(client: Client) -> None:
    headers, _ = await sign_up(client)
    statuses = []
    for number in range(5):
        async with client.post("/api/v1/profiles", json={"name": f"P{number}"}, headers=headers) as response:
            statuses.append(response.status)
    assert statuses == [201, 201, 201, 201, 409]


# --- access tokens --------------------------------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_bad_access_tokens_get_401(client: Client, live_servers: Settings) -> None:
    _, principal = await sign_up(client)
    auth = live_servers.auth
    secret = load_secret(auth)
    good = client.app[auth_key].tokens.issue_access(principal)
    assert (await me(client, {"Authorization": f"Bearer {good}"}))[0] == 200
    now = datetime.now(UTC)
    claims = {
        "iss": auth.jwt_issuer,
        "aud": auth.jwt_audience,
        "sub": principal.account_id,
        "pid": principal.profile_id,
        "roles": ["viewer", "admin"],
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)  # a short key for SHA-512: the point
        hs512 = jwt.encode(claims, client.app[auth_key].tokens._access_key, algorithm="HS512")
    forged = {
        "alg=none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "wrong key": TokenService(auth, b"k" * 48).issue_access(principal),
        "raw secret (not the derived key)": jwt.encode(claims, secret, algorithm="HS256"),
        "expired": TokenService(dataclasses.replace(auth, access_ttl_s=-3600), secret).issue_access(principal),
        "wrong audience": TokenService(dataclasses.replace(auth, jwt_audience="another-api"), secret).issue_access(
            principal
        ),
        "wrong issuer": TokenService(dataclasses.replace(auth, jwt_issuer="someone-else"), secret).issue_access(
            principal
        ),
        # The right key with another algorithm: the algorithm is pinned, not read from the header.
        "HS512": hs512,
        "tampered claims": good.split(".")[0] + "." + _b64(claims) + "." + good.split(".")[2],
        "garbage": "not.a.token",
    }
    for name, token in forged.items():
        status, body = await me(client, {"Authorization": f"Bearer {token}"})
        assert status == 401, (name, body)
    for header in ("", "Basic dXNlcjpwYXNz", "Bearer"):
        async with client.get("/api/v1/me", headers={"Authorization": header}) as response:
            assert response.status == 401, header
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    async with client.get("/api/v1/me") as response:
        assert response.status == 401


async def test_playback_tokens_are_not_access_tokens(client: Client) -> None:
    _, principal = await sign_up(client)
    tokens = client.app[auth_key].tokens
    # Signed with the playback key and audience: refused where an access token is expected.
    playback = jwt.encode(
        {
            "iss": tokens.settings.jwt_issuer,
            "aud": tokens.settings.jwt_audience,
            "sub": principal.account_id,
            "roles": ["viewer"],
            "iat": datetime.now(UTC),
            "exp": datetime.now(UTC) + timedelta(minutes=5),
        },
        tokens.playback_key,
        algorithm="HS256",
    )
    assert (await me(client, {"Authorization": f"Bearer {playback}"}))[0] == 401


def test_principal_viewer_id_is_the_profile_else_the_account() -> None:
    assert Principal("a", "p", frozenset({"viewer"})).viewer_id == "p"
    assert Principal("a", None, frozenset({"viewer"})).viewer_id == "a"
