"""`GET /api/v1/health`: 200 when the API's Cassandra session answers, 503 otherwise (load balancers and
`infra/services.py` wait on it). Kafka and S3 are checked per request where they are used."""

from __future__ import annotations

from aiohttp import web

from api.keys import catalog_key
from common.cassandra import run


async def health(request: web.Request) -> web.Response:
    try:
        await run(request.app[catalog_key].session, "SELECT release_version FROM system.local")
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
        return web.json_response({"status": "unavailable", "detail": type(exc).__name__}, status=503)
    return web.json_response({"status": "ok"})
