"""Viewers' engagement: comments with one level of replies, likes/dislikes, and watch history per profile.

Writes are events: the handler checks the request, publishes the event (producers/engagement_events.py) and
answers 202 once Kafka acknowledged it (503 when it did not); the agents of processors/engagement.py apply
it to Cassandra a moment later, so a read right after a write may not show it yet.

    POST   /api/v1/videos/{video_id}/comments                         {body} → 202 {comment_id}
    POST   /api/v1/videos/{video_id}/comments/{comment_id}/replies    {body} → 202 {comment_id}
    GET    /api/v1/videos/{video_id}/comments?sort=newest|top&limit=&cursor=
    GET    /api/v1/videos/{video_id}/comments/{comment_id}/replies?limit=&cursor=   (oldest first)
    DELETE /api/v1/videos/{video_id}/comments/{comment_id}            → 202 (the author's account, or an admin)
    PUT    /api/v1/videos/{video_id}/rating                           {value: like|dislike} → 202
    DELETE /api/v1/videos/{video_id}/rating                           → 202 (the rating is cleared)
    GET    /api/v1/videos/{video_id}/engagement                       likes, dislikes, comments (+ my_rating)

    PUT    /api/v1/me/progress/{video_id}    {position_s, session_id, watched_s?} → 202 (a ViewRecorded)
    GET    /api/v1/me/progress/{video_id}    the resume position, whichever device reported it last
    GET    /api/v1/me/history?limit=&cursor= every video the profile watched, most recent first
    GET    /api/v1/me/continue-watching?limit=  started, not finished, most recent first

Every write needs a signed-in caller; the viewer is the token's profile (``Principal.viewer_id``), so ratings,
progress and history are per profile. Comments and totals of a video are readable by whoever may see the
video: unknown, deleted and (for anyone but its owner or an admin) private videos are a 404. "top" orders
top-level comments by their number of replies, then newest first. A reply to a reply joins the same thread
(replies are one level deep). An ``Idempotency-Key`` header makes a retried post the same comment.

Resume positions live in ``watch_progress``, written both from player heartbeats (the QoE agent) and from
``PUT /me/progress``: the latest report by event time wins, so a position follows the profile to any device.
A video is finished once the position reaches ``FINISHED_FRACTION`` of its duration.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import math
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from api.access import can_view, is_gone, optional_principal, readable_video, require_principal
from api.errors import Forbidden, InvalidRequest, NotFound
from api.http import iso, now_ms, read_json_object
from api.keys import catalog_key, engagement_store_key, events_key, qoe_store_key, settings_key
from api.tokens import Principal, load_secret
from common.settings import AuthSettings
from producers.engagement_events import EngagementEvents, RatingValue
from sinks.engagement import Comment, CommentSort

COMMENT_MAX = 5000
PAGE_DEFAULT: Final = 20
PAGE_MAX: Final = 100
SORTS: Final = ("newest", "top")
RATINGS: Final[dict[str, RatingValue]] = {"like": "LIKE", "dislike": "DISLIKE"}
FINISHED_FRACTION: Final = 0.95
SESSION_ID_MAX = 128
# The namespace of comment ids derived from an Idempotency-Key (a fixed, random UUID).
COMMENT_ID_NAMESPACE: Final = uuid.UUID("6f1c2a1e-6d0b-4d55-9a53-0b7f7b0c1e42")
COMMENT_ID_RE = re.compile(r"^[0-9a-f-]{36}$")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# --- helpers ----------------------------------------------------------------------------------------------


def events(request: web.Request) -> EngagementEvents:
    return EngagementEvents(request.app[events_key], request.app[settings_key])


async def json_body(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    """Every engagement write sends a JSON object (an empty body is a 400)."""
    return await read_json_object(request, allowed, required=True, unknown_field="unknown field")


def comment_text(body: dict[str, Any]) -> str:
    text = body.get("body")
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("invalid request", {"body": "required: the comment's text"})
    text = text.strip()
    if len(text) > COMMENT_MAX:
        raise InvalidRequest("invalid request", {"body": f"at most {COMMENT_MAX} characters"})
    if _CONTROL_BUT_LINES.search(text):
        raise InvalidRequest("invalid request", {"body": "control characters are not allowed"})
    return text


def new_comment_id(request: web.Request, principal: Principal, video_id: str) -> str:
    """A fresh id, or the same id for the same Idempotency-Key of the same account and video."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return str(uuid.uuid4())
    if not 1 <= len(key) <= 200:
        raise InvalidRequest("invalid request", {"Idempotency-Key": "1 to 200 characters"})
    return str(uuid.uuid5(COMMENT_ID_NAMESPACE, f"{principal.account_id}\n{video_id}\n{key}"))


def page_limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None or raw == "":
        return PAGE_DEFAULT
    if not raw.isdigit() or not 1 <= int(raw) <= PAGE_MAX:
        raise InvalidRequest("invalid query", {"limit": f"an integer from 1 to {PAGE_MAX}"})
    return int(raw)


@functools.cache
def cursor_key(auth: AuthSettings) -> bytes:
    """The key that signs list cursors, derived from the platform's one secret like the token keys."""
    return hmac.new(load_secret(auth), b"vidplat list cursor", hashlib.sha256).digest()


def _cursor_mac(request: web.Request, payload: bytes) -> bytes:
    return hmac.new(cursor_key(request.app[settings_key].auth), payload, hashlib.sha256).digest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(request: web.Request, kind: str, state: bytes | None) -> str | None:
    """The driver's paging state, bound to its list and signed: Cassandra only ever sees paging states it
    issued (a forged one is a protocol error that makes the driver drop its connection)."""
    if state is None:
        return None
    payload = kind.encode() + b":" + state
    return f"{_b64(payload)}.{_b64(_cursor_mac(request, payload))}"


def decode_cursor(request: web.Request, kind: str) -> bytes | None:
    raw = request.query.get("cursor")
    if not raw:
        return None
    encoded, _, mac = raw.partition(".")
    try:
        payload, signature = _unb64(encoded), _unb64(mac)
    except (binascii.Error, ValueError):
        payload, signature = b"", b""
    prefix, _, state = payload.partition(b":")
    valid = hmac.compare_digest(signature, _cursor_mac(request, payload))
    if not valid or prefix != kind.encode() or not state:
        raise InvalidRequest("invalid query", {"cursor": "not a cursor of this list: use next_cursor as returned"})
    return state


def comment_json(comment: Comment, principal: Principal | None) -> dict[str, Any]:
    return {
        "comment_id": comment.comment_id,
        "video_id": comment.video_id,
        "parent_id": comment.parent_id,
        "author_id": comment.author_id,
        "body": comment.body,
        "posted_at": iso(comment.posted_at),
        "reply_count": (comment.reply_count or 0) if comment.parent_id is None else None,
        "mine": principal is not None and principal.account_id == comment.account_id,
    }


async def existing_comment(request: web.Request, video_id: str) -> Comment:
    comment_id = request.match_info["comment_id"]
    comment = await request.app[engagement_store_key].comment(comment_id) if COMMENT_ID_RE.match(comment_id) else None
    if comment is None or comment.removed or comment.video_id != video_id:
        raise NotFound("comment not found")
    return comment


# --- comments ---------------------------------------------------------------------------------------------


async def post_comment(request: web.Request) -> web.Response:
    """`POST /api/v1/videos/{video_id}/comments`."""
    principal = require_principal(request)
    video_id, _video = await readable_video(request)
    text = comment_text(await json_body(request, {"body"}))
    comment_id = new_comment_id(request, principal, video_id)
    await events(request).comment_posted(comment_id, video_id, principal.account_id, principal.profile_id, text)
    return web.json_response({"comment_id": comment_id, "video_id": video_id, "parent_id": None}, status=202)


async def post_reply(request: web.Request) -> web.Response:
    """`POST /api/v1/videos/{video_id}/comments/{comment_id}/replies`: a reply to a reply joins its thread."""
    principal = require_principal(request)
    video_id, _video = await readable_video(request)
    parent = await existing_comment(request, video_id)
    text = comment_text(await json_body(request, {"body"}))
    thread = parent.parent_id or parent.comment_id
    if thread != parent.comment_id:
        root = await request.app[engagement_store_key].comment(thread)
        if root is None or root.removed:
            raise NotFound("comment not found", "the thread was removed")
    comment_id = new_comment_id(request, principal, video_id)
    await events(request).comment_posted(
        comment_id, video_id, principal.account_id, principal.profile_id, text, parent_id=thread
    )
    return web.json_response({"comment_id": comment_id, "video_id": video_id, "parent_id": thread}, status=202)


async def list_comments(request: web.Request) -> web.Response:
    """`GET /api/v1/videos/{video_id}/comments?sort=newest|top&limit=&cursor=`: top-level comments."""
    principal = optional_principal(request)
    video_id, _video = await readable_video(request)
    sort = request.query.get("sort", "newest")
    if sort not in SORTS:
        raise InvalidRequest("invalid query", {"sort": "newest or top"})
    limit = page_limit(request)
    state = decode_cursor(request, f"{sort}/{video_id}")
    sort_name: CommentSort = "newest" if sort == "newest" else "top"
    comments, next_state = await request.app[engagement_store_key].comments(video_id, sort_name, limit, state)
    return web.json_response(
        {
            "video_id": video_id,
            "sort": sort,
            "comments": [comment_json(c, principal) for c in comments],
            "next_cursor": encode_cursor(request, f"{sort}/{video_id}", next_state),
        }
    )


async def list_replies(request: web.Request) -> web.Response:
    """`GET /api/v1/videos/{video_id}/comments/{comment_id}/replies`: oldest first."""
    principal = optional_principal(request)
    video_id, _video = await readable_video(request)
    parent = await existing_comment(request, video_id)
    if parent.parent_id is not None:
        raise NotFound("comment not found", "replies have no replies of their own: see the thread's first comment")
    limit = page_limit(request)
    kind = f"replies/{parent.comment_id}"
    state = decode_cursor(request, kind)
    replies, next_state = await request.app[engagement_store_key].replies(parent.comment_id, limit, state)
    return web.json_response(
        {
            "video_id": video_id,
            "comment_id": parent.comment_id,
            "replies": [comment_json(r, principal) for r in replies],
            "next_cursor": encode_cursor(request, kind, next_state),
        }
    )


async def delete_comment(request: web.Request) -> web.Response:
    """`DELETE /api/v1/videos/{video_id}/comments/{comment_id}`: its author's account or an admin.

    The author is checked by account, not profile: whoever holds the account's token can act as any of its
    profiles anyway."""
    principal = require_principal(request)
    video_id, _video = await readable_video(request)
    comment = await existing_comment(request, video_id)
    if comment.account_id != principal.account_id and not principal.is_admin:
        raise Forbidden("only its author or an admin removes a comment")
    await events(request).comment_removed(comment.comment_id, video_id, principal.account_id)
    return web.json_response({"comment_id": comment.comment_id, "removed": True}, status=202)


# --- ratings ----------------------------------------------------------------------------------------------


async def put_rating(request: web.Request) -> web.Response:
    """`PUT /api/v1/videos/{video_id}/rating` ``{value: like|dislike}``: sets or changes the profile's rating."""
    principal = require_principal(request)
    video_id, _video = await readable_video(request)
    body = await json_body(request, {"value"})
    value = body.get("value")
    if not isinstance(value, str) or value not in RATINGS:
        raise InvalidRequest("invalid request", {"value": "like or dislike"})
    await events(request).rating_set(video_id, principal.account_id, principal.profile_id, RATINGS[value])
    return web.json_response({"video_id": video_id, "value": value}, status=202)


async def delete_rating(request: web.Request) -> web.Response:
    """`DELETE /api/v1/videos/{video_id}/rating`: the profile's rating is cleared."""
    principal = require_principal(request)
    video_id, _video = await readable_video(request)
    await events(request).rating_set(video_id, principal.account_id, principal.profile_id, "NONE")
    return web.json_response({"video_id": video_id, "value": None}, status=202)


async def engagement_totals(request: web.Request) -> web.Response:
    """`GET /api/v1/videos/{video_id}/engagement`: likes, dislikes, live comments (replies included)."""
    principal = optional_principal(request)
    video_id, _video = await readable_video(request)
    store = request.app[engagement_store_key]
    totals = await store.totals(video_id)
    body: dict[str, Any] = {
        "video_id": video_id,
        "likes": totals.likes,
        "dislikes": totals.dislikes,
        "comments": totals.comments,
    }
    if principal is not None:
        body["my_rating"] = await store.rating(video_id, principal.viewer_id)
    return web.json_response(body)


# --- watch progress and history ---------------------------------------------------------------------------


def finished(position_s: float | None, duration_s: float | None) -> bool:
    return bool(duration_s) and (position_s or 0.0) >= FINISHED_FRACTION * float(duration_s or 0.0)


def seconds(body: dict[str, Any], name: str, problems: dict[str, str], *, required: bool) -> float | None:
    value = body.get(name)
    if value is None:
        if required:
            problems[name] = "required: seconds from the start of the video"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        problems[name] = "a number of seconds, 0 or more"
        return None
    return float(value)


async def put_progress(request: web.Request) -> web.Response:
    """`PUT /api/v1/me/progress/{video_id}` ``{position_s, session_id, watched_s?}``: a ViewRecorded event."""
    principal = require_principal(request)
    video_id, video = await readable_video(request)
    body = await json_body(request, {"position_s", "session_id", "watched_s"})
    problems: dict[str, str] = {}
    position = seconds(body, "position_s", problems, required=True)
    watched = seconds(body, "watched_s", problems, required=False)
    session_id = body.get("session_id")
    if (
        not isinstance(session_id, str)
        or not 1 <= len(session_id) <= SESSION_ID_MAX
        or _CONTROL_BUT_LINES.search(session_id)
    ):
        problems["session_id"] = f"required: the player's playback session id (1 to {SESSION_ID_MAX} characters)"
    if video.duration_s and position is not None and position > video.duration_s + 1:
        problems["position_s"] = f"past the end of the video ({video.duration_s:.3f} s)"
    if problems:
        raise InvalidRequest("invalid request", problems)
    assert position is not None and isinstance(session_id, str)
    at = now_ms()
    await events(request).view_recorded(
        video_id, session_id, principal.account_id, principal.profile_id, position, watched or 0.0, at
    )
    return web.json_response({"video_id": video_id, "position_s": position, "updated_at": iso(at)}, status=202)


async def get_progress(request: web.Request) -> web.Response:
    """`GET /api/v1/me/progress/{video_id}`: where to resume (0 when never watched)."""
    principal = require_principal(request)
    video_id, video = await readable_video(request)
    rows = await request.app[qoe_store_key].progress(principal.viewer_id)
    row = next((r for r in rows if r.video_id == video_id), None)
    position = float(row.position_s or 0.0) if row else 0.0
    return web.json_response(
        {
            "video_id": video_id,
            "position_s": position,
            "updated_at": iso(row.updated_at) if row else None,
            "duration_s": video.duration_s,
            "finished": finished(position, video.duration_s),
        }
    )


async def watched_entries(request: web.Request, principal: Principal) -> list[Any]:
    """The profile's progress rows, most recent first (one per video; a person's history is at most a few
    thousand rows, so one partition read and a sort beat keeping a second, re-ordered copy in step)."""
    rows = await request.app[qoe_store_key].progress(principal.viewer_id)
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(
        rows,
        key=lambda r: (r.updated_at.replace(tzinfo=UTC) if r.updated_at else epoch, r.video_id),
        reverse=True,
    )


def history_cursor(row: Any) -> str:
    marker = f"{int(row.updated_at.replace(tzinfo=UTC).timestamp() * 1000) if row.updated_at else 0}:{row.video_id}"
    return base64.urlsafe_b64encode(marker.encode()).decode().rstrip("=")


async def entry_json(request: web.Request, principal: Principal, row: Any) -> dict[str, Any] | None:
    """A history entry with the video's title and duration; None for a video that is gone or hidden."""
    video = await request.app[catalog_key].get_video(row.video_id)
    if video is None or is_gone(video) or not can_view(video, principal):
        return None
    position = float(row.position_s or 0.0)
    return {
        "video_id": row.video_id,
        "title": video.title,
        "duration_s": video.duration_s,
        "position_s": position,
        "finished": finished(position, video.duration_s),
        "watched_at": iso(row.updated_at),
    }


async def history(request: web.Request) -> web.Response:
    """`GET /api/v1/me/history?limit=&cursor=`: every video the profile watched, the most recent first."""
    principal = require_principal(request)
    limit = page_limit(request)
    rows = await watched_entries(request, principal)
    raw = request.query.get("cursor")
    if raw:
        cursors = [history_cursor(r) for r in rows]
        if raw not in cursors:
            raise InvalidRequest("invalid query", {"cursor": "not a cursor of this list: use next_cursor as returned"})
        rows = rows[cursors.index(raw) + 1 :]
    page = rows[:limit]
    entries = [await entry_json(request, principal, r) for r in page]
    return web.json_response(
        {
            "viewer_id": principal.viewer_id,
            "history": [e for e in entries if e is not None],
            "next_cursor": history_cursor(page[-1]) if len(rows) > limit else None,
        }
    )


async def continue_watching(request: web.Request) -> web.Response:
    """`GET /api/v1/me/continue-watching?limit=`: started and not finished, the most recent first."""
    principal = require_principal(request)
    limit = page_limit(request)
    found: list[dict[str, Any]] = []
    for row in await watched_entries(request, principal):
        if len(found) >= limit:
            break
        if not row.position_s or row.position_s <= 0:
            continue
        entry = await entry_json(request, principal, row)
        if entry is not None and not entry["finished"]:
            found.append(entry)
    return web.json_response({"viewer_id": principal.viewer_id, "continue_watching": found})
