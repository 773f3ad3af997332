"""Request and response helpers of every handler module: the video id of a path, the JSON body, instants in and
out, and the URLs the API hands out.

Handler modules share code through this module (and api/access.py, api/errors.py, api/keys.py), never by
importing one another. Nothing here touches a store: a helper reads the request, the app's config, or a value.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from api.errors import InvalidRequest, NotFound
from api.keys import config_key
from common.qoe.views import from_ms

VIDEO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
EPOCH_MS_MAX: Final = 2**45
# "+" in a query string decodes to a space: "...T10:00:00 02:00" was "...T10:00:00+02:00".
_LOST_PLUS = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


# --- requests ---------------------------------------------------------------------------------------------


def video_id_of(request: web.Request) -> str:
    """The ``{video_id}`` of the path, or 404 for something that cannot be an id (no dots, no slashes)."""
    video_id = request.match_info["video_id"]
    if not VIDEO_ID_RE.match(video_id):
        raise NotFound("video not found")
    return video_id


async def read_json_object(
    request: web.Request,
    allowed: Collection[str] | None = None,
    *,
    required: bool = False,
    unknown_field: str = "is not a known field",
    parse_detail: bool = True,
) -> dict[str, Any]:
    """The body's JSON object; a 400 when it is anything else.

    No body reads as ``{}`` unless ``required``. With ``allowed``, every other field is named in the 400 with
    ``unknown_field``. ``parse_detail`` puts the JSON parser's message in the 400 of a body that is not JSON.
    """
    if not request.body_exists:
        if required:
            raise InvalidRequest("the body must be a JSON object")
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidRequest("the body is not valid JSON", str(exc) if parse_detail else None) from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = sorted(set(body) - set(allowed)) if allowed is not None else []
    if unknown:
        raise InvalidRequest(detail={name: unknown_field for name in unknown})
    return body


def parse_instant(text: str) -> datetime:
    """An ISO-8601 instant (naive = UTC) or epoch milliseconds; ValueError otherwise."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        ms = int(text)
        if ms >= EPOCH_MS_MAX:
            raise ValueError("epoch milliseconds out of range")
        return from_ms(ms)
    value = datetime.fromisoformat(_LOST_PLUS.sub(r"\1+\2", text))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- responses --------------------------------------------------------------------------------------------


def now_ms() -> datetime:
    """Now, truncated to milliseconds: what both Avro (timestamp-millis) and Cassandra keep."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # Cassandra hands back naive UTC datetimes
        value = value.replace(tzinfo=UTC)
    return value.isoformat().replace("+00:00", "Z")


def base_url(request: web.Request) -> str:
    return request.app[config_key].public_base_url or f"{request.scheme}://{request.host}"


def playback_urls(
    request: web.Request, video_id: str, status: str, token: str | None = None
) -> dict[str, str | None] | None:
    """Where to play the video: HLS and DASH once playable; progressive, poster, storyboard once ready.

    With a playback token (private videos) every URL carries it as a path prefix (see api/access.py).
    """
    if status not in ("playable", "ready"):
        return None
    base = f"{base_url(request)}/api/v1/videos/{video_id}"
    if token is not None:
        base = f"{base}/p/{token}"
    ready = status == "ready"
    return {
        "hls": f"{base}/playlist.m3u8",
        "dash": f"{base}/manifest.mpd",
        "progressive": f"{base}/stream" if ready else None,
        "poster": f"{base}/poster.jpg" if ready else None,
        "storyboard": f"{base}/storyboard.vtt" if ready else None,
    }
