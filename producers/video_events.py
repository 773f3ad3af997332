"""Publishing the API's video events to Kafka: ``VideoUploaded``, ``VideoStatusChanged`` and ``VideoPrivacyChanged``.

The aiohttp API answers 201/202 only after Kafka has acknowledged the event, so ``publish`` awaits the
delivery report of an idempotent, acks=all producer (``common.kafka.durable_producer``): the report arrives
on a librdkafka callback in the background poll thread and is handed to the waiting coroutine through an
asyncio future. Values are encoded by the one Avro codec (``common.avro``); keys are the video id.

``publish_batch`` is the same promise for many events of one key (a player's telemetry beacon): every event
is produced at once, the delivery callbacks count down on the poll thread (``BatchDelivery``), and the last
one wakes the request through a single future and a single ``call_soon_threadsafe`` — no future, task or
cross-thread wake-up per event, which at thousands of events a second is what the event loop would
otherwise spend its time on.

Use it as an async context manager (the API does, from a ``cleanup_ctx``)::

    async with VideoEventPublisher(settings) as events:
        await events.video_uploaded({...})
        await events.status_changed(video_id, "PROCESSING")
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from common import topics
from common.avro import AvroCodec, RecordEncoder
from common.kafka import durable_producer
from common.lifecycle import VideoStatus
from common.settings import Settings, load_settings

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    """Kafka did not acknowledge an event (broker down, timeout, refused): nothing may be assumed sent."""


class BatchPublishError(PublishError):
    """Some events of a batch were not acknowledged; ``failed`` holds their indices (the others were)."""

    def __init__(self, message: str, failed: list[int]) -> None:
        super().__init__(message)
        self.failed = failed


class BatchDelivery:
    """The delivery reports of one batch, counted down as they arrive; one future settles them all.

    ``report`` runs on whichever thread serves librdkafka's callbacks (the poll thread, or the one flushing
    at shutdown: two may run at once, hence the lock). The producing coroutine holds one count of its own
    until every message is handed to librdkafka (``handed_over``), so reports that arrive while it is still
    producing cannot settle the batch early. The last count down wakes the loop, once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.future: asyncio.Future[None] = loop.create_future()
        self.failed: dict[int, str] = {}  # index -> why it was not delivered
        self._loop = loop
        self._reported = bytearray(size)  # 1 once the report of that index arrived
        self._pending = size + 1  # +1: held by the producer until every message is handed over
        self._lock = threading.Lock()

    def report(self, index: int, error: KafkaError | None, message: Message | None = None) -> None:
        """A delivery report (librdkafka's ``on_delivery``, with the index bound in front)."""
        if error is not None:
            self.failed[index] = str(error)
        self._reported[index] = 1
        self._count_down(1)

    def handed_over(self, not_produced: dict[int, str]) -> None:
        """Called by the producer once it is done: ``not_produced`` never reached librdkafka."""
        self.failed.update(not_produced)
        self._count_down(len(not_produced) + 1)

    def unreported(self) -> list[int]:
        """Indices whose report has not arrived (after a timeout: a callback that never came)."""
        return [index for index, seen in enumerate(self._reported) if not seen]

    def _count_down(self, count: int) -> None:
        with self._lock:
            self._pending -= count
            last = self._pending == 0
        if last:
            self._loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        if not self.future.done():  # the waiting request may have given up (cancelled)
            self.future.set_result(None)


@dataclass(frozen=True)
class Delivered:
    """Where Kafka stored an acknowledged event."""

    topic: str
    partition: int
    offset: int


class VideoEventPublisher:
    """An asyncio-friendly producer of the API's events; one per process, shared by every request."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        codec: AvroCodec | None = None,
        producer: Producer | None = None,
        delivery_timeout_s: float = 30.0,
    ) -> None:
        self.settings = settings or load_settings()
        self.codec = codec or AvroCodec.from_settings(self.settings.kafka)
        # A request should fail within seconds when Kafka is unreachable, not after librdkafka's default of
        # five minutes; idempotence still guarantees no duplicate from the retries within that window.
        self._producer = producer or durable_producer(
            self.settings.kafka, **{"delivery.timeout.ms": int(delivery_timeout_s * 1000)}
        )
        self._timeout_s = delivery_timeout_s
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._encoders: dict[tuple[str, str], RecordEncoder] = {}

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread that serves delivery callbacks (``Producer.poll``)."""
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll_forever, name="video-events-poll", daemon=True)
            self._poller.start()

    def _poll_forever(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (bounded by ``timeout_s``), then stop the poll thread."""
        remaining = await asyncio.to_thread(self._producer.flush, timeout_s)
        if remaining:
            log.warning("%d event(s) were not delivered before shutdown", remaining)
        self._stop.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join)
            self._poller = None
        if remaining:
            # Already answered as failed (503): drop them so close() does not wait on a broker that is gone.
            self._producer.purge()
        # Without close() librdkafka keeps reconnecting for as long as the object lives.
        await asyncio.to_thread(self._producer.close)

    async def __aenter__(self) -> VideoEventPublisher:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- publishing --------------------------------------------------------------------------------

    async def publish(
        self, topic: str, key: str, record_name: str, value: Mapping[str, Any], *, partition: int | None = None
    ) -> Delivered:
        """Encode ``value`` as ``record_name`` and produce it; return once Kafka acknowledged it.

        ``partition`` overrides the key's partition (a topic keyed finer than it is ordered, e.g. ratings).

        Raises ``SchemaValidationError`` (a ValueError) for a value that does not fit its schema, and
        ``PublishError`` when Kafka does not acknowledge it.
        """
        if self._poller is None:
            raise RuntimeError("VideoEventPublisher.start() was not called")
        if self.codec.registry is not None:  # the first use of a schema calls the registry (blocking)
            payload = await asyncio.to_thread(self.codec.encode, record_name, value, topic=topic)
        else:
            payload = self.codec.encode(record_name, value, topic=topic)
        loop = asyncio.get_running_loop()
        delivered: asyncio.Future[Delivered] = loop.create_future()

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            # Runs on the poll thread: hand the outcome to the event loop.
            def settle() -> None:
                if delivered.done():  # the waiting request gave up (cancelled)
                    return
                if error is not None:
                    delivered.set_exception(PublishError(f"{record_name} to {topic} not delivered: {error}"))
                else:
                    delivered.set_result(Delivered(topic, message.partition() or 0, message.offset() or 0))

            loop.call_soon_threadsafe(settle)

        while True:
            try:
                self._producer.produce(
                    topic,
                    key=key.encode(),
                    value=payload,
                    on_delivery=on_delivery,
                    partition=-1 if partition is None else partition,  # -1: the partitioner's choice
                )
                break
            except BufferError:
                # The local queue is full: let the poll thread drain it, never block the event loop.
                await asyncio.sleep(0.05)
            except KafkaException as exc:
                raise PublishError(f"{record_name} to {topic} refused: {exc}") from exc
        try:
            # librdkafka times out first (delivery.timeout.ms); this only guards against a lost callback.
            return await asyncio.wait_for(delivered, self._timeout_s + 5)
        except TimeoutError as exc:
            raise PublishError(f"{record_name} to {topic}: no delivery report in time") from exc

    async def publish_batch(self, topic: str, key: str, record_name: str, values: Sequence[Mapping[str, Any]]) -> None:
        """Encode ``values`` as ``record_name``, produce them all under ``key``; return once Kafka acknowledged
        every one of them.

        Raises ``SchemaValidationError`` (a ValueError) before anything is produced when a value does not fit
        its schema, and ``BatchPublishError`` naming the indices of the values Kafka did not acknowledge
        (the others were: the idempotent producer keeps their order within the key's partition).
        """
        if self._poller is None:
            raise RuntimeError("VideoEventPublisher.start() was not called")
        encoder = self._encoders.get((record_name, topic))
        if encoder is None:
            # With a registry the first use registers the schema over HTTP: on a thread, once.
            make = functools.partial(self.codec.encoder, record_name, topic=topic)
            encoder = await asyncio.to_thread(make) if self.codec.registry is not None else make()
            self._encoders[(record_name, topic)] = encoder
        payloads = [encoder(value) for value in values]  # all or nothing: a bad value produces none
        if not payloads:
            return
        delivery = BatchDelivery(asyncio.get_running_loop(), len(payloads))
        key_bytes = key.encode()
        not_produced: dict[int, str] = {}
        produce = self._producer.produce
        report = delivery.report
        index = 0
        try:
            while index < len(payloads):
                try:
                    produce(topic, payloads[index], key_bytes, on_delivery=functools.partial(report, index))
                    index += 1
                except BufferError:
                    # The local queue is full: let the poll thread drain it, never block the event loop.
                    await asyncio.sleep(0.05)
        except KafkaException as exc:
            # Refused up front (unknown topic, closed producer): what was produced before still reports.
            not_produced = dict.fromkeys(range(index, len(payloads)), f"refused: {exc}")
        delivery.handed_over(not_produced)
        try:
            # librdkafka times out first (delivery.timeout.ms); this only guards against a lost callback.
            # asyncio.timeout, not wait_for: no second future and wrapper per batch.
            async with asyncio.timeout(self._timeout_s + 5):
                await delivery.future
        except TimeoutError:
            delivery.failed.update(dict.fromkeys(delivery.unreported(), "no delivery report in time"))
        failed = dict(delivery.failed)  # one copy: after a timeout a late report may still add to it
        if failed:
            indices = sorted(failed)
            raise BatchPublishError(
                f"{len(indices)} of {len(payloads)} {record_name} to {topic} not delivered: {failed[indices[0]]}",
                indices,
            )

    async def video_uploaded(self, event: Mapping[str, Any]) -> Delivered:
        """A ``VideoUploaded`` on ``video.uploaded``, keyed by its video id."""
        return await self.publish(
            self.settings.topic(topics.VIDEO_UPLOADED), str(event["video_id"]), "VideoUploaded", event
        )

    async def status_changed(
        self,
        video_id: str,
        status: VideoStatus,
        reason: str | None = None,
        changed_at: datetime | None = None,
        progress: float | None = None,
    ) -> Delivered:
        """A ``VideoStatusChanged`` on ``video.lifecycle``, keyed by the video id."""
        value = {
            "video_id": video_id,
            "status": status,
            "reason": reason,
            "changed_at": changed_at or datetime.now(UTC),
            "progress": progress,
        }
        return await self.publish(self.settings.topic(topics.VIDEO_LIFECYCLE), video_id, "VideoStatusChanged", value)

    async def privacy_changed(
        self,
        video_id: str,
        privacy: str,
        previous_privacy: str | None,
        changed_at: datetime | None = None,
        changed_by: str | None = None,
    ) -> Delivered:
        """A ``VideoPrivacyChanged`` on ``video.lifecycle``, keyed by the video id (privacy as the API spells it)."""
        value = {
            "video_id": video_id,
            "privacy": privacy.upper(),
            "previous_privacy": previous_privacy.upper() if previous_privacy else None,
            "changed_at": changed_at or datetime.now(UTC),
            "changed_by": changed_by,
        }
        return await self.publish(self.settings.topic(topics.VIDEO_LIFECYCLE), video_id, "VideoPrivacyChanged", value)
