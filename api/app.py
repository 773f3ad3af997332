"""The aiohttp application: uploads, video metadata and playback (DESIGN.md, "The VOD path"), accounts,
engagement, discovery, the telemetry collectors and the QoE reads.

``init_app(settings)`` builds it: the middlewares, the per-process state (api/state.py, the OpenAPI document) and
every route (api/routes.py). Its resources (the Kafka event publisher; the Cassandra session with the Catalog, the
QoeStore, the EngagementStore, the accounts and the Discovery reads; the S3 client) are ``cleanup_ctx``
generators, opened on startup and closed on shutdown.

Run it with ``python -m api``: it listens on API_HOST:API_PORT (127.0.0.1:8080) and serves
Prometheus metrics on METRICS_PORT (9400). With API_PROCESSES above 1 it binds the port with SO_REUSEPORT, so
the processes ``infra/services.py`` starts share it (each with its own METRICS_PORT). No access log unless
API_ACCESS_LOG=1: one INFO line per request is a cost the collector's beacons should not pay.
Tests use ``aiohttp_client(await init_app(settings))``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.log import access_logger

from api.auth import auth_ctx
from api.cmcd import drain_harvest_ctx, harvest_cmcd
from api.config import ApiConfig
from api.discovery import discovery_ctx
from api.errors import error_middleware
from api.keys import (
    catalog_key,
    collector_key,
    config_key,
    engagement_store_key,
    events_key,
    limits_key,
    openapi_body_key,
    qoe_store_key,
    settings_key,
    store_key,
)
from api.middlewares import add_cors_headers, cors_preflight_middleware, metrics_middleware
from api.openapi import document_body
from api.routes import setup_routes
from api.state import CollectorState, SessionLimits
from api.storage import ObjectStore
from common.cassandra import cassandra_session
from common.metrics import serve_metrics
from common.settings import Settings, load_settings
from common.storage import storage_client
from producers.video_events import VideoEventPublisher
from sinks.catalog import Catalog
from sinks.engagement import EngagementStore
from sinks.qoe import QoeStore

log = logging.getLogger(__name__)


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    store = ObjectStore(storage_client(app[settings_key].storage), threads=app[config_key].storage_threads)
    app[store_key] = store
    yield
    await asyncio.to_thread(store.close)


async def catalog_ctx(app: web.Application) -> AsyncIterator[None]:
    # Connecting and preparing statements block: done on a thread, once.
    session = await asyncio.to_thread(cassandra_session, app[settings_key].cassandra)
    try:
        app[catalog_key] = await asyncio.to_thread(Catalog, session)
        app[qoe_store_key] = await asyncio.to_thread(QoeStore, session)
        app[engagement_store_key] = await asyncio.to_thread(EngagementStore, session)
        yield
    finally:
        await asyncio.to_thread(session.cluster.shutdown)


async def events_ctx(app: web.Application) -> AsyncIterator[None]:
    timeout_s = app[config_key].kafka_delivery_timeout_s
    async with VideoEventPublisher(app[settings_key], delivery_timeout_s=timeout_s) as events:
        app[events_key] = events
        yield


async def init_app(settings: Settings | None = None, config: ApiConfig | None = None) -> web.Application:
    app = web.Application(middlewares=[metrics_middleware, cors_preflight_middleware, error_middleware, harvest_cmcd])
    app[settings_key] = settings or load_settings()
    app[config_key] = config or ApiConfig()
    app[limits_key] = SessionLimits()
    app[collector_key] = CollectorState()
    app[openapi_body_key] = document_body()  # read now: a broken document fails the start, not a request
    app.cleanup_ctx.extend([storage_ctx, catalog_ctx, events_ctx, drain_harvest_ctx])
    # After catalog_ctx: the accounts store and the Discovery reads share its Cassandra session.
    app.cleanup_ctx.extend([auth_ctx, discovery_ctx])
    app.on_response_prepare.append(add_cors_headers)
    setup_routes(app)
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    config = ApiConfig()
    serve_metrics(settings.metrics_port)
    web.run_app(
        init_app(settings, config),
        host=settings.api_host,
        port=settings.api_port,
        # Several processes share the port (API_PROCESSES, started by infra/services.py); a lone process keeps
        # the plain bind, so a port already in use is still an error instead of a silent share.
        reuse_port=settings.api_processes > 1,
        access_log=access_logger if config.access_log else None,
    )
