"""The one Faust app of the platform.

    PROCESSOR_ROLE=control   faust -A processors.app worker   # probe/plan, manifests, CDN purge, engagement
    PROCESSOR_ROLE=transcode faust -A processors.app worker   # chunk encoders: run as many as you have cores
    PROCESSOR_ROLE=qoe       faust -A processors.app worker   # playback telemetry → QoE metrics

A role is a consumer group (the app id carries it), so transcode workers on many machines share
`video.transcode-requested` while one control group owns the other stages. Agents are found by
autodiscover from an explicit list per role. Topics are created by `python -m infra.topics` from
topics.yaml; Faust only declares its own internal topics.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import faust
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from prometheus_client import REGISTRY

from common.metrics import serve_metrics
from common.settings import Settings, load_settings, state_dir

ROLE_MODULES: dict[str, list[str]] = {
    "control": [
        "processors.probe",
        "processors.package",
        "processors.cdn_purge",
        "processors.engagement",
        "processors.recommend",
    ],
    "transcode": ["processors.transcode"],
    "qoe": ["processors.telemetry"],
}


def current_role() -> str:
    role = os.environ.get("PROCESSOR_ROLE", "control")
    if role not in ROLE_MODULES:
        raise ValueError(f"PROCESSOR_ROLE must be one of {sorted(ROLE_MODULES)}, got {role!r}")
    return role


def broker_options(settings: Settings) -> dict[str, Any]:
    kafka = settings.kafka
    options: dict[str, Any] = {
        "broker": ";".join(f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",")),
    }
    if kafka.sasl_mechanism:
        ssl_context = None
        if kafka.security_protocol.upper() == "SASL_SSL":
            import ssl

            ssl_context = ssl.create_default_context(cafile=kafka.ssl_ca_location or None)
        options["broker_credentials"] = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context,
        )
    return options


def create_app(settings: Settings | None = None, role: str | None = None) -> faust.App:
    settings = settings or load_settings()
    role = role or current_role()
    return faust.App(
        f"{settings.topic_prefix}vidplat-{role}",
        **broker_options(settings),
        autodiscover=ROLE_MODULES[role],
        store=os.environ.get("FAUST_STORE", "rocksdb://"),
        datadir=os.environ.get("FAUST_DATADIR", str(state_dir() / f"faust-{role}")),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        # A transcode message is a few seconds of work; leave ample room before the group evicts us.
        broker_max_poll_interval=600.0,
        # How long a dead worker keeps its partitions before the group moves them (and its work) elsewhere.
        broker_session_timeout=float(os.environ.get("FAUST_SESSION_TIMEOUT_S", "30")),
        broker_heartbeat_interval=3.0,
        producer_acks=-1,
        stream_wait_empty=False,
    )


def attach_prometheus(app: faust.App) -> None:
    """Faust's own sensors (messages in/out, event latency, commits, rebalances) in the default registry,
    served with every other metric of this process by common.metrics on METRICS_PORT."""
    app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(REGISTRY, "faust"))

    @app.task
    async def expose_metrics() -> None:
        serve_metrics()


settings = load_settings()
role = current_role()
app = create_app(settings, role)
attach_prometheus(app)


def topic_name(name: str) -> str:
    return settings.topic(name)


@functools.cache
def raw_topic(name: str) -> faust.TopicT:
    """The app's handle on the topics.yaml topic ``name`` (a common.topics name), made once per process and
    shared by every module that sends to it or consumes it. Keys and values stay bytes: common.avro encodes them."""
    return app.topic(topic_name(name), key_serializer="raw", value_serializer="raw")
