"""Object storage for the API: the blocking minio client behind awaitable calls on a bounded thread pool.

minio is synchronous, so every S3 call runs on ``ObjectStore``'s own executor (sized by API_STORAGE_THREADS)
and never on the event loop. Bodies move in bounded chunks both ways: a download is iterated chunk by chunk
from the S3 response (``ObjectBody``), and an upload is pulled by ``put_object`` on a worker thread from an
async source (``put_stream``), so no whole object is ever held in memory.

Multipart uploads are driven by the client with presigned part URLs. minio's public API has no call to
create, list or complete a multipart upload for someone else's parts (``put_object`` does all three for its
own data), so this module uses minio's private ``_create_multipart_upload``, ``_list_parts``,
``_complete_multipart_upload`` and ``_abort_multipart_upload``. They are thin wrappers of the S3 API calls of
the same names and have kept their signatures across minio 7.x; minio is pinned in pyproject.toml, and the
multipart integration test (tests/integration/test_api_upload.py) fails if an upgrade changes them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import io
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO, ParamSpec, TypeVar, cast

from minio import Minio
from minio.datatypes import Part
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from urllib3 import BaseHTTPResponse

P = ParamSpec("P")
T = TypeVar("T")

MISSING_CODES = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound", "NoSuchUpload"})
DOWNLOAD_CHUNK = 256 * 1024


def source_key(video_id: str) -> str:
    """Where a video's original lives in the uploads bucket: written by an upload, removed by a delete."""
    return f"sources/{video_id}"


def is_missing(exc: S3Error) -> bool:
    """Whether an S3 error means "no such object/upload" rather than a failure."""
    return exc.code in MISSING_CODES or (exc.response is not None and exc.response.status == 404)


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str  # without quotes
    content_type: str | None
    last_modified: datetime | None


class ObjectChanged(RuntimeError):
    """The object was replaced between the HEAD and the GET (a manifest rewritten): ask again."""


class ObjectBody:
    """An open S3 GET response, read chunk by chunk on the store's threads; always ``close()`` it."""

    def __init__(self, store: ObjectStore, response: BaseHTTPResponse) -> None:
        self._store = store
        self._response = response

    async def chunks(self, size: int = DOWNLOAD_CHUNK) -> AsyncIterator[bytes]:
        stream = self._response.stream(size, decode_content=False)
        while True:
            chunk = await self._store.run(next, stream, b"")
            if not chunk:
                return
            yield chunk

    async def close(self) -> None:
        await self._store.run(_release, self._response)


def _release(response: BaseHTTPResponse) -> None:
    response.close()
    response.release_conn()


class UploadCancelled(Exception):
    """The request feeding a streamed upload went away; minio aborts what it started."""


class _PulledStream(io.RawIOBase):
    """A read-only file for minio's ``put_object`` on a worker thread, pulling bytes from the event loop.

    Each ``read(n)`` asks the async ``pull`` for up to ``n`` bytes and waits for them, so at most one part
    (what minio buffers anyway) plus one pulled chunk is in memory. An exception from ``pull`` surfaces in
    ``put_object``, which then aborts its multipart upload; so does ``cancel()``.
    """

    def __init__(self, pull: Callable[[int], Awaitable[bytes]], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._pull = pull
        self._loop = loop
        self._eof = False
        self._cancelled = threading.Event()
        self._current: concurrent.futures.Future[bytes] | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self._eof:
            return b""
        if self._cancelled.is_set():
            raise UploadCancelled
        wanted = size if size is not None and size > 0 else DOWNLOAD_CHUNK
        self._current = asyncio.run_coroutine_threadsafe(_as_coroutine(self._pull, wanted), self._loop)
        if self._cancelled.is_set():  # cancel() ran between the check above and now
            self._current.cancel()
        try:
            data = self._current.result()
        except concurrent.futures.CancelledError:
            raise UploadCancelled from None
        if not data:
            self._eof = True
        return data

    def cancel(self) -> None:
        """Called on the event loop: make the worker's current and next reads fail."""
        self._cancelled.set()
        if self._current is not None:
            self._current.cancel()


async def _as_coroutine(pull: Callable[[int], Awaitable[bytes]], size: int) -> bytes:
    return await pull(size)


class ObjectStore:
    def __init__(self, client: Minio, threads: int = 32) -> None:
        self.client = client
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3")

    async def run(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    # --- objects ---------------------------------------------------------------------------------

    async def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object's size, etag and type, or None when it does not exist."""
        try:
            stat = await self.run(self.client.stat_object, bucket, key)
        except S3Error as exc:
            if is_missing(exc):
                return None
            raise
        return ObjectInfo(
            size=int(stat.size or 0),
            etag=(stat.etag or "").strip('"'),
            content_type=stat.content_type,
            last_modified=stat.last_modified,
        )

    async def open(self, bucket: str, key: str, info: ObjectInfo, offset: int = 0, length: int = 0) -> ObjectBody:
        """GET the object (or ``length`` bytes from ``offset``), refusing a version other than ``info``'s.

        Raises ``ObjectChanged`` when the object was replaced since ``info`` was taken (the caller retries
        with a fresh stat); a missing object raises S3Error (see ``is_missing``).
        """
        try:
            response = await self.run(
                self.client.get_object,
                bucket,
                key,
                offset=offset,
                length=length,
                request_headers={"If-Match": f'"{info.etag}"'},
            )
        except S3Error as exc:
            if exc.code == "PreconditionFailed" or (exc.response is not None and exc.response.status == 412):
                raise ObjectChanged(key) from exc
            raise
        etag = (response.headers.get("ETag") or "").strip('"')
        if etag and etag != info.etag:  # a server that ignores If-Match
            await self.run(_release, response)
            raise ObjectChanged(key)
        return ObjectBody(self, response)

    async def remove(self, bucket: str, key: str) -> None:
        """Delete an object; a missing one is not an error."""
        try:
            await self.run(self.client.remove_object, bucket, key)
        except S3Error as exc:
            if not is_missing(exc):
                raise

    async def remove_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object under ``prefix`` (a video's packaged media); returns how many there were."""
        if not prefix.endswith("/") or len(prefix) < 2:
            raise ValueError("remove_prefix takes a folder-like prefix ending in '/'")

        def remove_all() -> int:
            names = [o.object_name for o in self.client.list_objects(bucket, prefix=prefix, recursive=True)]
            errors = list(self.client.remove_objects(bucket, (DeleteObject(name) for name in names if name)))
            failed = [e for e in errors if e.code not in MISSING_CODES]
            if failed:
                raise RuntimeError(f"could not remove {len(failed)} objects under {prefix}: {failed[0].message}")
            return len(names)

        return await self.run(remove_all)

    async def put_stream(
        self,
        bucket: str,
        key: str,
        pull: Callable[[int], Awaitable[bytes]],
        content_type: str,
        part_size: int,
    ) -> None:
        """Store what ``pull(n)`` returns until it returns b"", as one object of unknown length.

        ``put_object`` (length=-1) uploads one part of ``part_size`` at a time (a single PUT when the whole
        stream fits in one part) and aborts the multipart upload if ``pull`` raises.
        """
        stream = _PulledStream(pull, asyncio.get_running_loop())
        upload = asyncio.ensure_future(
            self.run(
                self.client.put_object,
                bucket,
                key,
                cast(BinaryIO, stream),  # a RawIOBase with read(): all put_object uses
                length=-1,
                part_size=part_size,
                content_type=content_type,
            )
        )
        try:
            await asyncio.shield(upload)
        except asyncio.CancelledError:
            # The worker thread cannot be cancelled: make it fail fast and wait until minio has aborted,
            # so a caller that removes the object afterwards does not race with a late write.
            stream.cancel()
            await asyncio.wait([upload])
            if not upload.cancelled():
                upload.exception()  # retrieved: it is the expected UploadCancelled
            raise

    # --- presigned and multipart uploads ----------------------------------------------------------

    async def presigned_put(self, bucket: str, key: str, ttl: timedelta) -> str:
        return await self.run(self.client.presigned_put_object, bucket, key, expires=ttl)

    async def create_multipart(self, bucket: str, key: str, content_type: str) -> str:
        """Start an S3 multipart upload for parts the client will PUT; returns its upload id."""
        # Private minio API, see the module docstring.
        return await self.run(self.client._create_multipart_upload, bucket, key, {"Content-Type": content_type})

    async def presigned_part_urls(
        self, bucket: str, key: str, upload_id: str, part_count: int, ttl: timedelta
    ) -> list[str]:
        def sign_all() -> list[str]:
            return [
                self.client.get_presigned_url(
                    "PUT",
                    bucket,
                    key,
                    expires=ttl,
                    extra_query_params={"uploadId": upload_id, "partNumber": str(number)},
                )
                for number in range(1, part_count + 1)
            ]

        return await self.run(sign_all)

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> list[Part] | None:
        """Every part uploaded so far, in order; None when the upload id is unknown (or already completed)."""

        def list_all() -> list[Part]:
            parts: list[Part] = []
            marker: str | None = None
            while True:
                page = self.client._list_parts(bucket, key, upload_id, part_number_marker=marker)
                parts.extend(page.parts)
                if not page.is_truncated or not page.next_part_number_marker:
                    return sorted(parts, key=lambda part: part.part_number)
                marker = page.next_part_number_marker

        try:
            return await self.run(list_all)
        except S3Error as exc:
            if is_missing(exc):
                return None
            raise

    async def complete_multipart(self, bucket: str, key: str, upload_id: str, parts: list[Part]) -> None:
        await self.run(self.client._complete_multipart_upload, bucket, key, upload_id, parts)

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            await self.run(self.client._abort_multipart_upload, bucket, key, upload_id)
        except S3Error as exc:
            if not is_missing(exc):
                raise


def storage_error_detail(exc: Any) -> str:
    """A short description of a storage failure for logs and 503 bodies (never credentials)."""
    if isinstance(exc, S3Error):
        return f"{exc.code}: {exc.message}"
    return type(exc).__name__
