"""The web app's refresh token, kept in a cookie the page's scripts cannot read.

A client asks for it with ``X-Token-Delivery: cookie`` on sign-up, login, refresh and logout (api/auth.py). Then
the refresh token goes out as ``Set-Cookie: vidplat_refresh=...; HttpOnly; SameSite=Strict; Path=/api/v1/auth``
(``Secure`` when the request came over https, directly or through a proxy that says so) and is left out of the
JSON body; a refresh without a token in its body reads it from the cookie; logout, and a refresh that is refused,
clear it. Without the header (``body``, the default: CLIs, tests, other players) nothing changes: the refresh
token travels in the JSON bodies and no cookie is set or read.

Why a header rather than "whenever a cookie is there": a custom header cannot be sent cross-site without a CORS
preflight the API does not grant, so a forged request cannot use the cookie even where SameSite did not hold.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Final

from aiohttp import web

from api.errors import InvalidRequest

COOKIE: Final = "vidplat_refresh"
# Only the routes that use it receive it (refresh, logout, and login/sign-up that replace it).
COOKIE_PATH: Final = "/api/v1/auth"
DELIVERY_HEADER: Final = "X-Token-Delivery"
DELIVERIES: Final = ("body", "cookie")


def cookie_mode(request: web.Request) -> bool:
    """Whether the client asked for the refresh token as a cookie; a 400 for an unknown delivery."""
    value = request.headers.get(DELIVERY_HEADER, "body").strip().lower()
    if value not in DELIVERIES:
        raise InvalidRequest(detail={DELIVERY_HEADER: f"must be one of {', '.join(DELIVERIES)}"})
    return value == "cookie"


def presented(request: web.Request) -> str | None:
    """The refresh token of the cookie, if the request carries one."""
    return request.cookies.get(COOKIE)


def _secure(request: web.Request) -> bool:
    # A TLS-terminating proxy in front says so; a client lying "https" over http only loses its own cookie
    # (a browser keeps no Secure cookie from an insecure origin), so the header needs no trust.
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def set_cookie_header(request: web.Request, token: str | None, max_age_s: int = 0) -> str:
    """A ``Set-Cookie`` value that stores ``token`` for ``max_age_s`` seconds, or (``None``) removes it."""
    jar: SimpleCookie = SimpleCookie()
    jar[COOKIE] = token or ""
    morsel = jar[COOKIE]
    morsel["path"] = COOKIE_PATH
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    morsel["max-age"] = str(max_age_s if token else 0)
    if not token:
        morsel["expires"] = "Thu, 01 Jan 1970 00:00:00 GMT"
    if _secure(request):
        morsel["secure"] = True
    return morsel.OutputString()
