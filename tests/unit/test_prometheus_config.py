"""The scrape config names the ports the services are started on."""

from __future__ import annotations

import yaml

from common.settings import REPO_ROOT, Settings
from infra.services import platform_services


def test_scrape_targets_cover_every_service_port() -> None:
    config = yaml.safe_load((REPO_ROOT / "infra" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    for service in platform_services(Settings(api_processes=4), transcode_workers=4):
        assert f"127.0.0.1:{service.env['METRICS_PORT']}" in targets, service.name
