"""The web app's cookie mode of the token routes against the real Cassandra (api/refresh_cookie.py): with
``X-Token-Delivery: cookie`` the refresh token is an HttpOnly, SameSite=Strict, path-limited cookie and never in the
JSON; refresh reads it, rotates it and clears it when refused; logout revokes and clears it. Without the header the
JSON API is as it was (tests/integration/test_auth.py covers the rest of it)."""

from __future__ import annotations

import uuid
from http.cookies import Morsel, SimpleCookie
from typing import Any

import pytest
from aiohttp import hdrs
from aiohttp.test_utils import TestClient

from api.app import init_app
from api.refresh_cookie import COOKIE, COOKIE_PATH
from common.settings import Settings
from tests.auth_tools import PASSWORD, sign_up_tokens

pytestmark = pytest.mark.integration

Client = TestClient[Any, Any]
COOKIE_MODE = {"X-Token-Delivery": "cookie"}


@pytest.fixture
async def client(aiohttp_client: Any, live_servers: Settings) -> Client:
    app_client: Client = await aiohttp_client(await init_app(live_servers))
    return app_client


def set_cookie(headers: Any) -> Morsel[str]:
    """The one ``Set-Cookie`` of an answer, parsed."""
    values = headers.getall(hdrs.SET_COOKIE, [])
    assert len(values) == 1, values
    jar: SimpleCookie = SimpleCookie()
    jar.load(values[0])
    assert list(jar) == [COOKIE], values
    return jar[COOKIE]


def raw_set_cookie(headers: Any) -> str:
    value: str = headers[hdrs.SET_COOKIE]
    return value


async def post(client: Client, path: str, body: Any = None, **headers: str) -> tuple[int, Any, Any]:
    async with client.post(path, json=body, headers=headers or None) as response:
        text = await response.text()
        return response.status, (await response.json() if text else None), response.headers


async def cookie_login(client: Client) -> tuple[dict[str, Any], Morsel[str]]:
    """A fresh account logged in in cookie mode: the JSON answer and the refresh cookie."""
    account = await sign_up_tokens(client)
    body = {"email": account["email"], "password": PASSWORD}
    status, tokens, headers = await post(client, "/api/v1/auth/login", body, **COOKIE_MODE)
    assert status == 200, tokens
    return tokens, set_cookie(headers)


async def test_cookie_mode_login_sets_an_httponly_strict_path_limited_cookie(client: Client) -> None:
    tokens, cookie = await cookie_login(client)
    assert "refresh_token" not in tokens  # never readable by the page's scripts
    assert tokens["access_token"] and tokens["token_type"] == "Bearer" and tokens["refresh_expires_in"] > 0
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == COOKIE_PATH
    assert cookie["max-age"] == str(tokens["refresh_expires_in"])
    assert not cookie["secure"]  # plain http here; see the https test below
    assert cookie.value.count(".") == 1
    async with client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}) as response:
        assert response.status == 200


async def test_cookie_mode_sign_up_sets_the_cookie_too(client: Client) -> None:
    body = {"email": f"user-{uuid.uuid4().hex[:12]}@example.test", "password": PASSWORD}
    status, tokens, headers = await post(client, "/api/v1/auth/signup", body, **COOKIE_MODE)
    assert status == 201, tokens
    assert "refresh_token" not in tokens
    assert set_cookie(headers)["httponly"] is True
    assert headers[hdrs.CACHE_CONTROL] == "no-store"


async def test_the_cookie_is_secure_over_https(client: Client) -> None:
    account = await sign_up_tokens(client)
    body = {"email": account["email"], "password": PASSWORD}
    status, _, headers = await post(client, "/api/v1/auth/login", body, **COOKIE_MODE, **{"X-Forwarded-Proto": "https"})
    assert status == 200
    assert set_cookie(headers)["secure"] is True
    assert "; Secure" in raw_set_cookie(headers)


async def test_refresh_reads_the_cookie_and_rotates_it(client: Client) -> None:
    tokens, first = await cookie_login(client)
    # The test client's jar sends the cookie back, as a browser on the same site does.
    status, rotated, headers = await post(client, "/api/v1/auth/refresh", None, **COOKIE_MODE)
    assert status == 200, rotated
    assert "refresh_token" not in rotated
    assert rotated["account_id"] == tokens["account_id"] and rotated["profile_id"] == tokens["profile_id"]
    second = set_cookie(headers)
    assert second.value != first.value and second["httponly"] is True and second["path"] == COOKIE_PATH
    # An empty JSON object (the web app sends its profile at most) reads the cookie as well.
    status, again, _ = await post(client, "/api/v1/auth/refresh", {"profile_id": tokens["profile_id"]}, **COOKIE_MODE)
    assert status == 200, again
    # The first cookie's token was spent: shown again (in the body, as a thief would) it revokes the login.
    status, _, _ = await post(client, "/api/v1/auth/refresh", {"refresh_token": first.value})
    assert status == 401
    status, _, headers = await post(client, "/api/v1/auth/refresh", None, **COOKIE_MODE)
    assert status == 401
    cleared = set_cookie(headers)  # a refused cookie is removed
    assert cleared.value == "" and cleared["max-age"] == "0"


async def test_without_the_header_the_cookie_is_not_read(client: Client) -> None:
    await cookie_login(client)  # the client's jar holds the cookie now
    status, body, headers = await post(client, "/api/v1/auth/refresh", {})
    assert status == 401, body
    assert hdrs.SET_COOKIE not in headers
    # ... and the cookie is still good in cookie mode.
    status, body, _ = await post(client, "/api/v1/auth/refresh", None, **COOKIE_MODE)
    assert status == 200, body


async def test_logout_revokes_the_cookie_login_and_clears_the_cookie(client: Client) -> None:
    _, cookie = await cookie_login(client)
    status, _, headers = await post(client, "/api/v1/auth/logout", None, **COOKIE_MODE)
    assert status == 204
    cleared = set_cookie(headers)
    assert cleared.value == "" and cleared["max-age"] == "0" and cleared["path"] == COOKIE_PATH
    assert cleared["httponly"] is True and cleared["samesite"] == "Strict"
    assert client.session.cookie_jar.filter_cookies(client.make_url(COOKIE_PATH + "/refresh")).get(COOKIE) is None
    # The login is revoked, not only the cookie gone.
    status, _, _ = await post(client, "/api/v1/auth/refresh", {"refresh_token": cookie.value})
    assert status == 401
    # Logging out again, cookie or not, is still a 204.
    status, _, _ = await post(client, "/api/v1/auth/logout", None, **COOKIE_MODE)
    assert status == 204


async def test_logout_all_in_cookie_mode_clears_the_cookie(client: Client) -> None:
    tokens, cookie = await cookie_login(client)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    status, _, headers = await post(client, "/api/v1/auth/logout-all", None, **bearer, **COOKIE_MODE)
    assert status == 204
    assert set_cookie(headers).value == ""
    status, _, _ = await post(client, "/api/v1/auth/refresh", {"refresh_token": cookie.value})
    assert status == 401


async def test_body_mode_is_unchanged(client: Client) -> None:
    account = await sign_up_tokens(client)
    assert account["refresh_token"]
    for delivery in ({}, {"X-Token-Delivery": "body"}):
        body = {"email": account["email"], "password": PASSWORD}
        status, tokens, headers = await post(client, "/api/v1/auth/login", body, **delivery)
        assert status == 200 and tokens["refresh_token"].count(".") == 1
        assert hdrs.SET_COOKIE not in headers
        status, rotated, headers = await post(
            client, "/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}
        )
        assert status == 200 and rotated["refresh_token"] != tokens["refresh_token"]
        assert hdrs.SET_COOKIE not in headers
        status, _, headers = await post(client, "/api/v1/auth/logout", {"refresh_token": rotated["refresh_token"]})
        assert status == 204 and hdrs.SET_COOKIE not in headers
        status, _, _ = await post(client, "/api/v1/auth/refresh", {"refresh_token": rotated["refresh_token"]})
        assert status == 401
    assert not client.session.cookie_jar.filter_cookies(client.make_url(COOKIE_PATH + "/refresh"))


async def test_an_unknown_delivery_is_a_400(client: Client) -> None:
    account = await sign_up_tokens(client)
    body = {"email": account["email"], "password": PASSWORD}
    status, answer, _ = await post(client, "/api/v1/auth/login", body, **{"X-Token-Delivery": "url"})
    assert status == 400 and "X-Token-Delivery" in answer["detail"]


async def test_a_refused_profile_leaves_the_cookie_login_usable(client: Client) -> None:
    await cookie_login(client)
    status, _, headers = await post(client, "/api/v1/auth/refresh", {"profile_id": uuid.uuid4().hex}, **COOKIE_MODE)
    assert status == 404 and hdrs.SET_COOKIE not in headers
    status, body, _ = await post(client, "/api/v1/auth/refresh", None, **COOKIE_MODE)
    assert status == 200, body
