"""Handlers of the video resource once created: metadata reads, edits and deletes (uploads: api/uploads.py).

* ``GET /api/v1/videos/{id}`` — metadata, renditions and playback URLs; ``GET /api/v1/videos/{id}/status`` — the
  status and the lifecycle. Reading follows the video's privacy (api/access.py); a private video seen by its
  owner comes with a playback token.
* ``PATCH /api/v1/videos/{id}`` (edit) and ``DELETE /api/v1/videos/{id}`` need the video's owner or an admin.

A delete tombstones the row at once (404 from then on), removes the original and every packaged object from
storage, drops the renditions' rows, and publishes ``VideoStatusChanged(DELETED)`` on ``video.lifecycle`` so caches
and read models purge it; the owner may repeat a delete that failed half-way, and it finishes the job. An edit that
changes the privacy publishes ``VideoPrivacyChanged`` on the same topic once the row holds the new value, so the
CDN edge stops serving what it kept under the old one (processors/cdn_purge.py); if Kafka does not acknowledge
it, the privacy goes back and the edit is a 503 to repeat.
"""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

from aiohttp import web

from api.access import issue_playback_token, optional_principal, owned_video, readable_video, require_principal
from api.http import iso, now_ms, playback_urls, read_json_object, video_id_of
from api.keys import catalog_key, events_key, settings_key, store_key
from api.storage import source_key
from api.validation import parse_edit_body

log = logging.getLogger(__name__)


# --- reads ----------------------------------------------------------------------------------------


def _private_playback(request: web.Request, video: Any) -> tuple[str | None, dict[str, Any] | None]:
    """For a private video (seen by its owner): a playback token and what to tell the client about it."""
    if video.privacy != "private" or video.status not in ("playable", "ready"):
        return None, None
    principal = optional_principal(request)
    assert principal is not None  # viewable_video let only the owner (or an admin) through
    token, expires_at = issue_playback_token(request, video, principal)
    return token, {"token": token, "expires_at": iso(expires_at)}


async def get_video(request: web.Request) -> web.Response:
    """``GET /api/v1/videos/{id}``: metadata, renditions and playback URLs."""
    video_id, video = await readable_video(request)
    token, playback = _private_playback(request, video)
    variants = await request.app[catalog_key].variants(video_id)
    renditions = [
        {
            "name": v.rendition,
            "kind": v.kind,
            "codec": v.codec,
            "width": v.width,
            "height": v.height,
            "fps": v.fps,
            "bandwidth": v.bandwidth_bps,
            "complete": bool(v.complete),
        }
        for v in variants
    ]
    return web.json_response(
        {
            "video_id": video_id,
            "title": video.title,
            "description": video.description,
            "tags": sorted(video.tags or ()),
            "privacy": video.privacy,
            "status": video.status,
            "status_reason": video.status_reason,
            "duration_s": video.duration_s,
            "width": video.width,
            "height": video.height,
            "fps": video.fps,
            "created_at": iso(video.created_at),
            "playable_at": iso(video.playable_at),
            "ready_at": iso(video.ready_at),
            "renditions": renditions,
            "urls": playback_urls(request, video_id, video.status, token),
            "owner_id": video.owner_id,
            "playback_token": playback,
        }
    )


async def get_video_status(request: web.Request) -> web.Response:
    """``GET /api/v1/videos/{id}/status``: the current status, its reason and the lifecycle, oldest first."""
    video_id, video = await readable_video(request)
    token, _ = _private_playback(request, video)
    lifecycle = await request.app[catalog_key].lifecycle(video_id)
    history = [
        {"status": row.status, "reason": row.reason, "changed_at": iso(row.changed_at)} for row in reversed(lifecycle)
    ]
    return web.json_response(
        {
            "video_id": video_id,
            "status": video.status,
            "reason": video.status_reason,
            "updated_at": iso(video.updated_at),
            "history": history,
            "urls": playback_urls(request, video_id, video.status, token),
        }
    )


# --- changes by the owner -------------------------------------------------------------------------


async def edit_video(request: web.Request) -> web.Response:
    """``PATCH /api/v1/videos/{id}``: title, description, tags, privacy, thumbnail_time; the owner only.

    Anything else (owner_id, status, sizes, ...) is refused with a 400 naming the field: no mass assignment.
    """
    principal = require_principal(request)
    video_id = video_id_of(request)
    changes = parse_edit_body(await read_json_object(request))
    video = await owned_video(request, video_id, principal)
    catalog = request.app[catalog_key]
    await catalog.edit_video(video_id, changes)
    privacy = changes.get("privacy")
    if privacy is not None and privacy != video.privacy:
        # After the row changed: the edge's misses from here on get the new answer, so the purge this event
        # causes cannot be undone by a refetch of the old one.
        try:
            await request.app[events_key].privacy_changed(
                video_id, privacy, video.privacy, now_ms(), principal.account_id
            )
        except Exception:
            # Unannounced, the edge would keep serving the old privacy: put it back so a repeat is a change again.
            await catalog.edit_video(video_id, {"privacy": video.privacy})
            raise
    log.info("video %s edited by %s: %s", video_id, principal.account_id, sorted(changes))
    return await get_video(request)


async def delete_video(request: web.Request) -> web.Response:
    """``DELETE /api/v1/videos/{id}``: the owner or an admin; 204, then a 404 for everyone."""
    app = request.app
    principal = require_principal(request)
    video_id = video_id_of(request)
    video = await owned_video(request, video_id, principal, deleted_ok=True)
    catalog, store, storage = app[catalog_key], app[store_key], app[settings_key].storage
    # A repeated delete keeps the first one's time (Cassandra hands it back naive, in UTC).
    deleted_at = video.deleted_at.replace(tzinfo=UTC) if video.deleted_at else now_ms()
    reason = "deleted by its owner" if video.owner_id == principal.account_id else "deleted by an admin"
    # The tombstone first: from here on every read answers 404, whatever the rest of the clean-up does.
    await catalog.mark_deleted(video_id, reason, deleted_at)
    removed = await store.remove_prefix(storage.media_bucket, f"videos/{video_id}/")
    await store.remove(video.source_bucket or storage.uploads_bucket, video.source_key or source_key(video_id))
    await catalog.remove_renditions(video_id)
    # Last, so a failure above leaves the owner a delete to repeat; caches and read models purge on this event.
    await app[events_key].status_changed(video_id, "DELETED", reason, deleted_at)
    log.info("video %s deleted by %s (%d media objects removed)", video_id, principal.account_id, removed)
    return web.Response(status=204)
