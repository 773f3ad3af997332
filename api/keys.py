"""The application's state keys (``web.AppKey``), in one place so handlers and setup agree on types."""

from __future__ import annotations

from aiohttp import web

from api.config import ApiConfig
from api.state import CollectorState, SessionLimits
from api.storage import ObjectStore
from api.tokens import AuthService, Principal
from common.settings import Settings
from producers.video_events import VideoEventPublisher
from sinks.accounts import Accounts
from sinks.catalog import Catalog
from sinks.discovery import Discovery
from sinks.engagement import EngagementStore
from sinks.qoe import QoeStore
from sinks.tus_uploads import TusUploads

settings_key = web.AppKey("settings", Settings)
config_key = web.AppKey("config", ApiConfig)
events_key = web.AppKey("events", VideoEventPublisher)
catalog_key = web.AppKey("catalog", Catalog)
discovery_key = web.AppKey("discovery", Discovery)
qoe_store_key = web.AppKey("qoe_store", QoeStore)
engagement_store_key = web.AppKey("engagement_store", EngagementStore)
store_key = web.AppKey("store", ObjectStore)
auth_key = web.AppKey("auth", AuthService)
accounts_key = web.AppKey("accounts", Accounts)
# The state rows of tus resumable uploads (api/tus.py).
tus_uploads_key = web.AppKey("tus_uploads", TusUploads)
# Per-process state of the collectors (api/state.py) and the served OpenAPI document (api/openapi.py).
limits_key = web.AppKey("telemetry_limits", SessionLimits)
collector_key = web.AppKey("cmcd_collector", CollectorState)
openapi_body_key = web.AppKey("openapi_body", bytes)

# Set once a streamed response has sent its headers: an error after that cannot become an error response.
response_started_key = web.RequestKey("response_started", bool)
# The caller of a request, once its access token was checked (api/access.py caches it here).
principal_key = web.RequestKey("principal", Principal)
