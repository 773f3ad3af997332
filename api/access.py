"""Who a request is, who may see, play and change a video, and the signed playback tokens of private videos.

Handlers ask for the caller with three functions:

* ``optional_principal(request)`` — the ``Principal`` of a valid ``Authorization: Bearer <access token>``, None
  without the header; a header that is there but does not check out is a 401 (never silently anonymous);
* ``require_principal(request)`` — the same, 401 without the header;
* ``require_role(request, role)`` — 403 unless the caller has ``role`` (``admin`` has every role).

The rules (issue 5, "Authorization on every object"):

* ``public`` videos are for everyone, ``unlisted`` ones for whoever has the link (the id: a random UUID, never
  listed), ``private`` ones for their owner (and admins) alone. To anyone else a private video does not exist:
  404, never 403, so ids cannot be probed.
* Only the owner (or an admin) edits, deletes or completes the upload of a video; others who can see it get a 403.
* A deleted video (``deleted_at`` set, or status ``deleted``) is a 404 everywhere, even to its owner.

Players (hls.js, dash.js, Safari, a CDN) fetch manifests and segments without an Authorization header, so a
private video plays with a playback token instead: a short-lived HS256 JWT for one video, signed with its own key
and audience (api/tokens.py), so an access token is not a playback token and a token for video X is refused on Y.

The token travels in a path prefix, ``/api/v1/videos/{id}/p/{token}/playlist.m3u8``, not in a query string. Every
URI inside our HLS playlists and DASH MPD is relative (``720p/playlist.m3u8``, ``seg_00001.m4s``,
``$RepresentationID$/init.mp4``), and relative resolution (RFC 3986, 5.2) keeps the base's path but drops its
query, so a ``?token=`` would be lost on the first segment while a path prefix reaches every file. The
alternative, rewriting each manifest per viewer, would make manifests uncacheable and cost a parse per request;
the prefix serves the stored bytes unchanged. The token lives for the video's duration plus PLAYBACK_TOKEN_TTL_S
(so one sitting plays to the end); a player that needs more asks ``GET /api/v1/videos/{id}`` for a fresh one.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from aiohttp import hdrs, web

from api.errors import Forbidden, NotFound, Unauthorized
from api.http import video_id_of
from api.keys import auth_key, catalog_key, principal_key
from api.tokens import ALGORITHM, LEEWAY_S, InvalidToken, Principal

PLAYBACK_AUDIENCE = "vidplat-playback"
# However long the film, a playback token never outlives this.
PLAYBACK_TTL_MAX_S = 12 * 3600


# --- who is asking ----------------------------------------------------------------------------------


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected Authorization: Bearer <access token>")
    return token.strip()


def optional_principal(request: web.Request) -> Principal | None:
    """The caller, or None without an Authorization header; a bad token is a 401."""
    cached = request.get(principal_key)
    if cached is not None:
        return cached
    token = _bearer(request)
    if token is None:
        return None
    try:
        principal = request.app[auth_key].tokens.verify_access(token)
    except InvalidToken as exc:
        raise Unauthorized(str(exc)) from None
    request[principal_key] = principal
    return principal


def require_principal(request: web.Request) -> Principal:
    """The caller; 401 without valid credentials."""
    principal = optional_principal(request)
    if principal is None:
        raise Unauthorized("sign in: this needs an access token")
    return principal


def require_role(request: web.Request, role: str) -> Principal:
    """The caller, who must have ``role`` (admins have every role); 401 without credentials, 403 without it."""
    principal = require_principal(request)
    if not principal.has_role(role):
        raise Forbidden(f"this needs the {role} role", {"role": role})
    return principal


# --- videos -----------------------------------------------------------------------------------------


def is_gone(video: Any) -> bool:
    """No such video, or a deleted one."""
    return video is None or video.status == "deleted" or getattr(video, "deleted_at", None) is not None


def owns(video: Any, principal: Principal | None) -> bool:
    """The caller is the video's owner or an admin."""
    if principal is None:
        return False
    return principal.is_admin or (
        video.owner_id is not None and hmac.compare_digest(video.owner_id, principal.account_id)
    )


def can_view(video: Any, principal: Principal | None) -> bool:
    """Metadata and playback: public and unlisted for anyone with the id, private for the owner."""
    return video.privacy != "private" or owns(video, principal)


async def viewable_video(request: web.Request, video_id: str) -> Any:
    """The video row, if the caller may see it; a 404 otherwise (missing, deleted or someone else's private)."""
    video = await request.app[catalog_key].get_video(video_id)
    if is_gone(video) or not can_view(video, optional_principal(request)):
        raise NotFound("video not found")
    return video


async def readable_video(request: web.Request) -> tuple[str, Any]:
    """The ``{video_id}`` of the path and its row, if the caller may see it; 404 otherwise, a private video's
    existence included."""
    video_id = video_id_of(request)
    return video_id, await viewable_video(request, video_id)


async def owned_video(request: web.Request, video_id: str, principal: Principal, *, deleted_ok: bool = False) -> Any:
    """The video row, if ``principal`` owns it (or is an admin): 404 when it cannot see it, 403 when it can.

    ``deleted_ok`` lets the owner reach a video already tombstoned (to finish an interrupted delete).
    """
    video = await request.app[catalog_key].get_video(video_id)
    if video is None or (is_gone(video) and not (deleted_ok and owns(video, principal))):
        raise NotFound("video not found")
    if not owns(video, principal):
        if not can_view(video, principal):
            raise NotFound("video not found")
        raise Forbidden("only the video's owner may do this")
    return video


# --- playback tokens --------------------------------------------------------------------------------


def issue_playback_token(request: web.Request, video: Any, principal: Principal) -> tuple[str, datetime]:
    """A token that plays ``video`` (manifests and every segment) until the returned time."""
    tokens = request.app[auth_key].tokens
    now = datetime.now(UTC)
    lifetime = min(tokens.settings.playback_ttl_s + int(video.duration_s or 0), PLAYBACK_TTL_MAX_S)
    expires_at = now + timedelta(seconds=lifetime)
    claims = {
        "iss": tokens.settings.jwt_issuer,
        "aud": PLAYBACK_AUDIENCE,
        "sub": principal.account_id,
        "vid": video.video_id,
        "iat": now,
        "exp": expires_at,
    }
    return jwt.encode(claims, tokens.playback_key, algorithm=ALGORITHM), expires_at


def check_playback_token(request: web.Request, video_id: str, token: str) -> None:
    """403 unless ``token`` is a current playback token for ``video_id``.

    Checked before the video is looked up, so a refusal says nothing about whether ``video_id`` exists.
    """
    tokens = request.app[auth_key].tokens
    try:
        claims = jwt.decode(
            token,
            tokens.playback_key,
            algorithms=[ALGORITHM],
            audience=PLAYBACK_AUDIENCE,
            issuer=tokens.settings.jwt_issuer,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "iss", "aud", "vid"]},
        )
    except jwt.ExpiredSignatureError:
        raise Forbidden("playback token expired; fetch the video again for a new one") from None
    except jwt.InvalidTokenError:
        raise Forbidden("invalid playback token") from None
    vid = claims.get("vid")
    if not isinstance(vid, str) or not hmac.compare_digest(vid, video_id):
        raise Forbidden("this playback token is for another video")
