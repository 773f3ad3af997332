"""Domain errors of the API and the one place they become HTTP errors.

Handlers raise the exceptions below (or let ``PublishError``/storage/Cassandra failures escape); the
``error_middleware`` turns each into a JSON body ``{"error": "...", "detail": ...}`` with its status. aiohttp's
own HTTP exceptions (unknown route, wrong method) get the same JSON shape.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from cassandra import DriverException
from cassandra.cluster import NoHostAvailable
from minio.error import S3Error
from urllib3.exceptions import HTTPError as Urllib3Error

from api.keys import response_started_key
from api.storage import storage_error_detail
from producers.video_events import PublishError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Base of the domain errors: ``status`` and a short ``error`` text, plus an optional ``detail``."""

    status = 500
    error = "internal error"

    def __init__(self, error: str | None = None, detail: Any = None, headers: dict[str, str] | None = None):
        super().__init__(error or self.error)
        if error:
            self.error = error
        self.detail = detail
        self.headers = headers or {}


class InvalidRequest(ApiError):
    """The request is malformed or breaks a rule on its fields (detail: field -> problem)."""

    status = 400
    error = "invalid request"


class Unauthorized(ApiError):
    """No credentials, or credentials that do not check out (bad signature, expired, wrong audience)."""

    status = 401
    error = "unauthorized"

    def __init__(self, error: str | None = None, detail: Any = None):
        # RFC 6750: a 401 for a bearer-token resource names the scheme.
        super().__init__(error, detail, headers={"WWW-Authenticate": 'Bearer realm="vidplat"'})


class Forbidden(ApiError):
    """Authenticated, but not allowed to do this (a missing role, another user's object)."""

    status = 403
    error = "forbidden"


class NotFound(ApiError):
    status = 404
    error = "not found"


class PreconditionFailed(ApiError):
    """A Tus-Resumable version the server does not speak (tus: 412 with Tus-Version)."""

    status = 412
    error = "unsupported tus version"


class Gone(ApiError):
    """An object that existed and no longer can be used (an expired tus upload)."""

    status = 410
    error = "upload expired"


class Conflict(ApiError):
    """The video is not in a state that allows this (e.g. completing twice)."""

    status = 409
    error = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    error = "payload too large"


class UnsupportedMediaType(ApiError):
    status = 415
    error = "unsupported media type"


class RangeNotSatisfiable(ApiError):
    status = 416
    error = "range not satisfiable"

    def __init__(self, size: int):
        super().__init__(detail={"size": size}, headers={"Content-Range": f"bytes */{size}"})


class TooManyRequests(ApiError):
    """Too many tries lately (logins, sign-ups, a session's beacons): wait ``retry_after_s`` seconds."""

    status = 429
    error = "too many requests"

    def __init__(self, retry_after_s: float, error: str | None = None):
        # Retry-After takes whole seconds: rounded up, so a client that obeys it is never early.
        super().__init__(
            error,
            {"retry_after_s": round(retry_after_s, 1)},
            headers={"Retry-After": str(math.ceil(retry_after_s))},
        )


class Unavailable(ApiError):
    """A backing service (Kafka, Cassandra, S3) failed; the client may retry."""

    status = 503
    error = "service unavailable"


def error_response(status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status, headers=headers)


def _to_response(exc: BaseException) -> web.Response:
    if isinstance(exc, ApiError):
        response = error_response(exc.status, exc.error, exc.detail, exc.headers)
        if isinstance(exc, PayloadTooLarge):
            # The rest of an oversized body is not worth reading: close the connection after answering.
            response.force_close()
        return response
    if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
        # aiohttp's parsers (a multipart part's headers, say) refusing what the client sent: the client's error.
        return error_response(exc.code, "malformed request", exc.message or None)
    if isinstance(exc, PublishError):
        log.error("event not acknowledged by Kafka: %s", exc)
        return error_response(503, "event bus unavailable", "the event was not acknowledged; retry")
    if isinstance(exc, S3Error | Urllib3Error):
        log.error("object storage failed: %s", storage_error_detail(exc))
        return error_response(503, "object storage unavailable", storage_error_detail(exc))
    if isinstance(exc, DriverException | NoHostAvailable):
        log.error("Cassandra failed: %r", exc)
        return error_response(503, "catalog unavailable", type(exc).__name__)
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal error")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects and 304 pass through untouched
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        default_text = exc.text is None or exc.text.startswith(f"{exc.status}: ")
        return error_response(exc.status, exc.reason.lower(), None if default_text else exc.text, headers)
    except Exception as exc:
        if request.get(response_started_key):
            # Headers are already on the wire (a streamed body failed midway): nothing to answer.
            raise
        return _to_response(exc)
