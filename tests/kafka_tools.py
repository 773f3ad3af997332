"""Kafka for tests: a scratch telemetry topic, end offsets before, decoded events after."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from common.avro import AvroCodec
from common.kafka import admin_client, consumer
from common.settings import Settings


def with_telemetry_topic(settings: Settings, name: str) -> Iterator[Settings]:
    """``settings`` with a topic prefix of their own (``test-<name>-<id>.``) whose ``playback.telemetry``
    exists while the caller holds them; for a module-scoped fixture to ``yield from``."""
    scoped = dataclasses.replace(settings, topic_prefix=f"test-{name}-{uuid.uuid4().hex[:8]}.")
    topic = scoped.topic("playback.telemetry")
    admin = admin_client(scoped.kafka)
    for future in admin.create_topics([NewTopic(topic, 3, scoped.kafka.default_replication)]).values():
        future.result(timeout=30)
    yield scoped
    for future in admin.delete_topics([topic]).values():
        future.result(timeout=30)


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The current end offset of every partition of ``topic``."""
    probe = consumer(f"test-offsets-{uuid.uuid4().hex[:8]}", settings.kafka)
    try:
        partitions = probe.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        probe.close()


def events_for(
    settings: Settings, topic: str, start: dict[int, int], video_id: str, *, wait_for: int = 1, timeout_s: float = 20
) -> list[dict[str, Any]]:
    """Decoded events of ``video_id`` written to ``topic`` after ``start``.

    Waits until ``wait_for`` of them arrived (or the timeout); with ``wait_for=0`` reads up to the current
    end of every partition and returns what is there, to prove that nothing was published.
    """
    codec = AvroCodec.from_settings(settings.kafka)
    reader = consumer(f"test-api-{uuid.uuid4().hex[:8]}", settings.kafka)
    found: list[dict[str, Any]] = []
    try:
        reader.assign([TopicPartition(topic, p, offset) for p, offset in start.items()])
        stop_at = end_offsets(settings, topic) if wait_for == 0 else None
        deadline = time.monotonic() + timeout_s
        positions = dict(start)
        while time.monotonic() < deadline:
            if stop_at is not None and all(positions[p] >= stop_at[p] for p in stop_at):
                break
            message = reader.poll(0.5)
            if message is None or message.error():
                continue
            positions[message.partition() or 0] = (message.offset() or 0) + 1
            if message.key() == video_id.encode():
                found.append(codec.decode(message.value() or b""))
                if wait_for and len(found) >= wait_for:
                    break
        return found
    finally:
        reader.close()
