"""Cross-cutting request handling: Prometheus request metrics and CORS.

Metrics are labelled by route template (``/api/v1/videos/{video_id}``), never by raw path, so the number of
series stays bounded. CORS headers are added in ``on_response_prepare`` because playback responses are
streamed: their headers leave before the handler returns.
"""

from __future__ import annotations

import time

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Histogram

from api.keys import config_key

REQUESTS = Counter("api_requests_total", "HTTP requests answered by the API", ["method", "route", "status"])
LATENCY = Histogram(
    "api_request_duration_seconds",
    "Time to answer an HTTP request, body included (streamed bodies until the last byte)",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

# What a player may read from a cross-origin response, beyond the CORS-safelisted headers.
EXPOSED_HEADERS = "Content-Range, Content-Length, ETag, Accept-Ranges"
# CMCD-*: players in CMCD header mode (hls.js useHeaders, dash.js mode "header") send them on media requests.
ALLOWED_REQUEST_HEADERS = (
    "Authorization, Range, If-None-Match, If-Range, Content-Type, traceparent, X-Request-Id, "
    "CMCD-Object, CMCD-Request, CMCD-Session, CMCD-Status"
)
PREFLIGHT_MAX_AGE_S = "86400"


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = _route_of(request)
        REQUESTS.labels(request.method, route, str(status)).inc()
        LATENCY.labels(request.method, route).observe(time.perf_counter() - started)


def allowed_origin(request: web.Request) -> str | None:
    """The Access-Control-Allow-Origin value for this request, or None when its origin is not allowed."""
    origins = request.app[config_key].cors_origins
    if "*" in origins:
        return "*"
    origin = request.headers.get(hdrs.ORIGIN)
    return origin if origin and origin in origins else None


@web.middleware
async def cors_preflight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer CORS preflights (OPTIONS with Access-Control-Request-Method) for any existing route."""
    routing_error = request.match_info.http_exception
    if (
        request.method == hdrs.METH_OPTIONS
        and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
        and (routing_error is None or isinstance(routing_error, web.HTTPMethodNotAllowed))
    ):
        headers = {
            hdrs.ACCESS_CONTROL_ALLOW_METHODS: "GET, HEAD, POST, PATCH, DELETE, OPTIONS",
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_REQUEST_HEADERS,
            hdrs.ACCESS_CONTROL_MAX_AGE: PREFLIGHT_MAX_AGE_S,
        }
        return web.Response(status=204, headers=headers)
    return await handler(request)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: CORS headers on every response, streamed or not, errors included."""
    origin = allowed_origin(request)
    if origin is None:
        return
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
    response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSED_HEADERS
    if origin != "*":
        response.headers.add(hdrs.VARY, hdrs.ORIGIN)
