"""The steps every way of uploading shares (the form, the presigned multipart upload of api/uploads.py, tus in
api/tus.py): the video's catalogue row at the start, and at the end ``processing`` in the catalogue, then
VideoUploaded and VideoStatusChanged on Kafka. Not a handler module: handlers import it, it imports no handler."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import re
import uuid
from collections.abc import Awaitable
from typing import Any

from aiohttp import web

from api.errors import Conflict
from api.http import now_ms
from api.keys import catalog_key, events_key, settings_key
from api.storage import ObjectInfo, source_key
from api.validation import VideoMetadata

log = logging.getLogger(__name__)

# The owner of the videos uploaded before accounts existed: only an admin may change them.
ANONYMOUS_OWNER = "anonymous"
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def trace_id_of(request: web.Request) -> str:
    """The W3C trace id of the request, else its X-Request-Id, else a new id: carried into VideoUploaded."""
    traceparent = request.headers.get("traceparent", "")
    parts = traceparent.split("-")
    if len(parts) == 4 and re.fullmatch(r"[0-9a-f]{32}", parts[1]):
        return parts[1]
    request_id = request.headers.get("X-Request-Id", "")
    if re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", request_id):
        return request_id
    return uuid.uuid4().hex


def guess_content_type(declared: str | None, filename: str | None) -> str:
    if declared and declared.split(";")[0].strip().lower() not in (DEFAULT_CONTENT_TYPE, "binary/octet-stream"):
        return declared
    guessed = mimetypes.guess_type(filename)[0] if filename else None
    return guessed or declared or DEFAULT_CONTENT_TYPE


async def create_row(app: web.Application, video_id: str, owner_id: str, meta: VideoMetadata) -> None:
    settings, catalog = app[settings_key], app[catalog_key]
    created = await catalog.create_video(
        video_id,
        owner_id,
        meta.catalog_fields(),
        settings.storage.uploads_bucket,
        source_key(video_id),
        meta.filename,
    )
    if not created:  # a UUID4 collision: never in practice, but never overwrite a row either
        raise Conflict("video id already exists")
    writes: list[Awaitable[None]] = [catalog.set_status(video_id, "uploading", None, now_ms())]
    if meta.size_bytes is not None:
        # The declared size until the upload completes; complete compares the stored object with it.
        writes.append(catalog.record_upload(video_id, meta.size_bytes))
    await asyncio.gather(*writes)


async def finish_upload(
    request: web.Request, video: Any, video_id: str, info: ObjectInfo, content_type: str | None
) -> None:
    """The common end of every upload: ``processing`` in the catalogue, then the events on Kafka.

    Raises Conflict when another request already completed the upload, and PublishError (503) after
    moving the row back to ``uploading`` when Kafka did not acknowledge the events.
    """
    app = request.app
    catalog, events = app[catalog_key], app[events_key]
    changed_at = now_ms()
    if not await catalog.transition_status(video_id, "uploading", "processing", None, changed_at):
        current = await catalog.get_video(video_id)
        raise Conflict("upload already completed", {"status": current.status if current else None})
    await asyncio.gather(
        catalog.record_upload(video_id, info.size),
        catalog.set_status(video_id, "processing", None, changed_at),
    )
    uploaded = {
        "video_id": video_id,
        "owner_id": video.owner_id or ANONYMOUS_OWNER,
        "source_bucket": video.source_bucket,
        "source_key": video.source_key,
        "size_bytes": info.size,
        "content_type": guess_content_type(content_type or info.content_type, video.original_filename),
        "original_filename": video.original_filename or "",
        "title": video.title or "",
        "thumbnail_time_s": video.thumbnail_time_s,
        "uploaded_at": changed_at,
        "trace_id": trace_id_of(request),
    }
    results = await asyncio.gather(
        events.video_uploaded(uploaded),
        events.status_changed(video_id, "PROCESSING", None, changed_at),
        return_exceptions=True,
    )
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is not None:
        reason = "events not acknowledged by Kafka; complete the upload again"
        reverted_at = now_ms()
        if await catalog.transition_status(video_id, "processing", "uploading", reason, reverted_at):
            await catalog.set_status(video_id, "uploading", reason, reverted_at)
        raise failure
    log.info("video %s uploaded (%d bytes), events published", video_id, info.size)
