"""Handlers of uploads: create a video and hand out where to send its original, complete the upload, or both at once
in a form upload (DESIGN.md, "The VOD path", steps 1-2).

* ``POST /api/v1/videos`` creates the row (``uploading``) and hands out a presigned PUT for
  ``uploads/sources/{video_id}``, or presigned part URLs of an S3 multipart upload above
  MULTIPART_THRESHOLD;
* ``POST /api/v1/videos/{id}/complete`` (completing the multipart upload first) checks the object with a
  HEAD, records its size, moves the row to ``processing`` and publishes ``VideoUploaded`` plus
  ``VideoStatusChanged(PROCESSING)``; it answers 202 only after Kafka acknowledged both;
* ``POST /api/v1/videos/upload`` does both at once for small files sent as multipart/form-data, streaming
  the file part to S3 as it arrives: the form is parsed (metadata fields, then the ``file`` part), its metadata
  validated, then the file stored and checked; a failure after the row exists leaves it ``failed`` with the
  reason and no object behind.

Creating and uploading need the ``creator`` role; completing needs the video's owner or an admin (api/access.py).

The move to ``processing`` is a conditional write (``Catalog.transition_status``), so a second or concurrent
complete gets a 409 instead of publishing twice. If Kafka does not acknowledge, the row goes back to
``uploading`` and the client may complete again (downstream stages are idempotent, so an event that did
get through twice is harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from minio.error import S3Error
from yarl import URL

from api.access import owned_video, require_role
from api.config import MiB
from api.errors import Conflict, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from api.http import base_url, iso, now_ms, read_json_object, video_id_of
from api.intake import create_row, finish_upload, guess_content_type
from api.keys import catalog_key, config_key, settings_key, store_key
from api.storage import ObjectInfo, source_key
from api.validation import VideoMetadata, parse_create_body, parse_form_fields

log = logging.getLogger(__name__)

# The form upload streams to S3 in parts of this size (the most it holds in memory per upload).
FORM_PART_SIZE = 10 * MiB
FORM_READ_CHUNK = 256 * 1024
# A metadata form field is small; a bigger one is a mistake or an attack.
FORM_FIELD_MAX_BYTES = 64 * 1024
FORM_FIELDS_MAX = 20
# Rough processing throughput for the estimate returned by the form upload.
PROCESSING_BYTES_PER_S = 2_000_000


# --- creating and completing uploads --------------------------------------------------------------


async def _upload_plan(request: web.Request, video_id: str, meta: VideoMetadata) -> dict[str, Any]:
    """Where and how the client sends the original: one presigned PUT, or presigned parts of a multipart."""
    app = request.app
    config, settings, store = app[config_key], app[settings_key], app[store_key]
    assert meta.size_bytes is not None  # required by parse_create_body
    bucket, key = settings.storage.uploads_bucket, source_key(video_id)
    complete_url = f"{base_url(request)}/api/v1/videos/{video_id}/complete"
    content_type = guess_content_type(meta.content_type, meta.filename)
    if meta.size_bytes <= config.multipart_threshold:
        ttl = timedelta(seconds=config.presign_ttl_s)
        return {
            "method": "PUT",
            "url": await store.presigned_put(bucket, key, ttl),
            "expires_at": iso(datetime.now(UTC) + ttl),
            # S3 stores the Content-Type sent with the PUT; VideoUploaded reports it.
            "headers": {"Content-Type": content_type},
            "complete_url": complete_url,
        }
    part_size = config.part_size_for(meta.size_bytes)
    part_count = math.ceil(meta.size_bytes / part_size)
    # A big file takes a while: give its part URLs at least the time to send it at 1 MB/s.
    ttl = timedelta(seconds=min(max(config.presign_ttl_s, meta.size_bytes // 1_000_000), 7 * 24 * 3600))
    upload_id = await store.create_multipart(bucket, key, content_type)
    urls = await store.presigned_part_urls(bucket, key, upload_id, part_count, ttl)
    return {
        "type": "multipart",
        "method": "PUT",
        "upload_id": upload_id,
        "part_size": part_size,
        "parts": [{"part_number": number, "url": url} for number, url in enumerate(urls, start=1)],
        "expires_at": iso(datetime.now(UTC) + ttl),
        # The upload id travels in the URL: the videos table has no column for it.
        "complete_url": str(URL(complete_url).with_query(upload_id=upload_id)),
    }


async def create_video(request: web.Request) -> web.Response:
    """``POST /api/v1/videos``: a new video in ``uploading`` and where to upload its original."""
    app = request.app
    principal = require_role(request, "creator")
    meta = parse_create_body(await read_json_object(request), app[config_key].max_upload_bytes)
    video_id = str(uuid.uuid4())
    await create_row(app, video_id, principal.account_id, meta)
    try:
        upload = await _upload_plan(request, video_id, meta)
    except Exception as exc:
        # Storage failed: the row would wait forever for an upload nobody can send.
        await app[catalog_key].set_status(video_id, "failed", "could not prepare the upload; create again", now_ms())
        raise exc
    log.info("video %s created (%s bytes declared, %s)", video_id, meta.size_bytes, upload.get("type", "put"))
    return web.json_response(
        {"video_id": video_id, "status": "uploading", "upload": upload},
        status=201,
        headers={hdrs.LOCATION: f"/api/v1/videos/{video_id}"},
    )


async def _complete_multipart(
    request: web.Request, bucket: str, key: str, upload_id: str, declared: int | None
) -> None:
    """Assemble the client's parts into the object (before it is checked like any upload)."""
    store = request.app[store_key]
    parts = await store.list_parts(bucket, key, upload_id)
    if parts is None:
        # Unknown upload id, or one completed by an earlier try that failed later: the object decides.
        return
    if not parts:
        raise Conflict("upload not found in storage", {"upload_id": upload_id, "parts": 0})
    uploaded = sum(part.size or 0 for part in parts)
    if declared is not None and uploaded != declared:
        # Not completed: the client can still send the missing parts and complete again.
        raise InvalidRequest(
            "uploaded parts do not add up to the declared size",
            {"declared_size_bytes": declared, "uploaded_bytes": uploaded, "parts": len(parts)},
        )
    try:
        await store.complete_multipart(bucket, key, upload_id, parts)
    except S3Error as exc:
        if exc.code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
            raise InvalidRequest("storage refused the parts", f"{exc.code}: {exc.message}") from None
        raise


async def complete_upload(request: web.Request) -> web.Response:
    """``POST /api/v1/videos/{id}/complete``: check the uploaded object and start processing."""
    app = request.app
    config, store = app[config_key], app[store_key]
    principal = require_role(request, "creator")
    video_id = video_id_of(request)
    body = await read_json_object(request)
    video = await owned_video(request, video_id, principal)
    if video.status != "uploading":
        raise Conflict(f"video is {video.status}, not uploading", {"status": video.status})
    bucket, key = video.source_bucket, video.source_key
    upload_id = request.query.get("upload_id") or body.get("upload_id")
    if upload_id is not None:
        if not isinstance(upload_id, str) or not upload_id:
            raise InvalidRequest("upload_id must be a non-empty string")
        await _complete_multipart(request, bucket, key, upload_id, video.size_bytes)
    info = await store.stat(bucket, key)
    if info is None:
        raise Conflict("upload not found in storage", {"bucket": bucket, "key": key})
    if info.size > config.max_upload_bytes:
        await store.remove(bucket, key)
        raise PayloadTooLarge(
            "upload too large", {"size_bytes": info.size, "max_upload_bytes": config.max_upload_bytes}
        )
    if video.size_bytes is not None and info.size != video.size_bytes:
        raise InvalidRequest(
            "uploaded size differs from the declared size_bytes",
            {"declared_size_bytes": video.size_bytes, "uploaded_bytes": info.size},
        )
    await finish_upload(request, video, video_id, info, None)
    return web.json_response({"video_id": video_id, "status": "processing"}, status=202)


# --- the form upload: parse, validate, store ------------------------------------------------------


class _StreamTooLarge(Exception):
    pass


def _check_form_headers(request: web.Request, max_form_upload_bytes: int) -> None:
    """Refuse what the headers already give away, before a byte of the body is read."""
    if request.content_length is not None and request.content_length > max_form_upload_bytes:
        raise PayloadTooLarge(
            "upload too large for a form upload; use POST /api/v1/videos",
            {"content_length": request.content_length, "max_form_upload_bytes": max_form_upload_bytes},
        )
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType("expected multipart/form-data", {"content_type": request.content_type})


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(8192):
        data += chunk
        if len(data) > FORM_FIELD_MAX_BYTES:
            raise InvalidRequest(detail={part.name or "field": f"is larger than {FORM_FIELD_MAX_BYTES} bytes"})
    try:
        return data.decode(part.get_charset("utf-8"))
    except (LookupError, UnicodeDecodeError):
        raise InvalidRequest(detail={part.name or "field": "is not valid text"}) from None


async def _parse_form(request: web.Request) -> tuple[MultipartReader, dict[str, str], BodyPartReader]:
    """The form's reader, its metadata fields, and its ``file`` part, left unread (it must come last)."""
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise InvalidRequest("malformed multipart body", str(exc)) from None
    fields: dict[str, str] = {}
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                raise InvalidRequest("every part must be a named form field")
            if part.name == "file":
                return reader, fields, part
            if part.filename is not None:
                raise InvalidRequest(detail={part.name: "is a file; only the part named 'file' may be one"})
            if part.name in fields or len(fields) >= FORM_FIELDS_MAX:
                raise InvalidRequest(detail={part.name: "is repeated, or too many fields"})
            fields[part.name] = await _read_field(part)
    except (ValueError, HttpProcessingError) as exc:  # aiohttp's multipart parser on a malformed body
        raise InvalidRequest("malformed multipart body", getattr(exc, "message", None) or str(exc)) from None
    raise InvalidRequest(detail={"file": "is required, as the last part of the form"})


def _form_metadata(fields: dict[str, str], file_part: BodyPartReader, limit: int) -> VideoMetadata:
    """The video's metadata from the fields, with the file part's name and type where the fields give none."""
    try:
        meta = parse_form_fields(fields, limit)
    except InvalidRequest as exc:
        if isinstance(exc.detail, dict) and exc.detail.get("title") == "is required":
            exc.detail["file"] = "must be the last part: fields after it are not read"
        raise
    if meta.size_bytes is not None and meta.size_bytes > limit:
        raise PayloadTooLarge("upload too large", {"size_bytes": meta.size_bytes, "max_form_upload_bytes": limit})
    filename = meta.filename or file_part.filename
    if filename is not None:
        filename = filename.replace("\\", "/").rsplit("/", 1)[-1][:255] or None  # display only
    declared_type = meta.content_type or file_part.headers.get(hdrs.CONTENT_TYPE)
    content_type = guess_content_type(declared_type, filename)
    return dataclasses.replace(meta, filename=filename, content_type=content_type)


def _file_puller(part: BodyPartReader, limit: int) -> tuple[Callable[[int], Awaitable[bytes]], Callable[[], int]]:
    """``pull(n)`` for ``ObjectStore.put_stream``: up to n bytes of the file part, counted against ``limit``."""
    pending = bytearray()
    received = 0

    async def pull(size: int) -> bytes:
        nonlocal received
        while len(pending) < size:
            chunk = await part.read_chunk(FORM_READ_CHUNK)
            if not chunk:
                break
            received += len(chunk)
            if received > limit:
                raise _StreamTooLarge
            pending.extend(chunk)
        out = bytes(pending[:size])
        del pending[:size]
        return out

    return pull, lambda: received


async def _stream_file(
    app: web.Application,
    video_id: str,
    reader: MultipartReader,
    file_part: BodyPartReader,
    meta: VideoMetadata,
    limit: int,
) -> ObjectInfo:
    """Stream the file part to the original's key, then check that the stored object is what was sent."""
    settings, store = app[settings_key], app[store_key]
    bucket, key = settings.storage.uploads_bucket, source_key(video_id)
    assert meta.content_type is not None  # set by _form_metadata
    pull, received = _file_puller(file_part, limit)
    await store.put_stream(bucket, key, pull, meta.content_type, FORM_PART_SIZE)
    if await reader.next() is not None:
        raise InvalidRequest(detail={"file": "must be the last part of the form"})
    info = await store.stat(bucket, key)
    if info is None or info.size != received():
        raise InvalidRequest("the stored object does not match what was received")
    if meta.size_bytes is not None and info.size != meta.size_bytes:
        raise InvalidRequest(
            "uploaded size differs from size_bytes",
            {"declared_size_bytes": meta.size_bytes, "uploaded_bytes": info.size},
        )
    if info.size == 0:
        raise InvalidRequest(detail={"file": "is empty"})
    return info


async def _abandon_upload(request: web.Request, video_id: str, reason: str) -> None:
    """A failed form upload: no event, no partial object, the row ``failed`` with the reason."""
    app = request.app
    settings, catalog, store = app[settings_key], app[catalog_key], app[store_key]

    async def clean() -> None:
        try:
            await store.remove(settings.storage.uploads_bucket, source_key(video_id))
        finally:
            await catalog.set_status(video_id, "failed", reason, now_ms())

    # Shielded: the cleanup completes even when the request is being cancelled (server shutdown).
    await asyncio.shield(asyncio.ensure_future(clean()))
    log.warning("form upload of video %s failed: %s", video_id, reason)


@contextlib.asynccontextmanager
async def _abandoned_on_failure(request: web.Request, video_id: str, limit: int) -> AsyncIterator[None]:
    """Any failure inside abandons the upload (``_abandon_upload``), and the error names the video."""
    try:
        yield
    except _StreamTooLarge:
        await _abandon_upload(request, video_id, f"upload exceeded {limit} bytes")
        raise PayloadTooLarge("upload too large", {"video_id": video_id, "max_form_upload_bytes": limit}) from None
    except InvalidRequest as exc:
        problems = "; ".join(f"{k} {v}" for k, v in exc.detail.items()) if isinstance(exc.detail, dict) else ""
        await _abandon_upload(request, video_id, f"upload refused: {problems or exc.error}")
        exc.detail = {**exc.detail, "video_id": video_id} if isinstance(exc.detail, dict) else {"video_id": video_id}
        raise
    except (Exception, asyncio.CancelledError) as exc:
        await _abandon_upload(request, video_id, f"upload stream failed ({type(exc).__name__})")
        if isinstance(exc, S3Error | asyncio.CancelledError):
            raise
        raise InvalidRequest("upload stream failed", type(exc).__name__) from exc


async def upload_video_form(request: web.Request) -> web.Response:
    """``POST /api/v1/videos/upload``: metadata fields, then the ``file`` part, streamed to S3."""
    app = request.app
    config = app[config_key]
    principal = require_role(request, "creator")  # before a byte of the body is read
    _check_form_headers(request, config.max_form_upload_bytes)
    limit = min(config.max_form_upload_bytes, config.max_upload_bytes)
    reader, fields, file_part = await _parse_form(request)
    meta = _form_metadata(fields, file_part, limit)
    video_id = str(uuid.uuid4())
    await create_row(app, video_id, principal.account_id, meta)
    async with _abandoned_on_failure(request, video_id, limit):
        info = await _stream_file(app, video_id, reader, file_part, meta, limit)
    video = await app[catalog_key].get_video(video_id)
    await finish_upload(request, video, video_id, info, meta.content_type)
    estimate = max(5, math.ceil(info.size / PROCESSING_BYTES_PER_S))
    return web.json_response(
        {"video_id": video_id, "status": "processing", "estimated_processing_time_s": estimate},
        status=202,
        headers={hdrs.LOCATION: f"/api/v1/videos/{video_id}"},
    )
