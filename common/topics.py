"""Every Kafka topic of the platform: its name, and its spec as topics.yaml declares it.

topics.yaml is the source (partitions, replication, configs, keys, values); this is where code finds it. The
names below are the only place Python spells a topic name: the Faust app makes its topic objects from them
(`processors.app.raw_topic`), producers publish to them, and `partitions(name)` is the one way to learn how many
partitions a topic has. `python -m infra.topics` reconciles the cluster with `load_specs`.

Names are unprefixed; ``Settings.topic(name)`` gives the deployment's name (with its ``TOPIC_PREFIX``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from common.settings import REPO_ROOT, Settings

TOPICS_FILE = REPO_ROOT / "topics.yaml"

VIDEO_UPLOADED: Final = "video.uploaded"
TRANSCODE_REQUESTED: Final = "video.transcode-requested"
SEGMENT_READY: Final = "video.segment-ready"
VIDEO_LIFECYCLE: Final = "video.lifecycle"
PLAYBACK_TELEMETRY: Final = "playback.telemetry"
QOE_CHECKPOINTS: Final = "qoe.session-checkpoints"
ENGAGEMENT_COMMENTS: Final = "engagement.comments"
ENGAGEMENT_RATINGS: Final = "engagement.ratings"
ENGAGEMENT_VIEWS: Final = "engagement.views"
# The recommendation agents' repartition topics (processors/recommend.py).
VIEWS_BY_VIEWER: Final = "recommend.views-by-viewer"
CO_WATCHES: Final = "recommend.co-watches"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]
    key: str
    value_schema: str


def _document(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def load_specs(settings: Settings, path: Path = TOPICS_FILE) -> list[TopicSpec]:
    """Every topic of topics.yaml as this deployment wants it (prefixed name, replication, full config)."""
    document = _document(path)
    defaults = document.get("defaults", {})
    specs = []
    for entry in document["topics"]:
        replication = entry.get("replication_factor", defaults.get("replication_factor", "default"))
        rf = settings.kafka.default_replication if replication == "default" else int(replication)
        config = {key: str(value) for key, value in defaults.get("config", {}).items()}
        config.update({key: str(value) for key, value in entry.get("config", {}).items()})
        # With RF=3 a write needs two replicas; a single local broker can only ask for one.
        config.setdefault("min.insync.replicas", str(max(1, rf - 1)))
        specs.append(
            TopicSpec(
                name=settings.topic(entry["name"]),
                partitions=int(entry["partitions"]),
                replication_factor=rf,
                config=config,
                key=str(entry["key"]),
                value_schema=str(entry["value_schema"]),
            )
        )
    names = [spec.name for spec in specs]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise ValueError(f"topics.yaml names these topics twice: {sorted(duplicates)}")
    return specs


@functools.cache
def _partition_counts() -> dict[str, int]:
    return {str(entry["name"]): int(entry["partitions"]) for entry in _document(TOPICS_FILE)["topics"]}


def partitions(name: str) -> int:
    """The partition count topics.yaml gives the topic ``name`` (unprefixed): what the reconciler applies to the
    cluster, so producers that pick a partition themselves and co-partitioned tables agree on it."""
    return _partition_counts()[name]
