"""Accounts and authentication: sign-up, login, refresh, logout and profiles.

Who a request is (``Principal``, from its access token) is api/access.py's: ``optional_principal``,
``require_principal`` and ``require_role``.

Endpoints (JSON bodies; every token answer is ``{access_token, token_type: "Bearer", expires_in, refresh_token,
account_id, profile_id, roles}``):

* ``POST /api/v1/auth/signup`` ``{email, password, display_name?, role?: "viewer"|"creator"}`` → 201 + tokens. The
  account gets a first profile (its default); ``admin`` cannot be chosen, only granted (``Accounts.set_roles``).
* ``POST /api/v1/auth/login`` ``{email, password, profile_id?}`` → tokens; a wrong e-mail and a wrong password give
  the same 401, in the same time (a dummy hash is verified for an unknown e-mail); failures are rate-limited per
  e-mail and per client address (429 + Retry-After).
* ``POST /api/v1/auth/refresh`` ``{refresh_token, profile_id?}`` → new tokens; the refresh token is rotated (single
  use); showing a used one again revokes the whole login (its token family), as OAuth 2.0 Security BCP advises.
* ``POST /api/v1/auth/logout`` ``{refresh_token}`` → 204, the login revoked; ``POST /api/v1/auth/logout-all``
  (bearer) → 204, every login of the account revoked.

The web app asks for the refresh token as a cookie instead (``X-Token-Delivery: cookie`` on sign-up, login,
refresh and logout): it is then set HttpOnly, SameSite=Strict, Path=/api/v1/auth (Secure over https) and left out
of the JSON; refresh and logout read it when their body names no token; logout, and a refused refresh, clear it.
api/refresh_cookie.py has the details. Other clients send nothing new and see nothing change.
* ``GET /api/v1/me`` (bearer) → the account, its roles, its profiles and the selected one.
* ``GET|POST /api/v1/profiles``, ``DELETE /api/v1/profiles/{profile_id}`` (bearer) → list, add ``{name}``, remove.

Selecting a profile: every token is scoped to one profile — the account's default one unless another is named.
``POST /api/v1/auth/token`` ``{profile_id}`` with the bearer header returns an access token for that profile (no
new refresh token); a refresh (or login) with ``profile_id`` moves the whole login to that profile.
``Principal.viewer_id`` is the profile id, the key of per-viewer data (history, progress, ratings).

Access tokens are JWTs signed with HS256 — the only algorithm accepted on decode, so ``alg=none`` and algorithm
confusion are refused — with ``iss``, ``aud``, ``exp``, ``iat`` and ``sub`` required and checked. The signing key
derives from ``JWT_SECRET``; when that is unset (local development) a random one is generated once into
``$VIDPLAT_STATE_DIR/jwt_secret`` (mode 0600), shared by every local process. The secret is never logged.
Passwords are hashed with argon2id at OWASP's parameters (19 MiB, t=2, p=1), on a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import argon2
from aiohttp import hdrs, web

from api import refresh_cookie
from api.access import require_principal
from api.errors import Conflict, InvalidRequest, NotFound, TooManyRequests, Unauthorized
from api.http import iso, read_json_object
from api.keys import accounts_key, auth_key, catalog_key, settings_key
from api.state import SlidingWindow
from api.tokens import AuthService, Principal, TokenService, load_secret, password_hasher
from sinks.accounts import Accounts, Profile, RefreshToken

log = logging.getLogger(__name__)

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s.]{1,63}$")
EMAIL_MAX = 254
# OWASP: at least 8 characters; the cap keeps a hash request from being a denial of service.
PASSWORD_MIN = 8
PASSWORD_MAX = 256
NAME_MAX = 50
PROFILES_MAX = 5
SELF_SERVICE_ROLES = {"viewer": frozenset({"viewer"}), "creator": frozenset({"viewer", "creator"})}
DEFAULT_PROFILE_NAME = "Main"
# Failed logins allowed per e-mail and per client address in LOGIN_WINDOW_S, and sign-ups per address: enough for
# people who mistype, too few to try passwords or harvest e-mails.
LOGIN_WINDOW_S = 15 * 60
LOGIN_FAILURES_PER_EMAIL = 10
LOGIN_FAILURES_PER_CLIENT = 100
SIGNUPS_PER_CLIENT = 100


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the token keys, the password hasher and the accounts store (on the catalogue's session)."""
    settings = app[settings_key].auth
    secret = await asyncio.to_thread(load_secret, settings)
    hasher = password_hasher()
    app[auth_key] = AuthService(
        tokens=TokenService(settings, secret),
        hasher=hasher,
        # Verified for unknown e-mails so they take as long as wrong passwords.
        dummy_hash=await asyncio.to_thread(hasher.hash, secrets.token_urlsafe(16)),
        login_failures_by_email=SlidingWindow(LOGIN_FAILURES_PER_EMAIL, LOGIN_WINDOW_S),
        login_failures_by_client=SlidingWindow(LOGIN_FAILURES_PER_CLIENT, LOGIN_WINDOW_S),
        signups_by_client=SlidingWindow(SIGNUPS_PER_CLIENT, LOGIN_WINDOW_S),
    )
    app[accounts_key] = await asyncio.to_thread(Accounts, app[catalog_key].session)
    yield


def _client_of(request: web.Request) -> str:
    return request.remote or "unknown"


async def _body(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    # Unlike the other handlers' 400s, auth's leave out the JSON parser's message, as they always have.
    return await read_json_object(request, allowed, parse_detail=False)


def _string(body: dict[str, Any], name: str, *, required: bool = True, max_len: int = 256) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(detail={name: "is required"})
        return None
    if not isinstance(value, str):
        raise InvalidRequest(detail={name: f"must be a string, got {type(value).__name__}"})
    if len(value) > max_len:
        raise InvalidRequest(detail={name: f"must be at most {max_len} characters"})
    return value


def _email(body: dict[str, Any]) -> str:
    email = (_string(body, "email", max_len=EMAIL_MAX) or "").strip().lower()
    if not EMAIL_RE.match(email):
        raise InvalidRequest(detail={"email": "is not an e-mail address"})
    return email


def _profile_name(value: str | None) -> str:
    name = (value or "").strip()
    if not name or len(name) > NAME_MAX or re.search(r"[\x00-\x1f\x7f]", name):
        raise InvalidRequest(detail={"name": f"must be 1 to {NAME_MAX} printable characters"})
    return name


def _refresh_hash(secret: str) -> bytes:
    # Refresh secrets are 256 random bits: a plain SHA-256 is enough (no dictionary to slow down).
    return hashlib.sha256(secret.encode()).digest()


async def _issue(
    request: web.Request, account_id: str, profile_id: str, roles: frozenset[str], family_id: str | None = None
) -> dict[str, Any]:
    """Access + refresh tokens for a login (a new family) or a rotation (``family_id`` kept)."""
    service, accounts = request.app[auth_key], request.app[accounts_key]
    settings = service.tokens.settings
    if family_id is None:
        family_id = uuid.uuid4().hex
        await accounts.start_family(family_id, account_id, settings.refresh_ttl_s)
    token_id, secret = uuid.uuid4().hex, secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + timedelta(seconds=settings.refresh_ttl_s)
    await accounts.store_refresh(
        RefreshToken(token_id, family_id, account_id, profile_id, _refresh_hash(secret), expires_at, None),
        settings.refresh_ttl_s,
    )
    principal = Principal(account_id, profile_id, roles)
    return {
        "access_token": service.tokens.issue_access(principal),
        "token_type": "Bearer",
        "expires_in": settings.access_ttl_s,
        "refresh_token": f"{token_id}.{secret}",
        "refresh_expires_in": settings.refresh_ttl_s,
        "account_id": account_id,
        "profile_id": profile_id,
        "roles": sorted(roles),
    }


def _tokens_response(request: web.Request, tokens: dict[str, Any], cookie: bool, status: int = 200) -> web.Response:
    """The token answer: everything in the JSON, or (``cookie``) the refresh token in the cookie instead."""
    if not cookie:
        return web.json_response(tokens, status=status)
    response = web.json_response({k: v for k, v in tokens.items() if k != "refresh_token"}, status=status)
    response.headers.add(
        hdrs.SET_COOKIE,
        refresh_cookie.set_cookie_header(request, tokens["refresh_token"], tokens["refresh_expires_in"]),
    )
    response.headers[hdrs.CACHE_CONTROL] = "no-store"
    return response


def _presented_refresh(request: web.Request, body: dict[str, Any], cookie: bool) -> Any:
    """The refresh token of the body; in cookie mode, the cookie's when the body names none."""
    token = body.get("refresh_token")
    if token is None and cookie:
        return refresh_cookie.presented(request)
    return token


async def _profile_of(request: web.Request, account_id: str, profile_id: Any, default: str | None) -> str:
    """The profile a token is for: the one asked for (it must be the account's), else ``default``."""
    if profile_id is None:
        if default is None:
            raise Conflict("the account has no profile; create one")
        return default
    if not isinstance(profile_id, str) or await request.app[accounts_key].get_profile(account_id, profile_id) is None:
        # Another account's profile and no profile look the same.
        raise NotFound("profile not found", {"profile_id": profile_id})
    return profile_id


async def sign_up(request: web.Request) -> web.Response:
    """``POST /api/v1/auth/signup``."""
    service, accounts = request.app[auth_key], request.app[accounts_key]
    cookie = refresh_cookie.cookie_mode(request)
    body = await _body(request, {"email", "password", "display_name", "role"})
    client = _client_of(request)
    wait = service.signups_by_client.retry_after(client)
    if wait is not None:
        raise TooManyRequests(wait, "too many sign-ups from this address")
    email = _email(body)
    password = _string(body, "password", max_len=PASSWORD_MAX) or ""
    if len(password) < PASSWORD_MIN:
        raise InvalidRequest(detail={"password": f"must be at least {PASSWORD_MIN} characters"})
    display_name = _string(body, "display_name", required=False, max_len=NAME_MAX)
    role = body.get("role", "viewer")
    if role not in SELF_SERVICE_ROLES:
        raise InvalidRequest(detail={"role": f"must be one of {', '.join(SELF_SERVICE_ROLES)}"})
    roles = SELF_SERVICE_ROLES[role]
    service.signups_by_client.add(client)
    password_hash = await asyncio.to_thread(service.hasher.hash, password)
    account_id, now = uuid.uuid4().hex, datetime.now(UTC)
    profile = Profile(account_id, uuid.uuid4().hex, _profile_name(display_name or DEFAULT_PROFILE_NAME), now)
    if not await accounts.create_account(account_id, email, password_hash, display_name, roles, profile):
        # This does say the e-mail is registered (as any sign-up form must, short of e-mail verification);
        # the per-address sign-up limit keeps it from being a bulk oracle.
        raise Conflict("this e-mail is already registered; log in instead")
    log.info("account %s signed up as %s", account_id, role)
    tokens = await _issue(request, account_id, profile.profile_id, roles)
    return _tokens_response(request, tokens, cookie, status=201)


async def log_in(request: web.Request) -> web.Response:
    """``POST /api/v1/auth/login``."""
    service, accounts = request.app[auth_key], request.app[accounts_key]
    cookie = refresh_cookie.cookie_mode(request)
    body = await _body(request, {"email", "password", "profile_id"})
    email = _email(body)
    password = _string(body, "password", max_len=PASSWORD_MAX) or ""
    client = _client_of(request)
    for limiter, key in ((service.login_failures_by_email, email), (service.login_failures_by_client, client)):
        wait = limiter.retry_after(key)
        if wait is not None:
            raise TooManyRequests(wait, "too many failed logins; wait and try again")
    account_id = await accounts.account_id_for_email(email)
    account = await accounts.get_account(account_id) if account_id else None
    stored_hash = account.password_hash if account else service.dummy_hash
    try:
        await asyncio.to_thread(service.hasher.verify, stored_hash, password)
        verified = account is not None
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        verified = False
    if not verified or account is None:
        service.login_failures_by_email.add(email)
        service.login_failures_by_client.add(client)
        raise Unauthorized("invalid e-mail or password")
    service.login_failures_by_email.clear(email)
    if service.hasher.check_needs_rehash(account.password_hash):
        await accounts.set_password_hash(account.account_id, await asyncio.to_thread(service.hasher.hash, password))
    profile_id = await _profile_of(request, account.account_id, body.get("profile_id"), account.default_profile_id)
    return _tokens_response(request, await _issue(request, account.account_id, profile_id, account.roles), cookie)


async def _checked_refresh(request: web.Request, presented: Any) -> RefreshToken:
    """The stored row of a presented refresh token, if it is genuine, unexpired and its login not revoked."""
    if not isinstance(presented, str) or presented.count(".") != 1:
        raise Unauthorized("invalid refresh token")
    token_id, secret = presented.split(".")
    accounts = request.app[accounts_key]
    stored = await accounts.get_refresh(token_id) if re.fullmatch(r"[0-9a-f]{32}", token_id) else None
    if stored is None or not hmac.compare_digest(stored.token_hash, _refresh_hash(secret)):
        raise Unauthorized("invalid refresh token")
    if stored.expires_at <= datetime.now(UTC) or await accounts.family_revoked(stored.family_id):
        raise Unauthorized("refresh token expired or revoked")
    return stored


async def refresh(request: web.Request) -> web.Response:
    """``POST /api/v1/auth/refresh``: rotate the refresh token, new access token."""
    accounts = request.app[accounts_key]
    cookie = refresh_cookie.cookie_mode(request)
    body = await _body(request, {"refresh_token", "profile_id"})
    try:
        stored = await _checked_refresh(request, _presented_refresh(request, body, cookie))
        if stored.used_at is not None:
            await _revoke_reused(request, stored)
        account = await accounts.get_account(stored.account_id)
        if account is None:
            raise Unauthorized("account no longer exists")
        # The profile is checked before the token is spent: a refused profile leaves the login usable.
        profile_id = await _profile_of(request, account.account_id, body.get("profile_id"), stored.profile_id)
        if not await accounts.use_refresh(stored.token_id):
            await _revoke_reused(request, stored)
    except Unauthorized as refused:
        if cookie:  # a cookie that no longer works is of no use to keep
            refused.headers[hdrs.SET_COOKIE] = refresh_cookie.set_cookie_header(request, None)
        raise
    tokens = await _issue(request, account.account_id, profile_id, account.roles, stored.family_id)
    return _tokens_response(request, tokens, cookie)


async def _revoke_reused(request: web.Request, stored: RefreshToken) -> NoReturn:
    """A rotated token came back: it was stolen or replayed. End the whole login."""
    await request.app[accounts_key].revoke_family(stored.family_id)
    log.warning("refresh token reuse on account %s: login revoked", stored.account_id)
    raise Unauthorized("refresh token already used; the login was revoked")


async def log_out(request: web.Request) -> web.Response:
    """``POST /api/v1/auth/logout``: revoke the login of this refresh token (and clear the cookie in cookie mode)."""
    cookie = refresh_cookie.cookie_mode(request)
    body = await _body(request, {"refresh_token"})
    response = web.Response(status=204)
    if cookie:
        response.headers.add(hdrs.SET_COOKIE, refresh_cookie.set_cookie_header(request, None))
    try:
        stored = await _checked_refresh(request, _presented_refresh(request, body, cookie))
    except Unauthorized:
        return response  # already unusable: logging out again is not an error
    await request.app[accounts_key].revoke_family(stored.family_id)
    return response


async def log_out_everywhere(request: web.Request) -> web.Response:
    """``POST /api/v1/auth/logout-all``: revoke every login of the caller's account."""
    principal = require_principal(request)
    cookie = refresh_cookie.cookie_mode(request)
    await request.app[accounts_key].revoke_all(principal.account_id)
    response = web.Response(status=204)
    if cookie:
        response.headers.add(hdrs.SET_COOKIE, refresh_cookie.set_cookie_header(request, None))
    return response


async def profile_token(request: web.Request) -> web.Response:
    """``POST /api/v1/auth/token`` ``{profile_id}``: an access token of the caller's account for that profile."""
    principal = require_principal(request)
    body = await _body(request, {"profile_id"})
    if body.get("profile_id") is None:
        raise InvalidRequest(detail={"profile_id": "is required"})
    profile_id = await _profile_of(request, principal.account_id, body["profile_id"], None)
    account = await request.app[accounts_key].get_account(principal.account_id)
    if account is None:
        raise Unauthorized("account no longer exists")
    tokens = request.app[auth_key].tokens
    scoped = Principal(account.account_id, profile_id, account.roles)
    return web.json_response(
        {
            "access_token": tokens.issue_access(scoped),
            "token_type": "Bearer",
            "expires_in": tokens.settings.access_ttl_s,
            "account_id": account.account_id,
            "profile_id": profile_id,
            "roles": sorted(account.roles),
        }
    )


def _profile_json(profile: Profile, default_id: str | None) -> dict[str, Any]:
    return {
        "profile_id": profile.profile_id,
        "name": profile.name,
        "default": profile.profile_id == default_id,
        "created_at": iso(profile.created_at),
    }


async def me(request: web.Request) -> web.Response:
    """``GET /api/v1/me``."""
    principal = require_principal(request)
    accounts = request.app[accounts_key]
    account = await accounts.get_account(principal.account_id)
    if account is None:
        raise Unauthorized("account no longer exists")
    profiles = await accounts.profiles(account.account_id)
    return web.json_response(
        {
            "account_id": account.account_id,
            "email": account.email,
            "display_name": account.display_name,
            "roles": sorted(account.roles),
            "profile_id": principal.profile_id,
            "profiles": [_profile_json(p, account.default_profile_id) for p in profiles],
        }
    )


async def list_profiles(request: web.Request) -> web.Response:
    """``GET /api/v1/profiles``."""
    principal = require_principal(request)
    accounts = request.app[accounts_key]
    account = await accounts.get_account(principal.account_id)
    default_id = account.default_profile_id if account else None
    profiles = await accounts.profiles(principal.account_id)
    return web.json_response({"profiles": [_profile_json(p, default_id) for p in profiles]})


async def create_profile(request: web.Request) -> web.Response:
    """``POST /api/v1/profiles`` ``{name}``."""
    principal = require_principal(request)
    accounts = request.app[accounts_key]
    body = await _body(request, {"name"})
    name = _profile_name(_string(body, "name", max_len=NAME_MAX))
    if len(await accounts.profiles(principal.account_id)) >= PROFILES_MAX:
        raise Conflict(f"an account has at most {PROFILES_MAX} profiles")
    profile = Profile(principal.account_id, uuid.uuid4().hex, name, datetime.now(UTC))
    await accounts.add_profile(profile)
    return web.json_response(_profile_json(profile, None), status=201)


async def delete_profile(request: web.Request) -> web.Response:
    """``DELETE /api/v1/profiles/{profile_id}``; the default profile stays."""
    principal = require_principal(request)
    accounts = request.app[accounts_key]
    profile_id = request.match_info["profile_id"]
    account = await accounts.get_account(principal.account_id)
    if account is None or await accounts.get_profile(principal.account_id, profile_id) is None:
        raise NotFound("profile not found")
    if profile_id == account.default_profile_id:
        raise Conflict("the default profile cannot be removed")
    await accounts.delete_profile(principal.account_id, profile_id)
    return web.Response(status=204)
