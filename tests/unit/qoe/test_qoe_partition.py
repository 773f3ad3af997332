"""PartitionAggregate (common/qoe/partition.py) in memory, against a fake Cassandra and a fake checkpoint log.

* The oracle through the partitions: simulated players (ground truth known by construction), delivered late,
  duplicated and out of order, keyed by session over P Kafka partitions; each partition aggregated on its own
  and flushed at random points into a fake store of per-partition partials (JSON round trip, as in Cassandra);
  the window rows (the sum of the partials) and the closed views equal the simulator's recount exactly.
* Crash and replay: the worker's flush protocol (processors/telemetry.py) emulated step by step, interrupted
  at every point where a crash leaves a different mix of durable records; a fresh aggregate restored from the
  checkpoint log and fed again from the committed offset (or from the start: Kafka may redeliver more) ends
  with exactly the rows of a run without the crash.
* Small properties: one session counts once per window, the state stays bounded, idle sessions are dropped
  with a tombstone.
"""

from __future__ import annotations

import functools
import random
import tracemalloc
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from common.qoe.partition import (
    CHECKPOINT_KEY,
    COUNTED_RETENTION_MS,
    INACTIVITY_MS,
    MANIFEST_KEY,
    RETAIN_CLOSED_MS,
    SESSION_PREFIX,
    Flush,
    PartitionAggregate,
    WindowKey,
    checkpoint_from_records,
)
from common.qoe.views import ViewMetrics, to_ms
from common.qoe.windows import GRANULARITIES_S, WindowRow, finalise_partials
from tests import qoe_simulate as simulate
from tests.unit.qoe.qoe_events import SID, T0, numbered, r720
from tests.unit.qoe.test_qoe_oracle import check_views, check_windows

P = 4
FAR_FUTURE_MS = simulate.DEFAULT_START_MS + 10**10
# The checkpoint topic's keys (processors/telemetry.py; not imported: that module starts the Faust app).

# Where a flush can be interrupted (processors/telemetry.py QoeWorker.flush, in its order).
CRASH_POINTS = (
    "after the manifest",  # manifests produced, nothing in Cassandra
    "after some partials",  # a random subset of the partials (and views) written
    "after the partials",  # every partial and window row written, no session record
    "after some sessions",  # some session records of each partition, no checkpoint record
    "after some records",  # any prefix of each partition's records: some checkpoints complete, some not
    "after the checkpoint",  # every record produced, the events not acked yet
)


def partition_of(session_id: str) -> int:
    """Kafka keys playback.telemetry by session: one session always lands on one partition."""
    return zlib.crc32(session_id.encode()) % P


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    arrival_ms: int
    event: dict[str, Any]


def messages(deliveries: Iterable[simulate.Delivery]) -> list[Message]:
    """The deliveries as Kafka holds them: per partition, in arrival order, with increasing offsets."""
    offsets = [0] * P
    out = []
    for d in deliveries:
        p = partition_of(d.event["session_id"])
        out.append(Message(p, offsets[p], d.arrival_ms, d.event))
        offsets[p] += 1
    return out


def fresh(event: dict[str, Any]) -> dict[str, Any]:
    """What a consumer decodes from the message: a new dict each time it is delivered."""
    return {**event, "extras": dict(event["extras"])}


# ---------------------------------------------------------------------------------------------------------
# Fakes: Cassandra (partials, window rows, views, progress) and the checkpoint topic
# ---------------------------------------------------------------------------------------------------------


class FakeCassandra:
    def __init__(self) -> None:
        self.partials: dict[WindowKey, dict[int, tuple[bytes, int]]] = {}  # window -> partition -> (JSON, tag)
        self.rows: dict[WindowKey, WindowRow] = {}
        self.views: dict[str, ViewMetrics] = {}
        self.progress: dict[tuple[str, str], tuple[float, int]] = {}

    def read_partial(self, key: WindowKey, partition: int) -> tuple[dict[str, Any], int] | None:
        found = self.partials.get(key, {}).get(partition)
        return None if found is None else (orjson.loads(found[0]), found[1])

    def write_partial(self, partition: int, key: WindowKey, data: bytes, tag: int) -> None:
        self.partials.setdefault(key, {})[partition] = (data, tag)

    def write_window(self, key: WindowKey) -> None:
        stored = [orjson.loads(data) for data, _ in self.partials[key].values()]
        self.rows[key] = finalise_partials((key[0], key[1]), key[2], key[3], stored)

    def write_view(self, metrics: ViewMetrics) -> None:
        previous = self.views.get(metrics.view_id)
        # A view written again (a replay) is written with the same values: its row key is its id.
        assert previous is None or previous == metrics, metrics.view_id
        self.views[metrics.view_id] = metrics

    def write_progress(self, key: tuple[str, str], position_s: float, at_ms: int) -> None:
        # The event time is the cell timestamp (USING TIMESTAMP): an older position written later never wins.
        previous = self.progress.get(key)
        if previous is None or (at_ms, position_s) >= (previous[1], previous[0]):
            self.progress[key] = (position_s, at_ms)


class FakeCheckpointLog:
    """The compacted checkpoint topic: the latest record of each key, per partition."""

    def __init__(self) -> None:
        self.latest: dict[int, dict[bytes, bytes | None]] = {p: {} for p in range(P)}

    def produce(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.latest[partition][key] = value

    def read(self, partition: int) -> tuple[dict[str, bytes], dict[str, Any] | None, dict[str, Any] | None]:
        """As processors.telemetry.read_checkpoints returns it."""
        return checkpoint_from_records(self.latest[partition])


def checkpoint_record(flush: Flush) -> dict[str, Any]:
    """As QoeWorker._write_checkpoints writes it."""
    return {"offset": flush.offset, "watermark_ms": flush.watermark_ms, "written_upto": flush.manifest["written_upto"]}


class Crash(Exception):
    """The worker process dies here: its memory is gone, Cassandra and the checkpoint log keep what they got."""


# ---------------------------------------------------------------------------------------------------------
# The worker, emulated step by step (processors/telemetry.py)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Worker:
    """One worker owning every partition: the aggregates, and the flush protocol of QoeWorker.flush."""

    store: FakeCassandra
    log: FakeCheckpointLog
    rng: random.Random
    aggregates: dict[int, PartitionAggregate] = field(default_factory=dict)
    acked: dict[int, int] = field(default_factory=dict)  # partition -> the offset the consumer commits
    flushes: int = 0
    restored_windows: int = 0

    @classmethod
    def restored(
        cls, store: FakeCassandra, log: FakeCheckpointLog, rng: random.Random, partitions: Iterable[int] = range(P)
    ) -> Worker:
        """A worker taking the partitions up from the checkpoint log (QoeWorker.restore)."""
        worker = cls(store, log, rng)
        for p in partitions:
            aggregate = PartitionAggregate(p)
            sessions, checkpoint, manifest = log.read(p)
            for key in aggregate.restore(sessions, checkpoint, manifest):
                found = store.read_partial(key, p)
                if found is not None:
                    aggregate.preload(key, *found)
                    worker.restored_windows += 1
            worker.aggregates[p] = aggregate
            worker.acked[p] = aggregate.resume_offset
        return worker

    def flush(
        self,
        *,
        crash: str | None = None,
        crash_if: Callable[[list[Flush]], bool] | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> None:
        """QoeWorker.flush: stored partials added in, a snapshot per partition, manifests, partials, views and
        progress, window rows, session records and checkpoints, then the acks. ``meanwhile`` runs where the
        worker first awaits (the quiet-session timer may fire there); ``crash`` interrupts it (raises Crash),
        if ``crash_if`` holds for the snapshots."""
        rng = self.rng
        for p, aggregate in self.aggregates.items():
            for key in aggregate.unbased():
                found = self.store.read_partial(key, p)
                aggregate.add_base(key, None if found is None else found[0])
        flushes = [aggregate.take_flush(now_ms=0) for aggregate in self.aggregates.values()]
        # Serialised before anything awaits (the live partials change with the next event).
        partial_rows = [
            (flush.partition, key, orjson.dumps(partial), tag)
            for flush in flushes
            for key, (partial, tag) in flush.partials.items()
        ]
        records = {
            flush.partition: [
                *((SESSION_PREFIX + sid.encode(), state) for sid, state in flush.sessions.items()),
                (CHECKPOINT_KEY, orjson.dumps(checkpoint_record(flush))),
            ]
            for flush in flushes
        }
        self.flushes += 1
        if crash_if is not None and not crash_if(flushes):
            crash = None
        if meanwhile is not None:
            meanwhile()

        for flush in flushes:
            if flush.partials or flush.manifest["timer_closes"]:
                self.log.produce(flush.partition, MANIFEST_KEY, orjson.dumps(flush.manifest))
        if crash == "after the manifest":
            raise Crash(crash)

        views = [metrics for flush in flushes for metrics in flush.views]
        if crash == "after some partials":
            for p, key, data, tag in partial_rows:
                if rng.random() < 0.5:
                    self.store.write_partial(p, key, data, tag)
            for metrics in views:
                if rng.random() < 0.5:
                    self.store.write_view(metrics)
            raise Crash(crash)
        for p, key, data, tag in partial_rows:
            self.store.write_partial(p, key, data, tag)
        for metrics in views:
            self.store.write_view(metrics)
        for flush in flushes:
            for viewer_video, (position, at) in flush.progress.items():
                self.store.write_progress(viewer_video, position, at)
        for key in {key for _, key, _, _ in partial_rows}:
            self.store.write_window(key)
        if crash == "after the partials":
            raise Crash(crash)

        for p, produced in records.items():
            if crash == "after some sessions":
                # a prefix that stops before the checkpoint record (and holds a session record, if any)
                produced = produced[: rng.randint(min(1, len(produced) - 1), len(produced) - 1)]
            elif crash == "after some records":
                produced = produced[: rng.randint(0, len(produced))]
            for record_key, value in produced:
                self.log.produce(p, record_key, value)
        if crash is not None:
            raise Crash(crash)

        for flush in flushes:
            self.aggregates[flush.partition].checkpointed(flush.offset)
            self.acked[flush.partition] = flush.offset
        if rng.random() < 0.3:
            for aggregate in self.aggregates.values():
                aggregate.drop_idle(0, 0)


@dataclass
class Outcome:
    store: FakeCassandra
    flushes: int
    crashes: list[str]
    restored_windows: int
    timer_closes: int


def run(
    msgs: list[Message],
    seed: int,
    *,
    crashes: dict[int, str] | None = None,
    crash_with_timer_closes: bool = False,
    flush_every: float = 0.02,
    quiet_after_flush: float = 0.5,
    quiet_every: float = 0.02,
    close_during_flush: bool = False,
    replay_from_start: float = 0.5,
) -> Outcome:
    """Feed ``msgs`` in their global order through a worker, flushing and closing quiet sessions at random
    points; from each flush number in ``crashes`` on, the worker crashes at the given point (at the first flush
    ``with_timer_closes``, with ``crash_with_timer_closes``), and a new one restores every
    partition and is fed again from the committed offset (or from 0). Then the input ends: every session is
    closed by the quiet timer and the worker flushes until nothing is left."""
    crashes = dict(crashes or {})
    rng = random.Random(seed)
    store, log = FakeCassandra(), FakeCheckpointLog()
    by_partition: list[list[Message]] = [[m for m in msgs if m.partition == p] for p in range(P)]
    worker = Worker(store, log, rng, {p: PartitionAggregate(p) for p in range(P)}, dict.fromkeys(range(P), 0))
    fetch = dict.fromkeys(range(P), 0)  # the next offset the consumer delivers, per partition
    crashed: list[str] = []
    timer_closes = 0

    def next_arrival(p: int) -> int:
        """The wall clock of a quiet close is never past the partition's next arrival (the collector's clock):
        it closes what the next event's sweep would close, so the truth stays the simulator's."""
        pending = by_partition[p]
        return pending[fetch[p]].arrival_ms if fetch[p] < len(pending) else FAR_FUTURE_MS

    def close_quiet(partitions: Iterable[int]) -> None:
        nonlocal timer_closes
        for p in partitions:
            timer_closes += len(worker.aggregates[p].close_quiet(next_arrival(p), 0))

    def flush() -> bool:
        """One flush; True when it crashed (and a new worker took over, the consumer positions moved back)."""
        nonlocal worker
        due = min((k for k in crashes if k <= worker.flushes), default=None)
        meanwhile = None
        if close_during_flush and rng.random() < 0.5:
            meanwhile = lambda: close_quiet(range(P))  # noqa: E731
        try:
            worker.flush(
                crash=None if due is None else crashes[due],
                crash_if=with_timer_closes if crash_with_timer_closes else None,
                meanwhile=meanwhile,
            )
        except Crash as exc:
            assert due is not None
            del crashes[due]
            crashed.append(str(exc))
            flushes, restored = worker.flushes, worker.restored_windows
            worker = Worker.restored(store, log, rng)
            worker.flushes, worker.restored_windows = flushes, restored + worker.restored_windows
            for p in range(P):
                # Kafka redelivers from the committed offset, or from further back (a commit not made yet).
                fetch[p] = 0 if rng.random() < replay_from_start else worker.acked[p]
            return True
        return False

    i = 0
    while i < len(msgs):
        message = msgs[i]
        i += 1
        if message.offset < fetch[message.partition]:
            continue  # not redelivered: below the position the consumer restarted from
        assert message.offset == fetch[message.partition]
        worker.aggregates[message.partition].apply(message.offset, fresh(message.event))
        fetch[message.partition] += 1
        if rng.random() < flush_every:
            if flush():
                i = 0
            # The quiet timer mostly right after a flush at the same offset: the worker's order on a partition
            # that went quiet (it flushes within FLUSH_EVERY_S of the last event, the timer closes sessions
            # QUIET_AFTER_S later), so a partial tagged N is written both before and after the closes at N.
            if rng.random() < quiet_after_flush:
                close_quiet(range(P))
        elif rng.random() < quiet_every:
            close_quiet(range(P))
    while True:  # the end of the input (a crash here feeds the tail again)
        for p in range(P):
            for message in by_partition[p][fetch[p] :]:
                worker.aggregates[p].apply(message.offset, fresh(message.event))
            fetch[p] = len(by_partition[p])
        if any(a.pending() for a in worker.aggregates.values()) and flush():
            continue
        close_quiet(range(P))
        if not any(a.pending() for a in worker.aggregates.values()):
            break
    # (A crash waiting for a flush with timer closes may find none before the end.)
    assert not crashes or crash_with_timer_closes, f"flushes {sorted(crashes)} never happened"
    return Outcome(store, worker.flushes, crashed, worker.restored_windows, timer_closes)


def with_timer_closes(flushes: list[Flush]) -> bool:
    """A flush whose manifest names quiet closes made at the offset of the checkpoint before it: after the
    flush at that offset (a partition gone quiet), so partials tagged with it exist without and with them."""
    return any(c[0] == flush.manifest["checkpoint"] for flush in flushes for c in flush.manifest["timer_closes"])


# ---------------------------------------------------------------------------------------------------------
# The oracle through the partitions
# ---------------------------------------------------------------------------------------------------------


def scenario(seed: int, n_sessions: int = 80, quiet_rate: float = 0.5) -> tuple[list[simulate.Session], list[Message]]:
    sessions = simulate.generate(seed, n_sessions, quiet_rate=quiet_rate)
    deliveries = simulate.deliveries(sessions, seed, duplicate_rate=0.15, max_delay_ms=2000)
    return sessions, messages(deliveries)


def check_truth(sessions: list[simulate.Session], store: FakeCassandra) -> None:
    check_views(sessions, list(store.views.values()))
    check_windows(sessions, list(store.rows.values()))


@pytest.mark.parametrize("seed", [1, 2])
def test_the_partials_of_the_partitions_add_up_to_the_recount(seed: int) -> None:
    """Sessions spread over P partitions by key, each partition aggregated alone and flushed at random points
    (a stored partial is read back and added in when a window comes back after a flush); the sum of the
    partials is exactly the offline recount, the closed views are the simulator's."""
    sessions, msgs = scenario(seed, quiet_rate=0.1)
    outcome = run(msgs, seed)
    check_truth(sessions, outcome.store)
    assert {m.partition for m in msgs} == set(range(P))
    assert any(len(parts) > 1 for parts in outcome.store.partials.values()), "windows that several partitions share"
    assert outcome.flushes > 50 and outcome.timer_closes > 0


def test_the_recount_holds_with_sessions_that_go_quiet_and_a_timer_closing_during_flushes() -> None:
    sessions, msgs = scenario(3, quiet_rate=0.5)
    outcome = run(msgs, 3, quiet_every=0.2, close_during_flush=True)
    check_truth(sessions, outcome.store)
    assert outcome.timer_closes >= 10


# ---------------------------------------------------------------------------------------------------------
# Crash and replay
# ---------------------------------------------------------------------------------------------------------


@functools.cache
def baseline(seed: int) -> tuple[list[simulate.Session], list[Message], Outcome]:
    """The scenario of ``seed`` (half of the sessions go quiet and come back) and its run without a crash."""
    sessions, msgs = scenario(seed, quiet_rate=0.5)
    clean = run(msgs, seed)
    check_truth(sessions, clean.store)
    return sessions, msgs, clean


def crash_and_compare(seed: int, crashes: dict[int, str], **options: Any) -> Outcome:
    """Run the scenario of ``seed`` with ``crashes``: Cassandra ends as after the run without them, and true."""
    sessions, msgs, clean = baseline(seed)
    outcome = run(msgs, seed, crashes=crashes, **options)
    assert outcome.crashes and len(outcome.crashes) <= len(crashes)
    check_truth(sessions, outcome.store)
    assert outcome.store.rows == clean.store.rows
    assert outcome.store.views == clean.store.views
    assert outcome.store.progress == clean.store.progress
    return outcome


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_anywhere_in_a_flush_leaves_the_rows_of_a_run_without_it(point: str) -> None:
    """One crash at ``point``: in a random flush, and in one whose manifest names quiet closes made after the
    flush at the checkpoint's offset (a replay makes them again; partials tagged with that offset exist without
    and with them). The consumer restarts from the committed offset or from 0."""
    _, _, clean = baseline(11)
    at = random.Random(point).randrange(clean.flushes // 4, clean.flushes // 2)
    first = crash_and_compare(11, {at: point})
    timed = crash_and_compare(11, {at: point}, crash_with_timer_closes=True)
    if point in CRASH_POINTS[:4]:  # the checkpoint is not written: the manifest names what to reload
        assert first.restored_windows > 0 and timed.restored_windows > 0


@pytest.mark.parametrize("seed", [12])
def test_crashes_one_after_another_while_the_timer_closes_during_flushes(seed: int) -> None:
    """Three crashes two flushes apart (the replay of one interrupted by the next: preloaded partials ahead of the
    checkpoint, closes named by a manifest not made again yet), the quiet timer closing sessions while flushes
    write."""
    _, _, clean = baseline(seed)
    rng = random.Random(seed)
    for timer in (False, True):
        at = rng.randrange(clean.flushes // 4, clean.flushes // 2)
        crashes = {at + 2 * n: rng.choice(CRASH_POINTS) for n in range(3)}
        crash_and_compare(seed, crashes, crash_with_timer_closes=timer, close_during_flush=True)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [21])
def test_many_crashes_at_every_point(seed: int) -> None:
    _, _, clean = baseline(seed)
    rng = random.Random(seed)
    for point in CRASH_POINTS:
        for timer in (False, True):
            for during in (False, True):
                at = rng.randrange(1, clean.flushes // 2)
                crash_and_compare(seed, {at: point}, crash_with_timer_closes=timer, close_during_flush=during)
                crashes = {at + 2 * n: rng.choice(CRASH_POINTS) for n in range(3)}
                crash_and_compare(seed, crashes, crash_with_timer_closes=timer, close_during_flush=during)


def test_a_quiet_close_after_the_flush_at_its_offset_survives_a_crash_after_the_next_manifest() -> None:
    """The case the random runs found first. A quiet partition: its last events flushed at offset N, the timer
    closes an abandoned view at N, the next flush writes its manifest and dies. The restore reloads the windows
    the manifest names, whose stored partials (from the flush at N, tagged N) do not hold the close: a partial
    tagged N holds only the rounds of quiet closes at N made before its snapshot (``tag_rounds``)."""
    for crash in (None, "after the manifest", "after some partials", "after the partials"):
        for during in (False, True):
            store = abandoned_view(crash, during)
            global_minute = store.rows[("global", "all", 60, T0)]
            assert (global_minute.views, global_minute.concurrent_viewers) == (1, 1), (crash, during)
            assert [m.close_reason for m in store.views.values()] == ["inactive"]


def abandoned_view(crash: str | None, during: bool) -> FakeCassandra:
    """One view left open (3 events), flushed; the quiet timer closes it after that flush (or while it writes,
    ``during``); the next flush crashes at ``crash``, and a restored worker gets the events again."""
    p = partition_of(SID)
    events = numbered(("PLAY_REQUESTED", 0, r720()), ("FIRST_FRAME", 1000), ("HEARTBEAT", 5000, {"playhead_s": 4.0}))
    store, log = FakeCassandra(), FakeCheckpointLog()
    worker = Worker(store, log, random.Random(0), {p: PartitionAggregate(p)}, {p: 0})

    def close() -> None:
        assert worker.aggregates[p].close_quiet(T0 + 120_000, 10_000) == [SID]

    for offset, event in enumerate(events):
        worker.aggregates[p].apply(offset, fresh(event))
    worker.flush(meanwhile=close if during else None)
    if not during:
        close()
    try:
        worker.flush(crash=crash)
    except Crash:
        worker = Worker.restored(store, log, random.Random(1), partitions=[p])
        for offset, event in enumerate(events):  # redelivered from the start
            worker.aggregates[p].apply(offset, fresh(event))
        worker.aggregates[p].close_quiet(T0 + 120_000, 10_000)
        worker.flush()
    return store


def scripted(events: list[dict[str, Any]], steps: list[str]) -> FakeCassandra:
    """One partition through a script: "apply N" (the events up to offset N, from where the consumer is), "close"
    (the quiet timer, long after the events), "flush" or "flush:<crash point>" (a crash restores a new worker and
    the consumer restarts from offset 0). Then the end: every event, the timer, flushes until nothing is left."""
    p = partition_of(events[0]["session_id"])
    store, log = FakeCassandra(), FakeCheckpointLog()
    worker = Worker(store, log, random.Random(0), {p: PartitionAggregate(p)}, {p: 0})
    fetch = 0
    late = max(to_ms(e["received_ts"]) for e in events) + 10 * INACTIVITY_MS

    def apply(upto: int) -> None:
        nonlocal fetch
        for offset in range(fetch, upto):
            worker.aggregates[p].apply(offset, fresh(events[offset]))
        fetch = max(fetch, upto)

    for step in [*steps, f"apply {len(events)}", "close", "flush", "flush"]:
        if step.startswith("apply"):
            apply(int(step.split()[1]))
        elif step == "close":
            worker.aggregates[p].close_quiet(late, 0)
        else:
            try:
                worker.flush(crash=step.partition(":")[2] or None)
            except Crash:
                worker, fetch = Worker.restored(store, log, random.Random(1), partitions=[p]), 0
    assert not worker.aggregates[p].pending()
    return store


@pytest.mark.parametrize(
    "steps",
    [
        # The replay makes the close the manifest names; the next flush dies too: its manifest names it again.
        ["apply 3", "flush", "close", "flush:after the partials", "close", "flush:after the partials"],
        # The first flush after the restore comes before the replay made the close: its manifest names it still.
        ["apply 3", "flush", "close", "flush:after the partials", "flush:after the partials"],
        ["apply 3", "flush", "close", "flush:after the partials", "flush:after the manifest", "close", "flush"],
        # The replay flushes before it reached the interrupted flush's offset (a partial tagged ahead of the
        # checkpoint), then dies again after a checkpoint: that partial is reloaded, not read as a base (by the
        # manifest of the flush that wrote the checkpoint, or by the next ones, which name it until passed).
        ["apply 6", "flush:after the partials", "apply 3", "flush:after the checkpoint"],
        ["apply 6", "flush:after the partials", "apply 3", "flush", "flush:after the checkpoint"],
        ["apply 6", "flush:after the partials", "apply 3", "flush", "apply 4", "flush:after the manifest"],
        ["apply 6", "close", "flush:after the partials", "apply 2", "flush", "flush:after some records"],
    ],
)
def test_crashes_during_a_replay(steps: list[str]) -> None:
    """Crash after crash on one partition (a session left open, closed by the quiet timer): the rows are those
    of the same input without crashes."""
    events = numbered(
        ("PLAY_REQUESTED", 0, r720()),
        ("FIRST_FRAME", 1000),
        ("HEARTBEAT", 3000, {"playhead_s": 2.0}),
        ("HEARTBEAT", 5000, {"playhead_s": 4.0}),
        ("STALL_START", 6000),
        ("STALL_END", 7000),
    )
    if "apply 6" not in steps:
        events = events[:3]
    clean = scripted(events, [])
    crashed = scripted(events, steps)
    assert crashed.rows == clean.rows and crashed.views == clean.views
    assert clean.rows[("global", "all", 60, T0)].views == 1


# ---------------------------------------------------------------------------------------------------------
# Small properties
# ---------------------------------------------------------------------------------------------------------


def flush_all(aggregate: PartitionAggregate, stored: dict[WindowKey, dict[str, Any]] | None = None) -> Flush:
    for key in aggregate.unbased():
        aggregate.add_base(key, (stored or {}).get(key))
    return aggregate.take_flush(now_ms=0)


def partial_of(flush: Flush, scope: tuple[str, str], granularity: int, start: int) -> dict[str, Any]:
    return flush.partials[(scope[0], scope[1], granularity, start)][0]


def test_a_session_counts_once_per_window_however_many_events_it_sends() -> None:
    aggregate = PartitionAggregate(0)
    events = numbered(
        ("PLAY_REQUESTED", 0, r720()),
        ("FIRST_FRAME", 1000),
        ("HEARTBEAT", 5000, {"playhead_s": 4.0}),
        ("HEARTBEAT", 8000, {"playhead_s": 7.0}),
        ("HEARTBEAT", 8000, {"playhead_s": 7.0}),  # a duplicate (same seq) of the last one
    )
    events[4]["seq"] = 3
    for offset, event in enumerate(events[:3]):
        aggregate.apply(offset, event)
    first = flush_all(aggregate)
    for scope in (("global", "all"), ("video", "video-a"), ("device", "desktop"), ("rendition", "720p")):
        for granularity in (10, 60):
            assert partial_of(first, scope, granularity, T0)["concurrent"] == 1, (scope, granularity)
    assert partial_of(first, ("global", "all"), 10, T0)["events"] == 3

    # More of its events in the same windows, after a flush and through a checkpoint (the state's JSON).
    state = orjson.loads(first.sessions[SID] or b"")
    stored = {key: orjson.loads(orjson.dumps(partial)) for key, (partial, _) in first.partials.items()}
    restored = PartitionAggregate(0)
    restored.restore({SID: state}, orjson.loads(orjson.dumps(checkpoint_record(first))), None)
    for offset, event in enumerate(events):
        restored.apply(offset, event)
    second = flush_all(restored, stored)
    assert partial_of(second, ("global", "all"), 10, T0)["events"] == 4  # the duplicate is not an event
    assert partial_of(second, ("global", "all"), 10, T0)["concurrent"] == 1
    # Another session in the same window is one more viewer.
    other = numbered(("PLAY_REQUESTED", 2000, {**r720(), "session_id": "sess-2"}))
    restored.apply(len(events), other[0])
    assert partial_of(flush_all(restored), ("global", "all"), 10, T0)["concurrent"] == 2


def test_the_windows_a_session_remembers_stay_bounded() -> None:
    """A session playing for 20 minutes remembers the windows it was counted in only for the last
    COUNTED_RETENTION_MS of its event time, not every window since it started."""
    aggregate = PartitionAggregate(0)
    specs: list[tuple[Any, ...]] = [("PLAY_REQUESTED", 0, r720()), ("FIRST_FRAME", 500)]
    specs += [("HEARTBEAT", 5000 * n, {"playhead_s": 5.0 * n}) for n in range(1, 241)]
    most = 0
    for offset, event in enumerate(numbered(*specs)):
        aggregate.apply(offset, event)
        counted = (aggregate.state(SID) or {})["counted"]
        most = max(most, len(counted))
        newest = to_ms(event["client_ts"])
        assert all(int(key.split("|")[1]) >= newest - COUNTED_RETENTION_MS - 60_000 for key in counted)
    bound = sum(COUNTED_RETENTION_MS // (g * 1000) + 2 for g in GRANULARITIES_S)
    assert most <= bound
    assert to_ms(numbered(*specs)[-1]["client_ts"]) - T0 > 6 * COUNTED_RETENTION_MS


def test_drop_idle_forgets_closed_sessions_with_a_tombstone_in_the_next_checkpoint() -> None:
    """A session that ended stays RETAIN_CLOSED_MS (collector time, the partition's watermark) to recognise its
    late duplicates, then is dropped and the next checkpoint deletes its record; an open one stays."""
    ended = numbered(("PLAY_REQUESTED", 0, r720()), ("FIRST_FRAME", 1000), ("END", 6000, {"playhead_s": 5.0}))
    playing = numbered(
        ("PLAY_REQUESTED", 0, {**r720(), "session_id": "sess-2"}),
        ("FIRST_FRAME", 1000, {"session_id": "sess-2"}),
        *[("HEARTBEAT", 5000 * n, {"session_id": "sess-2", "playhead_s": 5.0 * n}) for n in range(1, 200)],
    )
    events = sorted(ended + playing, key=lambda e: e["received_ts"])
    aggregate = PartitionAggregate(0)
    log = FakeCheckpointLog()
    horizon = T0 + 6000 + 150 + RETAIN_CLOSED_MS  # the ended session's last arrival + RETAIN_CLOSED_MS
    dropped_at = None
    tombstones = 0
    for offset, event in enumerate(events):
        aggregate.apply(offset, event)
        aggregate.drop_idle(0, 0)
        if dropped_at is None and SID not in aggregate.sessions:
            dropped_at = aggregate.watermark_ms
        if offset % 20 == 19:
            flush = flush_all(aggregate)
            for sid, state in flush.sessions.items():
                log.produce(0, SESSION_PREFIX + sid.encode(), state)
            aggregate.checkpointed(flush.offset)
            if SID in flush.sessions and flush.sessions[SID] is None:
                assert dropped_at is not None
                tombstones += 1
    assert dropped_at is not None and horizon < dropped_at <= horizon + 5000
    assert tombstones == 1
    assert "sess-2" in aggregate.sessions
    assert log.latest[0][SESSION_PREFIX + SID.encode()] is None  # the tombstone
    sessions, _, _ = log.read(0)
    assert set(sessions) == {"sess-2"}


def test_a_scope_first_seen_in_a_window_written_since_the_take_up_needs_no_read() -> None:
    """Partials this partition wrote since it was taken up are held in memory until dropped, so a video first
    seen in the current window (after a flush of that window) has no stored partial to read; one restored from a
    checkpoint or dropped from memory may have."""
    aggregate = PartitionAggregate(0)
    first = numbered(("PLAY_REQUESTED", 0, r720()))
    aggregate.apply(0, first[0])
    flush_all(aggregate)
    other = numbered(("PLAY_REQUESTED", 2000, {**r720(), "session_id": "sess-2", "video_id": "video-b"}))
    aggregate.apply(1, other[0])
    assert aggregate.unbased() == []
    flushed = flush_all(aggregate)
    assert ("video", "video-b", 10, T0) in flushed.partials

    # The same window after a restore from that checkpoint: what the previous owner wrote may be stored.
    restored = PartitionAggregate(0)
    restored.restore({}, orjson.loads(orjson.dumps(checkpoint_record(flushed))), None)
    late = numbered(("PLAY_REQUESTED", 3000, {**r720(), "session_id": "sess-3", "video_id": "video-c"}))
    restored.apply(2, late[0])
    assert ("video", "video-c", 10, T0) in restored.unbased()

    # Dropped from memory once final and unchanged: read again if it changes later.
    key = ("video", "video-b", 10, T0)
    aggregate.windows[key].final_written = True
    aggregate.checkpointed(flushed.offset)
    aggregate.drop_idle(now_ms=10**15, final_after_ms=0)
    assert key not in aggregate.windows and aggregate.may_be_stored(key)


def test_a_frozen_session_state_holds_only_its_json() -> None:
    """A session state kept between flushes costs the size of its JSON, not the buffer the encoder grew."""
    aggregate = PartitionAggregate(0)
    events = numbered(("PLAY_REQUESTED", 0, r720()), ("FIRST_FRAME", 1000), ("HEARTBEAT", 5000, {"playhead_s": 4.0}))
    for offset, event in enumerate(events):
        aggregate.apply(offset, event)
    flush_all(aggregate)
    frozen_state = aggregate.sessions[SID]
    assert isinstance(frozen_state, bytes)
    tracemalloc.start()
    try:
        aggregate.apply(3, numbered(*[("HEARTBEAT", 5000 * n, {"playhead_s": 4.0 * n}) for n in range(1, 3)])[1])
        assert isinstance(aggregate.sessions[SID], dict)  # thawed while it moves
        flush_all(aggregate)
        copy = aggregate.sessions[SID]
        assert isinstance(copy, bytes) and len(copy) >= len(frozen_state)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 4 * len(copy) + 4096, (held, len(copy))
