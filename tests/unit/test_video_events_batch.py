"""Unit tests of the batch publish path (producers/video_events.py: ``publish_batch``, ``BatchDelivery``).

A fake producer stands in for confluent-kafka: ``produce`` queues the delivery callback, ``poll`` (called by the
publisher's own poll thread, as with librdkafka) reports it, failing the produce calls it was told to fail.

Run: ``.venv/bin/pytest tests/unit/test_video_events_batch.py -q`` (no servers needed).
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from common.avro import AvroCodec, SchemaValidationError
from common.settings import Settings
from producers.video_events import BatchDelivery, BatchPublishError, PublishError, VideoEventPublisher

T = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
TOPIC = "playback.telemetry"


def event(seq: int) -> dict[str, Any]:
    return {
        "session_id": "s1",
        "seq": seq,
        "event_type": "HEARTBEAT",
        "client_ts": T,
        "received_ts": T,
        "source": "SDK",
    }


class FakeProducer:
    """What ``publish_batch`` uses of ``confluent_kafka.Producer``."""

    def __init__(self, fail: set[int] | None = None, refuse_from: int | None = None, full_once: bool = False) -> None:
        self.produced: list[tuple[str, bytes, bytes]] = []
        self.fail = fail or set()  # produce calls (0-based, over the producer's life) whose delivery fails
        self.refuse_from = refuse_from  # produce calls from this one on raise KafkaException
        self.full_once = full_once  # the first produce call raises BufferError (local queue full)
        self._reports: queue.SimpleQueue[tuple[int, Callable[..., None]]] = queue.SimpleQueue()

    def produce(self, topic: str, value: bytes, key: bytes, *, on_delivery: Callable[..., None]) -> None:
        if self.full_once:
            self.full_once = False
            raise BufferError("Local: Queue full")
        if self.refuse_from is not None and len(self.produced) >= self.refuse_from:
            raise KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC))
        self._reports.put((len(self.produced), on_delivery))
        self.produced.append((topic, value, key))

    def poll(self, timeout: float = 0) -> int:
        try:
            index, on_delivery = self._reports.get(timeout=timeout)
        except queue.Empty:
            return 0
        on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT) if index in self.fail else None, None)
        return 1

    def flush(self, timeout: float = 0) -> int:
        while self.poll(0):
            pass
        return 0

    def purge(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
async def publisher_with() -> AsyncIterator[Callable[[FakeProducer], Any]]:
    """Make a started publisher around a fake producer; each is closed after the test."""
    made: list[VideoEventPublisher] = []

    async def make(producer: FakeProducer) -> VideoEventPublisher:
        # The ignore: a fake with only the Producer methods the publisher calls.
        publisher = VideoEventPublisher(Settings(), codec=AvroCodec(), producer=producer)  # type: ignore[arg-type]
        made.append(publisher)
        return await publisher.__aenter__()

    yield make
    for publisher in made:
        await publisher.close()


class LoopCalls:
    """Counts the futures and the cross-thread wake-ups the running loop is asked for."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        loop = asyncio.get_running_loop()
        self.futures = self.wakeups = 0
        create_future, call_soon_threadsafe = loop.create_future, loop.call_soon_threadsafe

        def counting_future() -> asyncio.Future[Any]:
            self.futures += 1
            return create_future()

        def counting_wakeup(callback: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Handle:
            self.wakeups += 1
            return call_soon_threadsafe(callback, *args, **kwargs)

        monkeypatch.setattr(loop, "create_future", counting_future)
        monkeypatch.setattr(loop, "call_soon_threadsafe", counting_wakeup)


async def test_a_delivered_batch_returns_with_one_future_and_one_wakeup(
    publisher_with: Callable[[FakeProducer], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = FakeProducer()
    publisher = await publisher_with(producer)
    events = [event(seq) for seq in range(50)]
    calls = LoopCalls(monkeypatch)
    await publisher.publish_batch(TOPIC, "s1", "PlaybackEvent", events)
    # One future and one call_soon_threadsafe for 50 events: none per event.
    assert (calls.futures, calls.wakeups) == (1, 1)
    assert [(topic, key) for topic, _, key in producer.produced] == [(TOPIC, b"s1")] * 50
    codec = AvroCodec()
    assert [codec.decode(value)["seq"] for _, value, _ in producer.produced] == list(range(50))


async def test_one_failed_delivery_fails_the_batch_naming_it(publisher_with: Callable[[FakeProducer], Any]) -> None:
    publisher = await publisher_with(FakeProducer(fail={3}))
    with pytest.raises(BatchPublishError, match="1 of 5 PlaybackEvent to playback.telemetry not delivered") as raised:
        await publisher.publish_batch(TOPIC, "s1", "PlaybackEvent", [event(seq) for seq in range(5)])
    assert raised.value.failed == [3]
    assert isinstance(raised.value, PublishError)  # the API's error middleware maps it to 503


async def test_a_refused_produce_fails_the_rest_and_waits_for_the_produced(
    publisher_with: Callable[[FakeProducer], Any],
) -> None:
    producer = FakeProducer(fail={0}, refuse_from=2)
    publisher = await publisher_with(producer)
    with pytest.raises(BatchPublishError) as raised:
        await publisher.publish_batch(TOPIC, "s1", "PlaybackEvent", [event(seq) for seq in range(4)])
    assert raised.value.failed == [0, 2, 3]  # 0: its report said so; 2 and 3: never produced
    assert len(producer.produced) == 2


async def test_a_full_local_queue_is_waited_out(publisher_with: Callable[[FakeProducer], Any]) -> None:
    producer = FakeProducer(full_once=True)
    publisher = await publisher_with(producer)
    await publisher.publish_batch(TOPIC, "s1", "PlaybackEvent", [event(1), event(2)])
    assert len(producer.produced) == 2


async def test_a_value_that_does_not_fit_produces_nothing(publisher_with: Callable[[FakeProducer], Any]) -> None:
    producer = FakeProducer()
    publisher = await publisher_with(producer)
    with pytest.raises(SchemaValidationError, match="field 'seq'"):
        await publisher.publish_batch(TOPIC, "s1", "PlaybackEvent", [event(1), {**event(2), "seq": "two"}])
    assert producer.produced == []
    await publisher.publish_batch(TOPIC, "s1", "PlaybackEvent", [])  # nothing to wait for
    assert producer.produced == []


async def test_reports_before_the_last_produce_do_not_settle_the_batch() -> None:
    loop = asyncio.get_running_loop()
    delivery = BatchDelivery(loop, 2)
    delivery.report(0, None)
    delivery.report(1, KafkaError(KafkaError._MSG_TIMED_OUT))
    await asyncio.sleep(0)
    assert not delivery.future.done()  # the producer still holds its count
    delivery.handed_over({})
    await asyncio.wait_for(delivery.future, 1)
    assert list(delivery.failed) == [1] and delivery.unreported() == []
