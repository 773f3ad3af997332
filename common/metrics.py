"""Prometheus exposition for every long-running process (prometheus-client).

Each process serves /metrics on its own port (README, "Metrics"): the API on 9400, the control worker
9401, the QoE worker 9402, transcode workers 9403 up. METRICS_PORT overrides it; 0 disables the endpoint
(tests that start many workers).
"""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from common.settings import load_settings

log = logging.getLogger(__name__)
_started: set[int] = set()


def serve_metrics(port: int | None = None, host: str = "127.0.0.1") -> int | None:
    """Start the /metrics endpoint once per process; returns the port, or None when disabled."""
    port = load_settings().metrics_port if port is None else port
    if port == 0:
        return None
    if port not in _started:
        start_http_server(port, addr=host)
        _started.add(port)
        log.info("prometheus metrics on http://%s:%d/metrics", host, port)
    return port
