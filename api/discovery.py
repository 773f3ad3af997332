"""Discovery API: catalogue lists, search and recommendations (reads of sinks/discovery.py).

    GET /api/v1/videos?sort=newest|most_viewed&limit=&cursor=      public, ready/playable videos
    GET /api/v1/creators/{creator_id}/videos?limit=&page=           a creator's videos, newest first
    GET /api/v1/search?q=&min_duration=&max_duration=&uploaded_after=&uploaded_before=&limit=&page=
    GET /api/v1/recommendations/trending?limit=                     views of the last 24 h, recent hours weigh more
    GET /api/v1/videos/{video_id}/related?limit=                    co-watched first, then similar in text
    GET /api/v1/recommendations/for-you?limit=                      for the signed-in viewer (trending if none)

Lists show only public videos that are ``ready`` or ``playable``; a creator's own list, asked for by the creator
signed in, also shows their unlisted and private ones. Search ranks exact title matches first (see
``sinks.discovery.search_rank``). ``cursor`` is opaque: pass the ``next_cursor`` of the previous page.
Routed in api/routes.py; the Discovery reads (``discovery_ctx``) share the Catalog's Cassandra session.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web

from api.access import optional_principal, viewable_video
from api.errors import InvalidRequest
from api.http import iso, parse_instant, playback_urls
from api.keys import catalog_key, discovery_key
from sinks.discovery import (
    Discovery,
    SearchFilters,
    for_you,
    listed,
    related,
    search_videos,
    trending,
)

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 100
MAX_PAGE: Final = 500
MAX_QUERY_CHARS: Final = 200
SORTS: Final = ("newest", "most_viewed")


# --- parameters -------------------------------------------------------------------------------------------


def _limit(query: Mapping[str, str], problems: dict[str, str]) -> int:
    text = query.get("limit", str(DEFAULT_LIMIT))
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        problems["limit"] = f"an integer from 1 to {MAX_LIMIT}"
        return DEFAULT_LIMIT
    return int(text)


def _page(query: Mapping[str, str], problems: dict[str, str]) -> int:
    text = query.get("page", "1")
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        problems["page"] = f"an integer from 1 to {MAX_PAGE}"
        return 1
    return int(text)


def _seconds(query: Mapping[str, str], name: str, problems: dict[str, str]) -> float | None:
    if name not in query:
        return None
    try:
        value = float(query[name])
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        problems[name] = "a number of seconds, 0 or more"
        return None
    return value


def _instant(query: Mapping[str, str], name: str, problems: dict[str, str]) -> datetime | None:
    if name not in query:
        return None
    try:
        return parse_instant(query[name])
    except (ValueError, OverflowError):
        problems[name] = "an ISO-8601 date or time, or epoch milliseconds"
        return None


def _raise(problems: dict[str, str]) -> None:
    if problems:
        raise InvalidRequest("invalid query parameters", detail=problems)


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode("\n".join(str(p) for p in parts).encode()).decode().rstrip("=")


def decode_cursor(text: str, count: int) -> list[str]:
    try:
        parts = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode().split("\n")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        parts = []
    if len(parts) != count:
        raise InvalidRequest("invalid query parameters", detail={"cursor": "not a cursor this list gave"})
    return parts


# --- responses --------------------------------------------------------------------------------------------


def video_item(request: web.Request, row: Any, **extra: Any) -> dict[str, Any]:
    return {
        "video_id": row.video_id,
        "owner_id": row.owner_id,
        "title": row.title,
        "description": row.description,
        "tags": sorted(row.tags or ()),
        "privacy": row.privacy,
        "status": row.status,
        "duration_s": row.duration_s,
        "width": row.width,
        "height": row.height,
        "created_at": iso(row.created_at),
        "urls": playback_urls(request, row.video_id, row.status),
        **extra,
    }


def signed_in_account(request: web.Request) -> str | None:
    """The account of the signed-in caller, if any (a bad token is a 401): the owner behind "my own list"."""
    principal = optional_principal(request)
    return principal.account_id if principal else None


def viewer_key(request: web.Request) -> str | None:
    """The key under which processors/recommend.py keeps the caller's recent videos: the profile their token
    selected, else the account (ViewRecorded's profile_id, else user_id)."""
    principal = optional_principal(request)
    if principal is None:
        return None
    return f"profile:{principal.profile_id}" if principal.profile_id else f"user:{principal.account_id}"


# --- handlers ---------------------------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


async def list_videos(request: web.Request) -> web.Response:
    """``GET /api/v1/videos``: public ready/playable videos, ``sort=newest`` (default) or ``most_viewed``."""
    query = request.query
    problems: dict[str, str] = {}
    limit = _limit(query, problems)
    sort = query.get("sort", "newest")
    if sort not in SORTS:
        problems["sort"] = f"one of {', '.join(SORTS)}"
    _raise(problems)
    discovery = request.app[discovery_key]
    cursor = query.get("cursor")
    if sort == "newest":
        before, after_id = datetime.now(UTC) + timedelta(seconds=1), None
        if cursor:
            ms, after_id = decode_cursor(cursor, 2)
            if not ms.isdigit():
                raise InvalidRequest("invalid query parameters", detail={"cursor": "not a cursor this list gave"})
            before = datetime.fromtimestamp(int(ms) / 1000, UTC)
        # Rows created in the cursor's own millisecond come again; those up to the cursor are dropped.
        rows = await discovery.newest(before + timedelta(milliseconds=1), limit + 1 + 20)
        if after_id is not None:
            rows = [r for r in rows if (_utc(r.created_at), r.video_id) < (before, after_id)]
        page, more = rows[:limit], len(rows) > limit
        next_cursor = (
            encode_cursor(int(_utc(page[-1].created_at).timestamp() * 1000), page[-1].video_id) if more else None
        )
        items = [video_item(request, row) for row in page]
    else:
        after: tuple[int, str] | None = None
        if cursor:
            views_text, video_id = decode_cursor(cursor, 2)
            if not views_text.isdigit():
                raise InvalidRequest("invalid query parameters", detail={"cursor": "not a cursor this list gave"})
            after = (int(views_text), video_id)
        picked: list[tuple[int, Any]] = []
        more = True
        while len(picked) <= limit and more:
            ranked = await discovery.most_viewed(limit * 2 + 1, after)
            more = len(ranked) == limit * 2 + 1
            rows = await discovery.videos([video_id for _, video_id in ranked])
            for (views, _), row in zip(ranked, rows, strict=True):
                if listed(row) and len(picked) <= limit:
                    picked.append((views, row))
            if ranked:
                after = ranked[-1]
        more = len(picked) > limit
        picked = picked[:limit]
        next_cursor = encode_cursor(picked[-1][0], picked[-1][1].video_id) if more and picked else None
        items = [video_item(request, row, views=views) for views, row in picked]
    return web.json_response({"sort": sort, "videos": items, "next_cursor": next_cursor})


async def creator_videos(request: web.Request) -> web.Response:
    """``GET /api/v1/creators/{creator_id}/videos``: newest first; the creator signed in also sees non-public ones."""
    problems: dict[str, str] = {}
    limit, page = _limit(request.query, problems), _page(request.query, problems)
    _raise(problems)
    creator_id = request.match_info["creator_id"]
    own = signed_in_account(request) == creator_id
    rows = await request.app[discovery_key].by_owner(creator_id)
    shown = sorted(
        (row for row in rows if listed(row, creator_id if own else None)),
        key=lambda r: (_utc(r.created_at), r.video_id),
        reverse=True,
    )
    start = (page - 1) * limit
    return web.json_response(
        {
            "creator_id": creator_id,
            "own": own,
            "total": len(shown),
            "page": page,
            "limit": limit,
            "videos": [video_item(request, row) for row in shown[start : start + limit]],
        }
    )


async def search(request: web.Request) -> web.Response:
    """``GET /api/v1/search``: every word of ``q`` must match the title, description or tags (stemmed)."""
    query = request.query
    problems: dict[str, str] = {}
    text = query.get("q", "").strip()
    if not text or len(text) > MAX_QUERY_CHARS:
        problems["q"] = f"required, at most {MAX_QUERY_CHARS} characters"
    limit, page = _limit(query, problems), _page(query, problems)
    filters = SearchFilters(
        min_duration_s=_seconds(query, "min_duration", problems),
        max_duration_s=_seconds(query, "max_duration", problems),
        uploaded_after=_instant(query, "uploaded_after", problems),
        uploaded_before=_instant(query, "uploaded_before", problems),
    )
    if filters.min_duration_s is not None and filters.max_duration_s is not None:
        if filters.min_duration_s > filters.max_duration_s:
            problems["max_duration"] = "at least min_duration"
    if filters.uploaded_after and filters.uploaded_before and filters.uploaded_after >= filters.uploaded_before:
        problems["uploaded_before"] = "after uploaded_after"
    _raise(problems)
    hits = await search_videos(request.app[discovery_key], text, filters, wanted=page * limit + 1)
    start = (page - 1) * limit
    return web.json_response(
        {
            "q": text,
            "total": len(hits),
            "page": page,
            "limit": limit,
            "videos": [video_item(request, row) for row in hits[start : start + limit]],
        }
    )


async def trending_videos(request: web.Request) -> web.Response:
    """``GET /api/v1/recommendations/trending``."""
    problems: dict[str, str] = {}
    limit = _limit(request.query, problems)
    _raise(problems)
    ranked = await trending(request.app[discovery_key], datetime.now(UTC), limit)
    return web.json_response(
        {"videos": [video_item(request, row, score=round(score, 3)) for row, score in ranked], "window_hours": 24}
    )


async def related_videos(request: web.Request) -> web.Response:
    """``GET /api/v1/videos/{video_id}/related``: "because you watched" this one."""
    problems: dict[str, str] = {}
    limit = _limit(request.query, problems)
    _raise(problems)
    video_id = request.match_info["video_id"]
    await viewable_video(request, video_id)  # someone else's private video is a 404, as everywhere
    found = await related(request.app[discovery_key], video_id, limit)
    items = [video_item(request, row, source=source, score=round(score, 4)) for row, source, score in found]
    return web.json_response({"video_id": video_id, "videos": items})


async def videos_for_you(request: web.Request) -> web.Response:
    """``GET /api/v1/recommendations/for-you``: from the viewer's recent videos; trending for a stranger."""
    problems: dict[str, str] = {}
    limit = _limit(request.query, problems)
    _raise(problems)
    discovery = request.app[discovery_key]
    viewer = viewer_key(request)
    now = datetime.now(UTC)
    if viewer is None:
        found = [(row, "trending", score) for row, score in await trending(discovery, now, limit)]
    else:
        found = await for_you(discovery, viewer, now, limit)
    items = [video_item(request, row, source=source, score=round(score, 4)) for row, source, score in found]
    return web.json_response({"signed_in": viewer is not None, "videos": items})


async def discovery_ctx(app: web.Application) -> AsyncIterator[None]:
    # After catalog_ctx (cleanup contexts run in order): the Catalog's session is open by now.
    app[discovery_key] = await asyncio.to_thread(Discovery, app[catalog_key].session)
    yield
