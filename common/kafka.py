"""confluent-kafka clients from KafkaSettings: the durable producer, consumers and the admin client."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from common.settings import KafkaSettings, load_settings


def durable_producer(settings: KafkaSettings | None = None, **overrides: Any) -> Producer:
    """An idempotent producer that waits for all in-sync replicas: no loss, no duplicates on retry."""
    settings = settings or load_settings().kafka
    config: dict[str, Any] = {
        **settings.client_config(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "zstd",
    }
    config.update(overrides)
    return Producer(config)


def consumer(group_id: str, settings: KafkaSettings | None = None, **overrides: Any) -> Consumer:
    settings = settings or load_settings().kafka
    config: dict[str, Any] = {
        **settings.client_config(),
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    config.update(overrides)
    return Consumer(config)


def admin_client(settings: KafkaSettings | None = None) -> AdminClient:
    settings = settings or load_settings().kafka
    config: dict[str, Any] = {**settings.client_config()}
    return AdminClient(config)
