"""Resumable uploads through tus 1.0 (https://tus.io/protocols/resumable-upload): the core protocol and the
creation, termination and expiration extensions, on an S3 multipart upload.

Stage: tus PATCHes → the original at ``sources/{video_id}`` in the uploads bucket → the end every upload shares
(api/intake.py ``finish_upload``: the row ``processing``, then VideoUploaded and VideoStatusChanged on Kafka).

* ``OPTIONS /api/v1/tus/uploads`` — Tus-Version, Tus-Extension and Tus-Max-Size (the upload cap, MAX_UPLOAD_BYTES);
* ``POST /api/v1/tus/uploads`` (creators) — Upload-Length and Upload-Metadata (``title``, ``description``,
  ``tags`` comma-separated, ``privacy``, ``thumbnail_time``, ``filename``/``name``, ``filetype``/``content_type``;
  checked as the form upload's fields are) create the video row (``uploading``), the S3 multipart upload and the
  upload's state row; 201 with Location ``/api/v1/tus/uploads/{video_id}`` and Upload-Expires;
* ``HEAD /api/v1/tus/uploads/{id}`` — Upload-Offset, Upload-Length, Upload-Metadata, Upload-Expires, no-store;
* ``PATCH /api/v1/tus/uploads/{id}`` — ``application/offset+octet-stream`` from Upload-Offset (409 when it is not
  the stored offset); the PATCH that reaches Upload-Length completes the upload;
* ``DELETE /api/v1/tus/uploads/{id}`` — termination: the multipart upload aborted, the video ``failed``.

Every request but OPTIONS needs ``Tus-Resumable: 1.0.0`` (412 otherwise) and the creator who created the upload:
anyone else gets a 404, as if it did not exist. An expired upload is a 410 until the sweep removes it.

Guarantees:

* What a PATCH received is stored before it answers, and also when the client went away mid-body: the bytes go
  to S3 as parts of exactly ``part_size`` (5 MiB or more, S3's minimum), and the tail smaller than a part is kept
  as a small object ``tus/{id}/tail-{offset}``. The state row (sinks/tus_uploads.py) is written after each part
  and at the end, so the next HEAD — on any API process, after a restart too — reports the bytes stored.
* The row moves only by a conditional write on the offset: of two PATCHes racing from one offset one counts, the
  other is a 409. A crash between an S3 write and the row leaves a part or tail object nothing refers to; the
  retry overwrites it (part numbers and tail keys follow from the offset) and the upload's end removes it.
* The offset reaches Upload-Length only after the object is assembled and the video went to ``processing``. If
  that failed half-way (Kafka did not acknowledge, say), the client's retry from the stored offset finds the
  object assembled and finishes the job; nothing is published twice (``finish_upload``'s conditional move).
* Abandoned uploads expire UPLOAD_TTL after their last PATCH; ``expire_uploads`` (run every SWEEP_INTERVAL_S by each
  API process, idempotently) aborts their multipart upload, removes their tail and fails their video.

Clients: tus-js-client in the web app (``endpoint: "/api/v1/tus/uploads"``, ``headers: {Authorization}``), or
any tus 1.0 client. No creation-with-upload, no deferred length, no concatenation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hmac
import io
import logging
import random
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from aiohttp import hdrs, web
from minio.datatypes import Part
from minio.error import S3Error

from api.access import is_gone, require_role
from api.config import S3_MAX_PARTS, S3_MIN_PART_SIZE, MiB
from api.errors import (
    Conflict,
    Gone,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    UnsupportedMediaType,
)
from api.http import now_ms
from api.intake import create_row, finish_upload, guess_content_type
from api.keys import catalog_key, config_key, settings_key, store_key, tus_uploads_key
from api.storage import ObjectStore, is_missing, source_key
from api.validation import VideoMetadata, parse_form_fields
from sinks.tus_uploads import TusUpload, TusUploads

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,expiration"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
TUS_PATH = "/api/v1/tus/uploads"
# An upload nobody PATCHed for this long is abandoned.
UPLOAD_TTL = timedelta(hours=24)
# Each API process sweeps expired uploads this often (the first sweep at a random point of the first interval,
# so processes started together do not sweep together).
SWEEP_INTERVAL_S = 600.0
METADATA_MAX_BYTES = 16 * 1024
# Metadata keys tus clients send by habit (tus-js-client's examples, Uppy), under the form's names.
METADATA_ALIASES = {"filetype": "content_type", "type": "content_type", "name": "filename"}
# For browsers on other origins (the API does CORS): what a tus client reads and sends.
EXPOSED_HEADERS = "Upload-Offset, Upload-Length, Upload-Metadata, Upload-Expires, Location, Tus-Resumable, Tus-Version"
REQUEST_HEADERS = "Tus-Resumable, Upload-Length, Upload-Metadata, Upload-Offset, X-Requested-With"


def part_size_for(length: int) -> int:
    """Parts of 5 MiB (S3's minimum), or more, in whole MiB, to stay within S3's 10,000 parts."""
    needed = -(-length // S3_MAX_PARTS)
    return max(S3_MIN_PART_SIZE, -(-needed // MiB) * MiB)


def _http_date(value: datetime) -> str:
    return format_datetime(value.astimezone(UTC), usegmt=True)


def _tail_key(upload_id: str, offset: int) -> str:
    return f"tus/{upload_id}/tail-{offset}"


# --- request checks -----------------------------------------------------------------------------------------


def _check_version(request: web.Request) -> None:
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise PreconditionFailed(
            detail={"Tus-Resumable": f"must be {TUS_VERSION}"}, headers={"Tus-Version": TUS_VERSION}
        )


def _header_int(request: web.Request, name: str) -> int:
    raw = request.headers.get(name)
    if raw is None:
        raise InvalidRequest(detail={name: "is required"})
    if not re.fullmatch(r"[0-9]{1,18}", raw.strip()):
        raise InvalidRequest(detail={name: "must be a non-negative integer"})
    return int(raw.strip())


def parse_metadata(header: str | None, length: int, max_upload_bytes: int) -> VideoMetadata:
    """The video's metadata from Upload-Metadata (``key base64(value)`` pairs), checked like the form's fields."""
    fields: dict[str, str] = {}
    if header is not None and header.strip():
        if len(header) > METADATA_MAX_BYTES:
            raise InvalidRequest(detail={"Upload-Metadata": f"is larger than {METADATA_MAX_BYTES} bytes"})
        for pair in header.split(","):
            key, _, encoded = pair.strip().partition(" ")
            name = METADATA_ALIASES.get(key, key)
            if not key or name in fields:
                raise InvalidRequest(detail={"Upload-Metadata": f"has an empty or repeated key {key!r}"})
            try:
                fields[name] = base64.b64decode(encoded.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidRequest(detail={key: "is not base64 of UTF-8 text"}) from None
    if "size_bytes" in fields:
        raise InvalidRequest(detail={"size_bytes": "is given by Upload-Length"})
    meta = parse_form_fields(fields, max_upload_bytes)
    return dataclasses.replace(
        meta, size_bytes=length, content_type=guess_content_type(meta.content_type, meta.filename)
    )


async def _owned_upload(request: web.Request, *, expired_ok: bool = False) -> TusUpload:
    """The upload of the path if the caller created it; a 404 for anyone else, a 410 once it expired."""
    principal = require_role(request, "creator")
    upload = await request.app[tus_uploads_key].get(request.match_info["upload_id"])
    if upload is None or not hmac.compare_digest(upload.owner_id, principal.account_id):
        raise NotFound("upload not found")
    if not expired_ok and upload.completed_at is None and upload.expires_at <= datetime.now(UTC):
        raise Gone(detail={"expired_at": _http_date(upload.expires_at)})
    return upload


def _progress_headers(upload: TusUpload) -> dict[str, str]:
    headers = {"Upload-Offset": str(upload.upload_offset), "Cache-Control": "no-store"}
    if upload.completed_at is None:
        headers["Upload-Expires"] = _http_date(upload.expires_at)
    return headers


# --- S3 calls minio's public API lacks (see api/storage.py's docstring on its private multipart calls) -------


async def _upload_part(store: ObjectStore, bucket: str, key: str, upload_id: str, number: int, data: bytes) -> str:
    etag: str = await store.run(store.client._upload_part, bucket, key, data, None, upload_id, number)
    return etag.strip('"')


async def _put_small(store: ObjectStore, bucket: str, key: str, data: bytes) -> None:
    await store.run(store.client.put_object, bucket, key, io.BytesIO(data), len(data))


async def _get_small(store: ObjectStore, bucket: str, key: str) -> bytes | None:
    def get() -> bytes:
        response = store.client.get_object(bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    try:
        return await store.run(get)
    except S3Error as exc:
        if is_missing(exc):
            return None
        raise


# --- handlers -----------------------------------------------------------------------------------------------


async def tus_options(request: web.Request) -> web.Response:
    """``OPTIONS``: what this server speaks (no credentials needed)."""
    return web.Response(
        status=204,
        headers={
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(request.app[config_key].max_upload_bytes),
        },
    )


async def create_upload(request: web.Request) -> web.Response:
    """``POST /api/v1/tus/uploads``: a new video in ``uploading`` and the upload to PATCH its bytes to."""
    _check_version(request)
    app = request.app
    principal = require_role(request, "creator")
    cap = app[config_key].max_upload_bytes
    if "Upload-Defer-Length" in request.headers:
        raise InvalidRequest(detail={"Upload-Defer-Length": "is not supported: send Upload-Length"})
    length = _header_int(request, "Upload-Length")
    if length == 0:
        raise InvalidRequest(detail={"Upload-Length": "must be greater than 0"})
    if length > cap:
        raise PayloadTooLarge("upload too large", {"upload_length": length, "max_upload_bytes": cap})
    if request.content_length:
        raise InvalidRequest(detail={"body": "must be empty: send the bytes with PATCH"})
    raw_metadata = request.headers.get("Upload-Metadata")
    meta = parse_metadata(raw_metadata, length, cap)
    assert meta.content_type is not None  # set by parse_metadata
    video_id = str(uuid.uuid4())
    await create_row(app, video_id, principal.account_id, meta)
    bucket = app[settings_key].storage.uploads_bucket
    try:
        s3_upload_id = await app[store_key].create_multipart(bucket, source_key(video_id), meta.content_type)
        created_at = now_ms()
        upload = TusUpload(
            upload_id=video_id,
            owner_id=principal.account_id,
            upload_length=length,
            upload_offset=0,
            part_size=part_size_for(length),
            s3_upload_id=s3_upload_id,
            part_etags=(),
            tail_key=None,
            metadata=raw_metadata.strip() if raw_metadata and raw_metadata.strip() else None,
            content_type=meta.content_type,
            created_at=created_at,
            expires_at=created_at + UPLOAD_TTL,
        )
        if not await app[tus_uploads_key].create(upload):
            raise Conflict("upload id already exists")
    except BaseException:
        # Nothing can be sent to it: the row would wait forever in uploading.
        await app[catalog_key].set_status(video_id, "failed", "could not prepare the upload; create again", now_ms())
        raise
    log.info("tus upload %s created (%d bytes, parts of %d)", video_id, length, upload.part_size)
    return web.Response(
        status=201,
        headers={hdrs.LOCATION: f"{TUS_PATH}/{video_id}", "Upload-Expires": _http_date(upload.expires_at)},
    )


async def upload_offset(request: web.Request) -> web.Response:
    """``HEAD /api/v1/tus/uploads/{id}``: how many bytes are stored, where the client resumes."""
    _check_version(request)
    upload = await _owned_upload(request)
    headers = {**_progress_headers(upload), "Upload-Length": str(upload.upload_length)}
    if upload.metadata:
        headers["Upload-Metadata"] = upload.metadata
    return web.Response(status=200, headers=headers)


async def patch_upload(request: web.Request) -> web.Response:
    """``PATCH /api/v1/tus/uploads/{id}``: the bytes from Upload-Offset on; stored as they arrive."""
    _check_version(request)
    if request.content_type != OFFSET_OCTET_STREAM:
        raise UnsupportedMediaType(f"expected {OFFSET_OCTET_STREAM}", {"content_type": request.content_type})
    offset = _header_int(request, "Upload-Offset")
    upload = await _owned_upload(request)
    if offset != upload.upload_offset:
        raise Conflict("Upload-Offset is not the stored offset", {"upload_offset": upload.upload_offset})
    remaining = upload.upload_length - offset
    if request.content_length is not None and request.content_length > remaining:
        raise PayloadTooLarge(
            "body longer than the rest of the upload",
            {"content_length": request.content_length, "remaining": remaining},
        )
    if upload.completed_at is not None:
        return web.Response(status=204, headers=_progress_headers(upload))
    writer = _UploadWriter(request, upload)
    await writer.load_tail()
    received = 0
    interrupted: BaseException | None = None
    while True:
        try:
            chunk = await request.content.readany()
        except (Exception, asyncio.CancelledError) as exc:
            # The client went away mid-body (aiohttp: ConnectionResetError), or the server is stopping: keep
            # what arrived, so the client resumes from there.
            interrupted = exc
            break
        if not chunk:
            break
        received += len(chunk)
        if received > remaining:
            raise PayloadTooLarge("body longer than the rest of the upload", {"remaining": remaining})
        await writer.add(chunk)
    # Shielded: what arrived is stored even when the request is being cancelled.
    upload = await asyncio.shield(asyncio.ensure_future(writer.save()))
    if isinstance(interrupted, asyncio.CancelledError):
        raise interrupted
    if interrupted is not None:
        log.info("tus upload %s interrupted at %d bytes", upload.upload_id, upload.upload_offset)
        raise InvalidRequest("upload interrupted; resume from Upload-Offset", type(interrupted).__name__)
    return web.Response(status=204, headers=_progress_headers(upload))


async def terminate_upload(request: web.Request) -> web.Response:
    """``DELETE /api/v1/tus/uploads/{id}``: the upload is dropped, and its video fails unless it completed."""
    _check_version(request)
    upload = await _owned_upload(request, expired_ok=True)
    await discard_upload(request.app, upload, "upload terminated by its owner")
    return web.Response(status=204)


# --- storing the bytes --------------------------------------------------------------------------------------


class _UploadWriter:
    """One PATCH's bytes into the upload: full parts as soon as they fill, the rest as the tail object.

    ``buffer`` holds the bytes after the recorded parts that are not in a part yet: the stored tail, then what
    this request brought. The last part of the file is never sent before the whole file is here, so the offset
    recorded before completion is always below Upload-Length.
    """

    def __init__(self, request: web.Request, upload: TusUpload) -> None:
        self.request = request
        self.upload = upload  # as recorded in the row
        self.etags = list(upload.part_etags)
        self.buffer = bytearray()
        self.bucket = request.app[settings_key].storage.uploads_bucket
        self.key = source_key(upload.upload_id)
        self.store = request.app[store_key]

    @property
    def offset(self) -> int:
        return len(self.etags) * self.upload.part_size + len(self.buffer)

    async def load_tail(self) -> None:
        if self.upload.tail_key is None:
            return
        data = await _get_small(self.store, self.bucket, self.upload.tail_key)
        if data is None:
            # Another request moved the upload on (and removed this tail) since the row was read.
            raise Conflict("the upload moved on; ask HEAD for its offset")
        self.buffer += data

    async def add(self, chunk: bytes) -> None:
        self.buffer += chunk
        size = self.upload.part_size
        while len(self.buffer) >= size and (len(self.etags) + 1) * size < self.upload.upload_length:
            await self._send_part(bytes(self.buffer[:size]))
            del self.buffer[:size]
            await self._record(len(self.etags) * size, None)

    async def _send_part(self, data: bytes) -> None:
        number = len(self.etags) + 1
        self.etags.append(await _upload_part(self.store, self.bucket, self.key, self.upload.s3_upload_id, number, data))

    async def _record(self, offset: int, tail_key: str | None, completed_at: datetime | None = None) -> None:
        """Move the row from the offset this request found (or last wrote) to ``offset``; a 409 if it moved."""
        previous = self.upload
        moved = dataclasses.replace(
            previous,
            upload_offset=offset,
            part_etags=tuple(self.etags),
            tail_key=tail_key,
            expires_at=now_ms() + UPLOAD_TTL,
            completed_at=completed_at,
        )
        if not await self.request.app[tus_uploads_key].advance(previous.upload_offset, moved):
            raise Conflict("another request moved the upload on; ask HEAD for its offset")
        self.upload = moved
        if previous.tail_key is not None and previous.tail_key != tail_key:
            await self.store.remove(self.bucket, previous.tail_key)

    async def save(self) -> TusUpload:
        """Store what is buffered (the tail), or complete the upload when it is whole."""
        offset = self.offset
        if offset == self.upload.upload_offset:
            return self.upload
        if offset < self.upload.upload_length:
            tail_key = _tail_key(self.upload.upload_id, offset)
            await _put_small(self.store, self.bucket, tail_key, bytes(self.buffer))
            await self._record(offset, tail_key)
            return self.upload
        await self._complete()
        return self.upload

    async def _complete(self) -> None:
        app, upload = self.request.app, self.upload
        assembled = False
        try:
            await self._send_part(bytes(self.buffer))
            await self.store.complete_multipart(
                self.bucket, self.key, upload.s3_upload_id, [Part(n, e) for n, e in enumerate(self.etags, start=1)]
            )
            assembled = True
        except S3Error as exc:
            if not is_missing(exc):
                raise
        # Not assembled now: an earlier try completed the multipart upload and failed afterwards; the object decides.
        info = await self.store.stat(self.bucket, self.key)
        if info is None or info.size != upload.upload_length:
            raise Conflict(
                "the stored object does not match Upload-Length",
                {"upload_length": upload.upload_length, "stored": info.size if info else None},
            )
        video = await app[catalog_key].get_video(upload.upload_id)
        if video is None or is_gone(video):
            raise NotFound("video not found")
        if video.status == "uploading":
            try:
                await finish_upload(self.request, video, upload.upload_id, info, upload.content_type)
            except Conflict:
                pass  # a concurrent try finished it first
        await self._record(upload.upload_length, None, completed_at=now_ms())
        with contextlib.suppress(Exception):  # leftovers only; the sweep removes them with the row
            await self.store.remove_prefix(self.bucket, f"tus/{upload.upload_id}/")
        log.info("tus upload %s complete (%d bytes%s)", upload.upload_id, info.size, "" if assembled else ", retried")


# --- ending uploads -----------------------------------------------------------------------------------------


async def discard_upload(app: web.Application, upload: TusUpload, reason: str) -> None:
    """Drop an upload: its multipart upload aborted, its tail removed, its video failed unless it completed."""
    bucket = app[settings_key].storage.uploads_bucket
    store, catalog = app[store_key], app[catalog_key]
    if upload.completed_at is None:
        await store.abort_multipart(bucket, source_key(upload.upload_id), upload.s3_upload_id)
        changed_at = now_ms()
        if await catalog.transition_status(upload.upload_id, "uploading", "failed", reason, changed_at):
            await catalog.set_status(upload.upload_id, "failed", reason, changed_at)
    await store.remove_prefix(bucket, f"tus/{upload.upload_id}/")
    await app[tus_uploads_key].remove(upload.upload_id)
    log.info("tus upload %s discarded: %s", upload.upload_id, reason)


async def expire_uploads(app: web.Application, now: datetime | None = None) -> int:
    """Discard every upload whose Upload-Expires passed (finished ones just lose their row); how many."""
    now = now or datetime.now(UTC)
    expired = [upload for upload in await app[tus_uploads_key].all() if upload.expires_at <= now]
    for upload in expired:
        await discard_upload(app, upload, "upload expired")
    return len(expired)


async def _sweep_forever(app: web.Application) -> None:
    await asyncio.sleep(SWEEP_INTERVAL_S * random.uniform(0.5, 1.0))
    while True:
        try:
            count = await expire_uploads(app)
            if count:
                log.info("%d expired tus uploads discarded", count)
        except Exception:
            log.exception("tus expiry sweep failed; trying again in %.0f s", SWEEP_INTERVAL_S)
        await asyncio.sleep(SWEEP_INTERVAL_S)


async def tus_ctx(app: web.Application) -> AsyncIterator[None]:
    """The upload state store (on the catalogue's Cassandra session) and the expiry sweep; after catalog_ctx."""
    app[tus_uploads_key] = await asyncio.to_thread(TusUploads, app[catalog_key].session)
    sweep = asyncio.create_task(_sweep_forever(app))
    yield
    sweep.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweep


async def add_tus_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare (after the CORS headers): Tus-Resumable on every tus answer, errors included, and the
    tus headers in CORS, so tus clients on other origins read Upload-Offset and Location and may send Upload-*."""
    if not request.path.startswith(TUS_PATH):
        return
    if request.method != hdrs.METH_OPTIONS:
        response.headers["Tus-Resumable"] = TUS_VERSION
    for name, extra in (
        (hdrs.ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED_HEADERS),
        (hdrs.ACCESS_CONTROL_ALLOW_HEADERS, REQUEST_HEADERS),
    ):
        if name in response.headers:
            response.headers[name] = f"{response.headers[name]}, {extra}"
