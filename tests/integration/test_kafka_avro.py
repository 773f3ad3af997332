"""Avro through the real Kafka: confluent-kafka both ways, and through a Faust agent in a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import NewTopic

from common.avro import AvroCodec
from common.kafka import admin_client, consumer, durable_producer
from common.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration

CODEC = AvroCodec()


def upload_event(video_id: str) -> dict[str, object]:
    return {
        "video_id": video_id,
        "owner_id": "creator-1",
        "source_bucket": "uploads",
        "source_key": f"sources/{video_id}",
        "size_bytes": 5_300_000,
        "content_type": "video/mp4",
        "original_filename": "bigbuckbunny.mp4",
        "title": "Big Buck Bunny",
        "thumbnail_time_s": 2.5,
        "uploaded_at": datetime(2026, 11, 24, 12, 0, 0, 123000, tzinfo=UTC),
        "trace_id": None,
    }


def create_topics(settings: Settings, *names: str) -> None:
    admin = admin_client(settings.kafka)  # kept alive until the futures resolve
    for future in admin.create_topics([NewTopic(n, 3, 1) for n in names]).values():
        future.result(30)


def produce(settings: Settings, topic: str, key: str, value: bytes) -> None:
    producer = durable_producer(settings.kafka)
    errors: list[KafkaError] = []
    producer.produce(topic, key=key.encode(), value=value, on_delivery=lambda err, msg: err and errors.append(err))
    assert producer.flush(30) == 0
    assert errors == []


def consume(settings: Settings, topic: str, count: int, timeout_s: float = 60) -> list[tuple[bytes, bytes]]:
    reader: Consumer = consumer(f"test-{topic}", settings.kafka)
    reader.subscribe([topic])
    got: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < count and time.monotonic() < deadline:
            message = reader.poll(1.0)
            if message is None or message.error():
                continue
            got.append((message.key(), message.value()))
    finally:
        reader.close()
    return got


def test_confluent_round_trip(live_servers: Settings, unique: str) -> None:
    topic = f"test-{unique}.video.uploaded"
    create_topics(live_servers, topic)
    produce(live_servers, topic, f"v-{unique}", CODEC.encode("VideoUploaded", upload_event(f"v-{unique}")))
    [(key, value)] = consume(live_servers, topic, 1)
    assert key == f"v-{unique}".encode()
    assert value[:2] == b"\xc3\x01"  # single-object encoding: self-describing
    assert CODEC.decode(value) == upload_event(f"v-{unique}")


@pytest.fixture
def echo_worker(live_servers: Settings, unique: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    names = {
        "ECHO_IN": f"test-{unique}.in",
        "ECHO_OUT": f"test-{unique}.out",
        "ECHO_GROUP": f"test-{unique}-echo",
    }
    create_topics(live_servers, names["ECHO_IN"], names["ECHO_OUT"], names["ECHO_IN"] + ".dlq")
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faust",
            "-A",
            "tests.integration.faust_echo_app",
            "worker",
            "--without-web",
            "-l",
            "info",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, **names},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield names
    worker.terminate()
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
    log.close()


def test_faust_agent_reads_and_writes_the_same_avro(
    live_servers: Settings, unique: str, echo_worker: dict[str, str]
) -> None:
    produce(live_servers, echo_worker["ECHO_IN"], f"v-{unique}", b"not avro at all")
    produce(
        live_servers,
        echo_worker["ECHO_IN"],
        f"v-{unique}",
        CODEC.encode("VideoUploaded", upload_event(f"v-{unique}")),
    )

    [(key, value)] = consume(live_servers, echo_worker["ECHO_OUT"], 1, timeout_s=120)
    assert key == f"v-{unique}".encode()
    assert CODEC.decode(value) == {
        "video_id": f"v-{unique}",
        "status": "PROCESSING",
        "reason": "seen bigbuckbunny.mp4",
        "changed_at": datetime(2026, 11, 24, 12, 0, 0, 123000, tzinfo=UTC),
        "progress": 0.0,
    }

    # The poison message went to the DLQ with its error; the good one behind it still flowed.
    [(dlq_key, dlq_value)] = consume(live_servers, echo_worker["ECHO_IN"] + ".dlq", 1)
    dead = CODEC.decode(dlq_value)
    assert dlq_key == f"v-{unique}".encode()
    assert dead["payload"] == b"not avro at all"
    assert dead["original_topic"] == echo_worker["ECHO_IN"]
    assert dead["error_type"] == "UndecodableMessage"
    assert dead["agent"] == "answer_uploads"
