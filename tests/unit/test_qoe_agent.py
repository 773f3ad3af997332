"""The QoE worker (processors/telemetry.py QoeWorker) in-process: Avro messages (confluent-kafka's shape) through
``take``, flushes against a recording Cassandra and a fake checkpoint topic, consumer offsets committed through
``QoeWorker.commit``, restores from the checkpoint topic. Simulated players make the truth.

* A store or a broker away for a moment is waited out (processors/retry.py), never skipped: the rows after
  timeouts are those of a run without them, and an offset is committed only once the checkpoint that holds
  every event below it was produced.
* A failure that is not the stores' transport (a bug) raises.
* A message that is no PlaybackEvent goes to the dead-letter topic; the partition flows on.
* A worker dying in a flush, and the one that takes its partitions up from the checkpoint topic, write the
  rows of a run without the crash.
"""

from __future__ import annotations

import inspect
import random
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pytest
from cassandra import OperationTimedOut
from cassandra.cluster import NoHostAvailable

from common.avro import AvroCodec
from common.qoe.partition import CHECKPOINT_KEY, MANIFEST_KEY, checkpoint_from_records
from common.qoe.views import ViewMetrics
from common.qoe.windows import WindowRow, finalise_partials
from processors import retry, telemetry
from processors.telemetry import QoeWorker
from sinks.qoe import now_us
from tests import qoe_simulate as simulate
from tests.unit.qoe.test_qoe_oracle import check_views, check_windows

CODEC = AvroCodec()
PARTITIONS = telemetry.TELEMETRY_PARTITIONS
WindowKey = tuple[str, str, int, int]


# ---------------------------------------------------------------------------------------------------------
# Fakes: Cassandra, the checkpoint topic, the consumer's messages and commits
# ---------------------------------------------------------------------------------------------------------


class Crash(Exception):
    """The worker process dies here (not a transport failure: nothing retries it)."""


class RecordingStore:
    """QoeStore against dicts. ``failures`` raise, in order, at the first tries of "write" (any write) or
    "read" (any read)."""

    def __init__(self, failures: Mapping[str, Iterable[BaseException]] | None = None) -> None:
        self.failures = {kind: list(errors) for kind, errors in (failures or {}).items()}
        self.attempts: Counter[str] = Counter()
        self.partials: dict[WindowKey, dict[int, tuple[bytes, int]]] = {}
        self.rows: dict[WindowKey, tuple[WindowRow, bool]] = {}
        self.row_as_of: dict[WindowKey, int] = {}
        self.views: dict[str, ViewMetrics] = {}
        self.progress: dict[tuple[str, str], tuple[float, datetime]] = {}

    def _try(self, kind: str) -> None:
        self.attempts[kind] += 1
        if self.failures.get(kind):
            raise self.failures[kind].pop(0)

    # Rows (no I/O), written by write_all.
    def partial_rows(self, partition: int, partials: Iterable[tuple[WindowKey, bytes, int]]) -> list[Any]:
        return [("partial", (partition, key, data, tag)) for key, data, tag in partials]

    def view_rows(self, metrics: ViewMetrics) -> list[Any]:
        return [("view", metrics)]

    def progress_row(self, viewer: str, video: str, position_s: float, at: datetime) -> Any:
        return ("progress", ((viewer, video), position_s, at))

    def window_row(
        self, key: WindowKey, final: bool, partials: Iterable[Mapping[str, Any]], as_of_us: int
    ) -> tuple[WindowRow, Any]:
        row = finalise_partials((key[0], key[1]), key[2], key[3], partials)
        return row, ("window", (key, row, final, as_of_us))

    async def write_all(self, rows: Iterable[Any]) -> None:
        rows = list(rows)
        self._try("write")
        for kind, value in rows:
            if kind == "partial":
                partition, key, data, tag = value
                self.partials.setdefault(key, {})[partition] = (data, tag)
            elif kind == "view":
                previous = self.views.get(value.view_id)
                assert previous is None or previous == value, "a view written again is the same row"
                self.views[value.view_id] = value
            elif kind == "progress":
                key, position, at = value
                if key not in self.progress or self.progress[key][1] <= at:  # USING TIMESTAMP of the event
                    self.progress[key] = (position, at)
            else:
                key, row, final, as_of = value
                # USING TIMESTAMP as_of: the row of the later read wins, whatever order the writes land in.
                if key not in self.rows or self.row_as_of[key] <= as_of:
                    self.rows[key] = (row, final)
                    self.row_as_of[key] = as_of

    async def read_partials(
        self, partition: int, keys: Iterable[WindowKey]
    ) -> dict[WindowKey, tuple[dict[str, Any], int]]:
        self._try("read")
        found = {}
        for key in keys:
            if (stored := self.partials.get(key, {}).get(partition)) is not None:
                found[key] = (orjson.loads(stored[0]), stored[1])
        return found

    async def read_window_partials(
        self, keys: Iterable[WindowKey]
    ) -> dict[WindowKey, tuple[list[dict[str, Any]], int]]:
        self._try("read")
        return {
            key: ([orjson.loads(data) for data, _ in self.partials.get(key, {}).values()], now_us()) for key in keys
        }

    # One-row writes (QoeStore keeps them for other callers).
    async def write_partials(self, partition: int, partials: Iterable[tuple[WindowKey, bytes, int]]) -> None:
        await self.write_all(self.partial_rows(partition, partials))

    async def write_view(self, metrics: ViewMetrics) -> None:
        await self.write_all(self.view_rows(metrics))

    async def write_progress(self, viewer: str, video: str, position_s: float, at: datetime) -> None:
        await self.write_all([self.progress_row(viewer, video, position_s, at)])

    async def write_window(
        self, key: WindowKey, final: bool, partials: Iterable[Mapping[str, Any]] | None = None
    ) -> WindowRow:
        as_of = now_us()
        if partials is None:
            partials, as_of = (await self.read_window_partials([key]))[key]
        row, statement = self.window_row(key, final, partials, as_of)
        await self.write_all([statement])
        return row

    def window_rows(self) -> dict[WindowKey, tuple[WindowRow, bool]]:
        return dict(self.rows)


class CheckpointTopic:
    """qoe.session-checkpoints, compacted: the latest record of each key per partition. The produce calls
    numbered in ``failing_calls`` (from 1) deliver their first record only, then fail as a broker that did not
    acknowledge the rest."""

    def __init__(self, failing_calls: Iterable[int] = ()) -> None:
        self.latest: dict[int, dict[bytes, bytes | None]] = defaultdict(dict)
        self.failing_calls = set(failing_calls)
        self.calls = 0

    async def produce(self, records: Any) -> None:
        self.calls += 1
        records = list(records)
        if self.calls in self.failing_calls:
            self.failing_calls.remove(self.calls)
            for partition, key, value in records[:1]:
                self.latest[partition][key] = value
            raise telemetry.CheckpointNotDurable("1 record not acknowledged")
        for partition, key, value in records:
            self.latest[partition][key] = value

    def checkpoint_offset(self, partition: int) -> int:
        record = self.latest[partition].get(CHECKPOINT_KEY)
        return -1 if record is None else int(orjson.loads(record)["offset"])

    def read(self, partition: int) -> tuple[dict[str, bytes], dict[str, Any] | None, dict[str, Any] | None]:
        """As telemetry.read_checkpoints reads the topic."""
        return checkpoint_from_records(self.latest[partition])


@dataclass(frozen=True)
class Record:
    """A message of playback.telemetry as produced."""

    partition: int
    offset: int
    value: bytes


class FakeMessage:
    """A confluent-kafka message, as QoeWorker.take reads it (through its methods)."""

    def __init__(self, record: Record) -> None:
        self.record = record

    def partition(self) -> int:
        return self.record.partition

    def offset(self) -> int:
        return self.record.offset

    def value(self) -> bytes:
        return self.record.value

    def key(self) -> bytes | None:
        return None

    def topic(self) -> str:
        return "playback.telemetry"

    def error(self) -> None:
        return None


class Commits:
    """QoeWorker.commit: the consumer offsets committed, each checked against the checkpoint topic."""

    def __init__(self, topic: CheckpointTopic) -> None:
        self.topic = topic
        self.offsets: dict[int, int] = {}
        self.calls = 0

    async def __call__(self, offsets: dict[int, int]) -> None:
        self.calls += 1
        for partition, offset in offsets.items():
            # Never ahead of durable state: every event below the offset is in a checkpoint in the topic.
            assert self.topic.checkpoint_offset(partition) >= offset
            assert offset >= self.offsets.get(partition, 0), "a commit never goes back"
            self.offsets[partition] = offset


def confluent_messages(records: Iterable[Record]) -> Any:
    """Fake messages where QoeWorker.take expects confluent-kafka's."""
    return [FakeMessage(record) for record in records]


# ---------------------------------------------------------------------------------------------------------
# Running workers
# ---------------------------------------------------------------------------------------------------------


Log = list[Record]  # playback.telemetry as produced, in arrival order


def playback(seed: int, n_sessions: int, quiet_rate: float = 0.5) -> tuple[list[simulate.Session], Log]:
    """Simulated sessions and their deliveries, keyed by session over the partitions, as Avro messages."""
    sessions = simulate.generate(seed, n_sessions, quiet_rate=quiet_rate)
    offsets = [0] * PARTITIONS
    log = []
    for delivery in simulate.deliveries(sessions, seed, duplicate_rate=0.15):
        partition = zlib.crc32(delivery.event["session_id"].encode()) % PARTITIONS
        log.append(Record(partition, offsets[partition], CODEC.encode("PlaybackEvent", delivery.event)))
        offsets[partition] += 1
    return sessions, log


@dataclass
class Fakes:
    store: RecordingStore
    topic: CheckpointTopic
    commits: Commits


def fakes(store: RecordingStore | None = None, topic: CheckpointTopic | None = None) -> Fakes:
    topic = topic or CheckpointTopic()
    return Fakes(store or RecordingStore(), topic, Commits(topic))


def new_worker(fake: Fakes, monkeypatch: pytest.MonkeyPatch, partitions: Iterable[int]) -> QoeWorker:
    worker = QoeWorker()
    # QoeWorker makes its store once (functools.cached_property): a value in the instance's dict wins. Set there,
    # not with setattr, whose lookup of the old value would connect to Cassandra.
    vars(worker)["store"] = fake.store
    monkeypatch.setattr(worker, "_produce", fake.topic.produce)
    monkeypatch.setattr(telemetry, "read_checkpoints", fake.topic.read)
    worker.commit = fake.commits
    worker.assigned = set(partitions)
    return worker


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "RETRY_FIRST_S", 0.001)
    monkeypatch.setattr(retry, "RETRY_MAX_S", 0.002)


async def feed(workers: list[QoeWorker], log: Log, *, batch: int = 60, flush_every: int = 3) -> None:
    """Deliver ``log`` in batches (the consumer's) to the worker owning each partition, flushing every few
    batches; then the partitions go quiet: the quiet-session timer closes what is open, and a last flush."""
    for n, start in enumerate(range(0, len(log), batch)):
        for worker in workers:
            mine = [record for record in log[start : start + batch] if record.partition in worker.assigned]
            await worker.take(confluent_messages(mine))
        if n % flush_every == flush_every - 1:
            for worker in workers:
                await worker.flush()
    for worker in workers:
        await worker.flush()
        await close_quiet_partitions(worker, log)
        await worker.flush()


async def close_quiet_partitions(worker: QoeWorker, log: Log) -> None:
    """The timer close_quiet_sessions, run by hand: every partition quiet for long and caught up."""
    ends = Counter(record.partition for record in log)
    for partition in worker.partitions:
        worker.last_event_wall[partition] = time.monotonic() - telemetry.QUIET_AFTER_S - 1
    timer = inspect.unwrap(telemetry.close_quiet_sessions)  # the function under Faust's timer loop
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(telemetry, "qoe_worker", lambda: worker)
        patch.setattr(telemetry, "latest_offsets", lambda partitions: {p: ends[p] for p in partitions})
        await timer()


async def run_workers(
    log: Log, monkeypatch: pytest.MonkeyPatch, fake: Fakes | None = None, *, workers: int = 1
) -> Fakes:
    """``log`` through ``workers`` workers sharing the partitions (round robin), against one store and topic."""
    fake = fake or fakes()
    await feed([new_worker(fake, monkeypatch, range(n, PARTITIONS, workers)) for n in range(workers)], log)
    return fake


def assert_true_rows(sessions: list[simulate.Session], store: RecordingStore) -> None:
    check_views(sessions, list(store.views.values()))
    check_windows(sessions, [row for row, _ in store.rows.values()])
    assert all(final for _, final in store.rows.values()), "windows of January are long final"


def assert_all_committed(log: Log, commits: Commits) -> None:
    """Every partition committed up to its end (Commits checked each commit against the checkpoint topic)."""
    assert commits.offsets == Counter(record.partition for record in log)


# ---------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------


async def test_the_worker_writes_the_true_rows_and_commits_after_the_checkpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions, log = playback(1, 40)
    fake = await run_workers(log, monkeypatch)
    assert_true_rows(sessions, fake.store)
    assert_all_committed(log, fake.commits)
    for partition, count in Counter(record.partition for record in log).items():
        assert fake.topic.checkpoint_offset(partition) == count


async def test_two_workers_sharing_the_partitions_sum_each_others_partials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither worker holds every partition: each window row is the sum of the partials read back from the store."""
    sessions, log = playback(2, 40)
    fake = await run_workers(log, monkeypatch, workers=2)
    assert_true_rows(sessions, fake.store)
    assert_all_committed(log, fake.commits)


async def test_cassandra_and_kafka_away_for_a_moment_leave_the_rows_of_a_run_without_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions, log = playback(3, 30)
    # Two workers: neither holds every partition, so each window row reads the stored partials.
    clean = (await run_workers(log, monkeypatch, workers=2)).store
    flaky = RecordingStore(
        {
            "write": [OperationTimedOut("coordinator timed out"), NoHostAvailable("Cassandra restarting", {})],
            "read": [OperationTimedOut("read timed out")],
        }
    )
    # The first flush's manifests fail once, then its checkpoint records (after a session record landed).
    fake = await run_workers(log, monkeypatch, fakes(flaky, CheckpointTopic(failing_calls={1, 3})), workers=2)

    assert not flaky.failures["write"] and not flaky.failures["read"] and not fake.topic.failing_calls, "all hit"
    assert flaky.rows == clean.rows
    assert flaky.views == clean.views and flaky.progress == clean.progress
    assert flaky.partials == clean.partials
    assert_true_rows(sessions, flaky)
    # Committed once the checkpoint was in the topic (Commits asserts it), up to the end.
    assert_all_committed(log, fake.commits)
    # Each failure cost one more try of its step.
    assert flaky.attempts["write"] == clean.attempts["write"] + 2
    assert flaky.attempts["read"] == clean.attempts["read"] + 1


async def test_a_store_failure_that_is_a_bug_is_raised_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    _, log = playback(4, 5)
    fake = fakes(RecordingStore({"write": [TypeError("a bug in a statement")]}))
    worker = new_worker(fake, monkeypatch, range(PARTITIONS))
    await worker.take(confluent_messages(log[:50]))
    with pytest.raises(TypeError, match="a bug"):
        await worker.flush()
    assert fake.store.attempts["write"] == 1
    # The manifests were written ahead; no checkpoint was, nothing was committed: a restart replays the events.
    assert fake.commits.calls == 0
    assert all(fake.topic.checkpoint_offset(p) == -1 for p in range(PARTITIONS))
    assert any(MANIFEST_KEY in records for records in fake.topic.latest.values())


async def test_a_message_that_is_no_playback_event_is_dead_lettered_and_the_partition_flows_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions, log = playback(5, 1, quiet_rate=0)
    partition = log[0].partition
    bad_at = len(log) // 2
    garbage = b"\x00\x01 not avro"
    # The garbage is a message of its own (offset bad_at), the session's later events come after it.
    log = [
        *log[:bad_at],
        Record(partition, bad_at, garbage),
        *(Record(r.partition, r.offset + 1, r.value) for r in log[bad_at:]),
    ]
    parked: list[tuple[int, int, str, bytes | None]] = []

    async def dead_letter(app: Any, event: Any, error: BaseException, agent: str, payload: bytes | None = None) -> None:
        parked.append((event.message.partition, event.message.offset, agent, payload))

    monkeypatch.setattr(telemetry, "dead_letter", dead_letter)
    fake = await run_workers(log, monkeypatch)

    assert parked == [(partition, bad_at, "aggregate_qoe", garbage)]
    assert fake.topic.checkpoint_offset(partition) == len(log)
    assert_all_committed(log, fake.commits)  # past the garbage: it is on the dead-letter topic
    assert_true_rows(sessions, fake.store)  # every event after it was applied


@pytest.mark.parametrize("crash_at_write", [1, 2, 4])
async def test_a_worker_dying_in_a_flush_and_its_successor_write_the_rows_of_a_run_without_the_crash(
    monkeypatch: pytest.MonkeyPatch, crash_at_write: int
) -> None:
    """The worker dies in a Cassandra write of a flush, after its manifest (1: the partials of the first flush,
    half of them landed; 2: its window rows; 4: the second flush's window rows). A new worker restores every
    partition from the checkpoint topic (QoeWorker.restore: sessions, offsets, the partials the manifest names),
    the consumer redelivers from the start, and the rows end as without the crash."""
    sessions, log = playback(6, 30)
    clean = (await run_workers(log, monkeypatch)).store

    fake = fakes()
    write_all = fake.store.write_all
    calls = 0

    async def dying(rows: Iterable[Any]) -> None:
        nonlocal calls
        calls += 1
        rows = list(rows)
        if calls == crash_at_write:
            await write_all(random.Random(crash_at_write).sample(rows, len(rows) // 2))  # some rows landed
            raise Crash
        await write_all(rows)

    monkeypatch.setattr(fake.store, "write_all", dying)
    with pytest.raises(Crash):
        await run_workers(log, monkeypatch, fake)
    monkeypatch.setattr(fake.store, "write_all", write_all)

    preloaded: list[tuple[int, WindowKey]] = []
    preload = telemetry.PartitionAggregate.preload

    def counted(aggregate: telemetry.PartitionAggregate, key: WindowKey, stored: Any, tag: int) -> None:
        preloaded.append((aggregate.partition, key))
        preload(aggregate, key, stored, tag)

    monkeypatch.setattr(telemetry.PartitionAggregate, "preload", counted)
    fake = await run_workers(log, monkeypatch, fakes(fake.store, fake.topic))
    assert preloaded, "the successor reloaded the partials the interrupted flush named"
    assert fake.store.rows == clean.rows
    assert fake.store.views == clean.views and fake.store.progress == clean.progress
    assert_true_rows(sessions, fake.store)
    assert_all_committed(log, fake.commits)
