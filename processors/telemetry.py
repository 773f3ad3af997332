"""Stage: playback.telemetry → per-partition QoE aggregation → Cassandra (views, window partials and rows,
watch progress), in micro-batches.

    PROCESSOR_ROLE=qoe faust -A processors.app worker

Task `aggregate_qoe` takes events in batches (a confluent-kafka consumer; see its docstring for why not a Faust
stream) and applies each to its partition's `PartitionAggregate` (common/qoe/partition.py: session states, this
partition's partial of every window, the views closed, the resume positions) in memory: no database round trip
per event. The task `flush_qoe` writes what changed every QOE_FLUSH_EVERY_S (default 0.5 s), all partitions
together, with concurrent async writes coalesced per key:

1. the windows changed since the last flush get their stored partial added in if this worker has not read it
   yet (a window it has not seen since it took the partition up);
2. a manifest ("c:flush": the windows about to be written, the quiet closes made) goes to the checkpoint topic
   (qoe.session-checkpoints, co-partitioned with playback.telemetry) and is acknowledged;
3. Cassandra: each changed window's partial for this partition (absolute, tagged with the offset it includes),
   the closed views, the newest resume positions; then each changed window's row, the sum of its partials over
   all partitions (sinks/qoe.py);
4. the changed session states and "c:checkpoint" (the offset they include) go to the checkpoint topic;
5. only then are the consumer offsets committed, so they never run ahead of durable state.

A restart or rebalance restores a partition from its checkpoint records before its first event, and reloads the
windows the manifest names; the offsets in the records make a replay write exactly the rows of a run without the
crash (common/qoe/partition.py explains how). While Cassandra or Kafka is away, a flush waits it out
(processors/retry.py); the consumer keeps applying until MAX_UNACKED events wait for a flush, then pauses its
partitions and keeps polling, so the group does not evict the worker, and resumes when the flush went through.
Nothing is lost or counted twice.

Views close on END, a fatal error, the next view, or 30 s of inactivity by the collector's clock; a partition
that goes quiet (no event for QUIET_AFTER_S, caught up with its end offset) has its expired sessions closed by
`close_quiet_sessions`. A window row is written with `final` once it is FINAL_AFTER_S past its end (wall clock);
inputs arriving later are counted in `qoe_late_inputs_total` and still update it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from types import SimpleNamespace
from typing import Any, cast

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from faust.types import EventT
from prometheus_client import Counter, Gauge, Histogram

from common import topics
from common.avro import default_codec
from common.cassandra import shared_session
from common.kafka import admin_client, consumer, durable_producer
from common.qoe.partition import (
    CHECKPOINT_KEY,
    MANIFEST_KEY,
    SESSION_PREFIX,
    Flush,
    PartitionAggregate,
    WindowKey,
    checkpoint_from_records,
)
from common.qoe.views import from_ms
from processors.app import app, topic_name
from processors.dead_letters import dead_letter
from processors.retry import until_applied
from sinks.qoe import QoeStore, aggregate_json, now_us

log = logging.getLogger(__name__)

FLUSH_EVERY_S = float(os.environ.get("QOE_FLUSH_EVERY_S", "0.5"))
# Events applied but not yet in a flush; beyond this the agent waits for the flush (back-pressure).
MAX_UNACKED = int(os.environ.get("QOE_MAX_UNACKED", "20000"))
TAKE_BATCH = 2000
YIELD_EVERY = 200
FINAL_AFTER_S = 60.0
QUIET_AFTER_S = 10.0
DROP_IDLE_EVERY_S = 10.0
LAG_EVERY_S = 10.0
SLOW_FLUSH_S = 1.0

EVENTS_SEEN = Counter("qoe_events_total", "Playback events processed by the QoE agent", ["outcome"])
VIEWS_CLOSED = Counter("qoe_views_closed_total", "Views closed", ["reason"])
LATE_INPUTS = Counter("qoe_late_inputs_total", "Window changes written after the window's final row")
FLUSHES = Counter("qoe_flushes_total", "Flushes of the QoE aggregation to Cassandra and the checkpoint topic")
FLUSH_SECONDS = Histogram(
    "qoe_flush_seconds",
    "Duration of one flush (all partitions)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
EVENT_FRESHNESS = Histogram(
    "qoe_event_to_cassandra_seconds",
    "From the collector accepting an event to its view and window rows being in Cassandra",
    buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30),
)
SESSIONS_HELD = Gauge("qoe_sessions_held", "Session states held in memory by this worker (open and recently closed)")
WINDOWS_HELD = Gauge("qoe_windows_held", "Window partials held in memory by this worker")
RESTORE_SECONDS = Histogram(
    "qoe_restore_seconds", "Time to restore one partition from its checkpoint", buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60)
)
CONSUMER_LAG = Gauge(
    "qoe_consumer_lag_messages",
    "Messages of playback.telemetry not yet processed, per partition this worker has consumed",
    ["partition"],
)

# Consumed by aggregate_qoe with confluent-kafka, not through a Faust topic object.
TELEMETRY_TOPIC = topic_name(topics.PLAYBACK_TELEMETRY)
TELEMETRY_PARTITIONS = topics.partitions(topics.PLAYBACK_TELEMETRY)
CHECKPOINT_TOPIC = topic_name(topics.QOE_CHECKPOINTS)


class CheckpointNotDurable(KafkaException):
    """The checkpoint topic did not acknowledge every record of a flush (waited out like a store failure)."""


class QoeWorker:
    """The QoE state of this worker process: one PartitionAggregate per partition of playback.telemetry it owns,
    how many events were applied since the last flush, and the flush that makes them durable."""

    def __init__(self) -> None:
        self.partitions: dict[int, PartitionAggregate] = {}
        self.assigned: set[int] = set()
        self.restoring: dict[int, asyncio.Future[PartitionAggregate]] = {}
        self.unflushed: dict[int, int] = {}
        # Commits the consumer offsets of a durable flush ({partition: next offset}); set by the consume loop.
        self.commit: Callable[[dict[int, int]], Awaitable[None]] | None = None
        self.last_event_wall: dict[int, float] = {}
        self.flush_lock = asyncio.Lock()
        self.flushed = asyncio.Event()
        self.last_drop_idle = time.monotonic()
        self.outcomes = {name: EVENTS_SEEN.labels(name) for name in ("accepted", "duplicate", "refused", "replayed")}

    @functools.cached_property
    def store(self) -> QoeStore:
        return QoeStore(shared_session())

    @functools.cached_property
    def producer(self) -> Producer:
        return durable_producer(None, **{"linger.ms": 2})

    def backlog(self) -> int:
        return sum(self.unflushed.values())

    # --- events -----------------------------------------------------------------------------------

    async def take(self, messages: Sequence[Message]) -> None:
        """Apply a batch of playback.telemetry messages (confluent-kafka's, in offset order per partition)."""
        codec = default_codec()
        for index, message in enumerate(messages):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                # The flush's writes complete through this event loop: applying a whole batch without a break
                # would hold every one of their callbacks back for as long.
                await asyncio.sleep(0)
            partition = message.partition() or 0
            offset = message.offset() or 0
            if partition not in self.assigned:
                continue  # taken before a rebalance moved the partition away: its new owner handles it
            aggregate = self.partitions.get(partition)
            if aggregate is None:
                aggregate = await self.taken_up(partition)
            self.unflushed[partition] = self.unflushed.get(partition, 0) + 1
            self.last_event_wall[partition] = time.monotonic()
            raw = message.value() or b""
            try:
                value = codec.decode(raw, "PlaybackEvent")
            except ValueError as exc:  # not a PlaybackEvent: to the dead-letter topic, the partition flows on
                aggregate.next_offset = max(aggregate.next_offset, offset + 1)
                await dead_letter(app, as_event(message), exc, "aggregate_qoe", raw)
                continue
            try:
                outcome = aggregate.apply(offset, value)
            except ValueError as exc:
                aggregate.next_offset = max(aggregate.next_offset, offset + 1)
                outcome = "refused"
                log.warning("event of %s refused: %s", value.get("session_id"), exc)
            self.outcomes[outcome].inc()

    # --- flushes ----------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write everything applied so far (see the module docstring for the order and why)."""
        async with self.flush_lock:
            began = time.monotonic()
            reads = await self._add_stored_partials()
            read_s = time.monotonic() - began
            now_ms = int(time.time() * 1000)
            # From here to the snapshot's serialisation nothing awaits: the snapshot is of one offset per partition.
            flushes = [aggregate.take_flush(now_ms=now_ms) for aggregate in self.partitions.values()]
            applied = {flush.partition: self.unflushed.pop(flush.partition, 0) for flush in flushes}
            partial_rows = {
                flush.partition: [(key, aggregate_json(partial), tag) for key, (partial, tag) in flush.partials.items()]
                for flush in flushes
            }
            session_records = {
                flush.partition: [
                    (SESSION_PREFIX + session_id.encode(), state) for session_id, state in flush.sessions.items()
                ]
                for flush in flushes
            }
            final_due = self.final_due(now_ms)
            changed = {key for flush in flushes for key in flush.partials}
            late = [
                key
                for flush in flushes
                for key in flush.partials
                if (slot := self.partitions[flush.partition].windows.get(key)) is not None and slot.final_written
            ]
            LATE_INPUTS.inc(len(late))

            windows = changed | set(final_due)
            known = self._partials_held(windows)
            snapshot_s = time.monotonic() - began
            await until_applied(functools.partial(self._write_ahead, flushes), "QoE flush manifests", kind="kafka")
            manifest_s = time.monotonic() - began
            # The rows of the windows whose partials are all in memory go out with the partials: they need no
            # read, and a crash between the two writes is replayed to the same rows. The others are read from the
            # stored partials, this partition's new ones included, so they wait for them.
            await asyncio.gather(
                until_applied(
                    functools.partial(self._write_rows, flushes, partial_rows), "QoE partials, views and progress"
                ),
                until_applied(
                    functools.partial(self._write_windows, set(known), known, now_ms), "QoE window rows (in memory)"
                ),
            )
            rows_s = time.monotonic() - began
            if windows - set(known):
                await until_applied(
                    functools.partial(self._write_windows, windows - set(known), {}, now_ms), "QoE window rows"
                )
            readable = time.time()  # the views and window rows of these events can be read from here on
            windows_s = time.monotonic() - began
            for key in windows:
                for partition in final_due.get(key, ()):
                    if (aggregate := self.partitions.get(partition)) and (slot := aggregate.windows.get(key)):
                        slot.final_written = True
            await until_applied(
                functools.partial(self._write_checkpoints, flushes, session_records), "QoE checkpoints", kind="kafka"
            )
            for flush in flushes:
                for received in flush.received_s:
                    EVENT_FRESHNESS.observe(max(0.0, readable - received))
                for metrics in flush.views:
                    VIEWS_CLOSED.labels(metrics.close_reason).inc()
                if (aggregate := self.partitions.get(flush.partition)) is not None:
                    aggregate.checkpointed(flush.offset)
            if self.commit is not None:
                await self.commit({flush.partition: flush.offset for flush in flushes if applied[flush.partition]})
            if time.monotonic() - self.last_drop_idle > DROP_IDLE_EVERY_S:
                self.last_drop_idle = time.monotonic()
                for aggregate in self.partitions.values():
                    aggregate.drop_idle(now_ms, int(FINAL_AFTER_S * 1000))
            SESSIONS_HELD.set(sum(len(a.sessions) for a in self.partitions.values()))
            WINDOWS_HELD.set(sum(len(a.windows) for a in self.partitions.values()))
            FLUSHES.inc()
            took = time.monotonic() - began
            FLUSH_SECONDS.observe(took)
            if took > SLOW_FLUSH_S:
                log.info(
                    "slow flush: %.2f s for %d events, %d stored partials read (%.2f s), snapshot at %.2f s,"
                    " manifest at %.2f s, %d partials + %d views + %d positions at %.2f s, %d window rows at %.2f s,"
                    " %d sessions",
                    took, sum(applied.values()), reads, read_s, snapshot_s, manifest_s,
                    len(changed), sum(len(f.views) for f in flushes), sum(len(f.progress) for f in flushes), rows_s,
                    len(windows), windows_s, sum(len(f.sessions) for f in flushes),
                )  # fmt: skip
            self.flushed.set()
            self.flushed.clear()

    async def _add_stored_partials(self) -> int:
        """Windows changed since this worker last wrote them but never read: add their stored partial first
        (repeated, since events applied while reading may open more); returns how many were read."""
        reads = 0
        while True:
            unbased = {p: keys for p, aggregate in self.partitions.items() if (keys := aggregate.unbased())}
            if not unbased:
                return reads
            reads += sum(len(keys) for keys in unbased.values())
            for partition, keys in unbased.items():
                read = functools.partial(self.store.read_partials, partition, keys)
                stored = await until_applied(read, f"stored partials of partition {partition}", kind="read")
                aggregate = self.partitions.get(partition)
                if aggregate is None:
                    continue
                for key in keys:
                    found = stored.get(key)
                    aggregate.add_base(key, None if found is None else found[0])

    def final_due(self, now_ms: int) -> dict[WindowKey, list[int]]:
        """Windows whose final row is due and not written yet, with the partitions that hold them."""
        due: dict[WindowKey, list[int]] = {}
        for partition, aggregate in self.partitions.items():
            for key, slot in aggregate.windows.items():
                if not slot.final_written and now_ms >= final_at_ms(key):
                    due.setdefault(key, []).append(partition)
        return due

    async def _write_ahead(self, flushes: list[Flush]) -> None:
        records = [
            (flush.partition, MANIFEST_KEY, orjson.dumps(flush.manifest))
            for flush in flushes
            if flush.partials or flush.manifest["timer_closes"]
        ]
        await self._produce(records)

    async def _write_rows(self, flushes: list[Flush], partial_rows: dict[int, list[Any]]) -> None:
        store = self.store
        rows = [row for p, partials in partial_rows.items() for row in store.partial_rows(p, partials)]
        rows += [row for flush in flushes for metrics in flush.views for row in store.view_rows(metrics)]
        rows += [
            store.progress_row(viewer, video, position, from_ms(at_ms))
            for flush in flushes
            for (viewer, video), (position, at_ms) in flush.progress.items()
        ]
        await store.write_all(rows)

    def _partials_held(self, keys: set[WindowKey]) -> dict[WindowKey, list[dict[str, Any]]]:
        """The windows whose every partial this worker knows (copies: call it with the snapshot, before any await):
        it holds every partition, and each either has the window in memory with its stored part added, or cannot
        have one stored that it does not hold (``may_be_stored``). Their rows need no read; the others' read the
        partials of all partitions."""
        if len(self.partitions) < TELEMETRY_PARTITIONS:
            return {}
        known = {}
        for key in keys:
            partials = []
            for aggregate in self.partitions.values():
                slot = aggregate.windows.get(key)
                if slot is not None and slot.based:
                    partials.append(orjson.loads(aggregate_json(slot.partial)))
                elif aggregate.may_be_stored(key):
                    break  # a partial of it may be stored for this partition
            else:
                known[key] = partials
        return known

    async def _write_windows(
        self, keys: set[WindowKey], known: dict[WindowKey, list[dict[str, Any]]], now_ms: int
    ) -> None:
        if not keys:
            return
        known_at = now_us()  # ``known`` is this flush's snapshot, taken before now
        partials = {key: (held, known_at) for key, held in known.items()}
        partials |= await self.store.read_window_partials(keys - set(known))
        await self.store.write_all(
            self.store.window_row(key, now_ms >= final_at_ms(key), *partials[key])[1] for key in keys
        )

    async def _write_checkpoints(self, flushes: list[Flush], session_records: dict[int, list[Any]]) -> None:
        records = []
        for flush in flushes:
            records += [(flush.partition, key, value) for key, value in session_records[flush.partition]]
            checkpoint = {
                "offset": flush.offset,
                "watermark_ms": flush.watermark_ms,
                "written_upto": flush.manifest["written_upto"],
            }
            records.append((flush.partition, CHECKPOINT_KEY, orjson.dumps(checkpoint)))
        await self._produce(records)

    async def _produce(self, records: Sequence[tuple[int, bytes, bytes | None]]) -> None:
        """Produce to the checkpoint topic and wait until Kafka acknowledged every record."""
        if not records:
            return
        failures: list[KafkaError] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error)

        producer = self.producer
        for partition, key, value in records:
            while True:
                try:
                    producer.produce(CHECKPOINT_TOPIC, key=key, value=value, partition=partition, on_delivery=delivered)
                    break
                except BufferError:
                    await asyncio.to_thread(producer.poll, 0.1)
        remaining = await asyncio.to_thread(producer.flush, 30)
        if remaining or failures:
            raise CheckpointNotDurable(failures[0] if failures else f"{remaining} records not acknowledged")

    # --- restore ----------------------------------------------------------------------------------

    def taken_up(self, partition: int) -> asyncio.Future[PartitionAggregate]:
        """The partition's restore, started when it was assigned (or now): a worker is caught up after a restart
        without waiting for the partition's next event."""
        restoring = self.restoring.get(partition)
        if restoring is None or (restoring.done() and restoring.exception() is not None):
            restoring = self.restoring[partition] = asyncio.ensure_future(self.restore(partition))
        return restoring

    async def restore(self, partition: int) -> PartitionAggregate:
        """Take the partition up from its checkpoint records: sessions, offsets, and the windows an interrupted
        flush may have written."""
        began = time.monotonic()
        aggregate = PartitionAggregate(partition)
        sessions, checkpoint, manifest = await asyncio.to_thread(read_checkpoints, partition)
        preload = aggregate.restore(sessions, checkpoint, manifest)
        if preload:
            read = functools.partial(self.store.read_partials, partition, preload)
            for key, (partial, tag) in (await until_applied(read, "partials to preload", kind="read")).items():
                aggregate.preload(key, partial, tag)
        self.partitions[partition] = aggregate
        RESTORE_SECONDS.observe(time.monotonic() - began)
        log.info(
            "partition %d restored in %.1f s: %d sessions, resuming at offset %d, %d windows reloaded",
            partition,
            time.monotonic() - began,
            len(sessions),
            aggregate.resume_offset,
            len(preload),
        )
        return aggregate

    async def on_assigned(self, mine: set[int]) -> None:
        self.assigned |= mine
        for partition in sorted(mine - set(self.partitions)):
            self.taken_up(partition)

    async def on_revoked(self, lost: set[int]) -> None:
        """Drop revoked partitions (their next owner restores them from the checkpoint), after any flush in
        flight finished, so that the owner reads a complete checkpoint or the manifest of a flush that wrote."""
        async with self.flush_lock:
            for partition in lost:
                self.assigned.discard(partition)
                self.partitions.pop(partition, None)
                if (restoring := self.restoring.pop(partition, None)) is not None:
                    restoring.cancel()
                self.unflushed.pop(partition, None)
                self.last_event_wall.pop(partition, None)


def final_at_ms(key: WindowKey) -> int:
    """When a window's row becomes final: FINAL_AFTER_S past its end."""
    return key[3] + key[2] * 1000 + int(FINAL_AFTER_S * 1000)


def read_checkpoints(partition: int) -> tuple[dict[str, bytes], dict[str, Any] | None, dict[str, Any] | None]:
    """The latest record of every key in the partition's checkpoint log (compacted, but maybe not yet)."""
    reader = consumer(f"qoe-restore-{os.getpid()}", None, **{"enable.partition.eof": True})
    try:
        low, high = reader.get_watermark_offsets(TopicPartition(CHECKPOINT_TOPIC, partition), timeout=30)
        latest: dict[bytes, bytes | None] = {}
        if high > low:
            reader.assign([TopicPartition(CHECKPOINT_TOPIC, partition, OFFSET_BEGINNING)])
            position = low
            while position < high:
                for message in reader.consume(num_messages=10_000, timeout=1.0):
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            position = high
                            continue
                        raise KafkaException(error)
                    latest[message.key() or b""] = message.value()
                    position = (message.offset() or 0) + 1
    finally:
        reader.close()
    return checkpoint_from_records(latest)


@functools.cache
def qoe_worker() -> QoeWorker:
    return QoeWorker()


@app.task
async def aggregate_qoe() -> None:
    """Take playback.telemetry in batches and apply them; offsets are committed by the flush that made them
    durable (QoeWorker.commit).

    The consumer is confluent-kafka's rather than a Faust agent's stream: Faust's own consume path (aiokafka,
    then its conductor, stream and sensors per message) takes 11,500 messages/s on this 2-core machine where
    confluent-kafka takes 58,000 (decode only, bench/qoe_backlog.py), and that was the ceiling of the stage. The
    semantics stay those of a Faust agent: one consumer group per role (`<app id>-telemetry`), partitions
    assigned by Kafka and restored when taken up, offsets committed only after the work is durable, poison
    messages to `playback.telemetry.dlq`, Prometheus metrics. The consumer polls in a thread; its rebalance
    callbacks run there and wait for the event loop (a revoked partition is dropped after the flush in flight).
    """
    worker = qoe_worker()
    loop = asyncio.get_running_loop()
    topic = TELEMETRY_TOPIC
    stopping = False

    def assigned(_: Consumer, partitions: list[TopicPartition]) -> None:
        mine = {tp.partition for tp in partitions}
        log.info("playback.telemetry partitions assigned: %s", sorted(mine))
        asyncio.run_coroutine_threadsafe(worker.on_assigned(mine), loop).result()

    def revoked(_: Consumer, partitions: list[TopicPartition]) -> None:
        if not stopping:
            lost = {tp.partition for tp in partitions}
            log.info("playback.telemetry partitions revoked: %s", sorted(lost))
            asyncio.run_coroutine_threadsafe(worker.on_revoked(lost), loop).result()

    reader = consumer(
        f"{app.conf.id}-telemetry",
        None,
        **{
            "max.poll.interval.ms": 300_000,
            # librdkafka prefetches up to 100,000 messages (or 64 MB) per partition by default: on a backlog that is
            # a gigabyte of RSS for messages a 0.5 s flush interval does not need. A few seconds' worth is enough.
            "queued.min.messages": 5_000,
            "queued.max.messages.kbytes": 8_192,
        },
    )
    reader.subscribe([topic], on_assign=assigned, on_revoke=revoked)
    # Every call on the consumer is made from the polling thread, between polls: a call from the event loop
    # while a rebalance callback waits for the loop (the flush in flight) would wait on the consumer's lock and
    # deadlock the two. The loop leaves its requests here.
    to_commit: dict[int, int] = {}
    want_paused = paused = False
    requests = threading.Lock()

    async def commit(offsets: dict[int, int]) -> None:
        with requests:
            to_commit.update(offsets)

    def poll() -> list[Message]:
        nonlocal paused
        with requests:
            owned = [TopicPartition(topic, p, o) for p, o in to_commit.items() if p in worker.assigned]
            to_commit.clear()
            pause = want_paused
        if owned:
            try:
                # Not waited for: the checkpoint, durable already, says where a restore resumes; the committed
                # offset only spares a restarted worker the redelivery of what the checkpoint holds.
                reader.commit(offsets=owned, asynchronous=True)
            except KafkaException as exc:  # a rebalance took the partition: its new owner resumes from the checkpoint
                log.warning("offsets not committed: %s", exc)
        # Back-pressure: while the flush is behind (a store away), stop taking events but keep polling, so the
        # group keeps this member and its partitions.
        if pause != paused:
            (reader.pause if pause else reader.resume)(reader.assignment())
            paused = pause
        return reader.consume(TAKE_BATCH, 0.1)

    worker.commit = commit
    try:
        while not app.should_stop:
            messages = await asyncio.to_thread(poll)
            good = []
            for message in messages:
                if (error := message.error()) is not None:
                    if not error.retriable() and error.code() != KafkaError._PARTITION_EOF:
                        log.warning("telemetry consumer: %s", error)
                    continue
                good.append(message)
            if good:
                await worker.take(good)
            backlog = worker.backlog()
            with requests:
                want_paused = backlog >= MAX_UNACKED or (want_paused and backlog >= MAX_UNACKED // 2)
    finally:
        stopping = True
        worker.commit = None
        await asyncio.to_thread(reader.close)


def as_event(message: Message) -> EventT:
    """A confluent-kafka message in the shape processors/dead_letters.py reads (``event.message``)."""
    shape = SimpleNamespace(
        topic=message.topic(), partition=message.partition(), offset=message.offset(), key=message.key(),
        value=message.value(),
    )  # fmt: skip
    return cast(EventT, SimpleNamespace(message=shape))


@app.task
async def flush_qoe() -> None:
    worker = qoe_worker()
    while not app.should_stop:
        began = time.monotonic()
        now_ms = int(time.time() * 1000)
        if any(a.pending() for a in worker.partitions.values()) or worker.backlog() or worker.final_due(now_ms):
            await worker.flush()
        await asyncio.sleep(max(0.0, FLUSH_EVERY_S - (time.monotonic() - began)))


@app.timer(interval=2.0)
async def close_quiet_sessions() -> None:
    """Partitions with no event for QUIET_AFTER_S and caught up with their end offset: close their expired
    sessions by the wall clock (the stream would never sweep them); the next flush writes what that closed."""
    worker = qoe_worker()
    quiet = [
        partition
        for partition, aggregate in worker.partitions.items()
        if aggregate.sessions and time.monotonic() - worker.last_event_wall.get(partition, 0.0) >= QUIET_AFTER_S
    ]
    if not quiet:
        return
    try:
        end_offsets = await asyncio.to_thread(latest_offsets, quiet)
    except KafkaException as exc:  # a broker away for a moment: the sessions are still expired at the next tick
        log.warning("quiet sessions not closed: %s", exc)
        return
    now_ms = int(time.time() * 1000)
    for partition in quiet:
        aggregate = worker.partitions.get(partition)
        # Quiet only counts when caught up: events waiting behind others in the fetch queue are not idleness.
        if aggregate is None or aggregate.next_offset < end_offsets.get(partition, 0):
            continue
        aggregate.close_quiet(now_ms, int(QUIET_AFTER_S * 1000))


@app.timer(interval=LAG_EVERY_S)
async def report_consumer_lag() -> None:
    """End offset minus the next offset to process, per partition (Kafka's own lag, from this worker's view)."""
    worker = qoe_worker()
    partitions = sorted(worker.partitions)
    if not partitions:
        return
    try:
        end_offsets = await asyncio.to_thread(latest_offsets, partitions)
    except KafkaException as exc:  # a broker away for a moment must not stop the worker over a gauge
        log.warning("consumer lag not measured: %s", exc)
        return
    for partition in partitions:
        aggregate = worker.partitions.get(partition)
        if aggregate is not None:
            lag = end_offsets.get(partition, 0) - aggregate.next_offset
            CONSUMER_LAG.labels(str(partition)).set(max(0, lag))


def latest_offsets(partitions: list[int]) -> dict[int, int]:
    topic = TELEMETRY_TOPIC
    requests = {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}
    return {tp.partition: future.result(30).offset for tp, future in offsets_admin().list_offsets(requests).items()}


@functools.cache
def offsets_admin() -> AdminClient:
    """One admin client for the offset queries of the timers (not a new connection every few seconds)."""
    return admin_client()
