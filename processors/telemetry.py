"""Stage: playback.telemetry → per-view QoE → Cassandra (views, window inputs, windows, watch progress).

    PROCESSOR_ROLE=qoe faust -A processors.app worker

Agent `track_views` keeps each session's state in the Faust table `session_to_state` (RocksDB store,
changelog topic, co-partitioned with `playback.telemetry`, which is keyed by session). Each event goes
through common/qoe/views.py (dedupe on seq, reordering, the view state machine). What the event
produced — closed views, the session's tallies per window — is written to Cassandra *before* the state is
stored, with absolute values under deterministic keys: if the worker dies in between, the replayed events
recompute the same rows (the restored state has not seen them), and if it dies after, the replayed events
are duplicates the state ignores. Either way the rows equal those of a run without the crash.

Views close on END, a fatal error, the next view, or 30 s of inactivity. Inactivity is judged by the
collector's clock (each event's ``received_ts``), not the players': a device whose clock is minutes off would
otherwise see its views closed by other devices' event times on the same partition (or never closed). It is
swept on each event with the partition's newest arrival time, and on a wall-clock timer for partitions that
went quiet; replayed events carry the arrival times they had, so a replay closes views where the run did.
Task `aggregate_windows` recomputes the window rows whose inputs changed, every few seconds; a window is
`final` once it is a minute past its end; inputs that arrive later are counted in `qoe_late_inputs_total`
and still recompute their window.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import faust
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client import Counter, Gauge, Histogram

from common.cassandra import cassandra_session
from common.kafka import admin_client
from common.settings import load_settings
from infra.topics import load_specs
from processors.app import app, topic_name
from processors.dead_letters import decoded
from common.qoe.views import (
    DEFAULT_INACTIVITY_S,
    ViewMetrics,
    apply,
    close,
    drain,
    expires_at,
    from_ms,
    new_session,
    to_ms,
)
from common.qoe.windows import GRANULARITIES_S, activity_scopes
from processors.retry import applied_once, until_applied
from sinks.qoe import QoeStore, split_tally_key, tally_key, window_start_ms

log = logging.getLogger(__name__)

FINAL_AFTER_S = 60.0
# A partition without events for this long (wall clock) is swept by the timer instead of by its stream.
QUIET_AFTER_S = 10.0
AGGREGATE_EVERY_S = 2.0
# A window's row is recomputed from all of its inputs (every view and session row of the window), so a busy
# 1-min window refreshed every 2 s would read its thousands of rows thirty times a minute. While open, a window
# is refreshed at most this often per granularity; its final row is computed once it is final, whatever this says.
REFRESH_EVERY_S = {10: 2.0, 60: 10.0}
RECOMPUTE_BATCH = 32
# At most this many window rows per round: after a restart every window of the last half hour is due, and
# recomputing them all in one go would hold the event stream back for as long (the rest wait a round or more).
RECOMPUTE_PER_ROUND = 96
RECOVERY_HORIZON_MS = 30 * 60 * 1000
# A session's tallies for windows older than this (event time) are dropped from its state.
TALLY_RETENTION_MS = 10 * 60 * 1000

EVENTS_SEEN = Counter("qoe_events_total", "Playback events processed by the QoE agent", ["outcome"])
VIEWS_CLOSED = Counter("qoe_views_closed_total", "Views closed", ["reason"])
LATE_INPUTS = Counter("qoe_late_inputs_total", "Window inputs that arrived after their window was final")
WINDOW_CLOSE_DELAY = Histogram(
    "qoe_window_close_delay_seconds",
    "Wall time from a window's end to its final row",
    buckets=(1, 5, 10, 30, 60, 90, 120, 300),
)
EVENT_FRESHNESS = Histogram(
    "qoe_event_to_cassandra_seconds",
    "From the collector accepting an event to its window inputs being in Cassandra",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
OPEN_SESSIONS = Gauge("qoe_open_sessions", "Sessions with an open view on this worker")
CONSUMER_LAG = Gauge(
    "qoe_consumer_lag_messages",
    "Messages of playback.telemetry not yet processed, per partition this worker has consumed",
    ["partition"],
)
LAG_EVERY_S = 10.0


def telemetry_partitions() -> int:
    name = topic_name("playback.telemetry")
    return next(spec.partitions for spec in load_specs(load_settings()) if spec.name == name)


telemetry_topic = app.topic(topic_name("playback.telemetry"), key_serializer="raw", value_serializer="raw")
session_to_state = app.Table(
    "session-to-state",
    default=None,
    key_type=str,
    partitions=telemetry_partitions(),
)

# In memory only, rebuilt from the table after a restart: when each open session expires, per partition,
# and the newest event time seen per partition (the watermark the sweep uses).
expiry_by_partition: defaultdict[int, dict[str, int]] = defaultdict(dict)
watermark_by_partition: dict[int, int] = {}
last_event_wall_by_partition: dict[int, float] = {}
next_offset_by_partition: dict[int, int] = {}
rebuilt_partitions: set[int] = set()
# The partition whose event the agent is handling right now (its stored states may be about to change).
processing_partition: int | None = None
# Sessions the quiet-partition timer wrote the closing rows of, with the deadline it closed them at: their
# stored state stays open (only the stream changes the table), so this keeps the timer from writing them again.
timer_closed: dict[str, int] = {}
dirty_windows: set[tuple[str, str, int, int]] = set()
pending_final: set[tuple[str, str, int, int]] = set()
last_refresh: dict[tuple[str, str, int, int], float] = {}


@functools.cache
def store() -> QoeStore:
    return QoeStore(cassandra_session(load_settings().cassandra))


@app.agent(telemetry_topic)
async def track_views(stream: faust.StreamT) -> None:
    async for event, value in decoded(app, stream, "PlaybackEvent", "track_views"):
        partition = event.message.partition
        last_event_wall_by_partition[partition] = time.monotonic()
        next_offset_by_partition[partition] = event.message.offset + 1
        if partition not in rebuilt_partitions:
            rebuild_expiry(partition)
        global processing_partition
        processing_partition = partition
        try:
            await track(partition, value)
            await sweep(partition)
        finally:
            processing_partition = None


async def track(partition: int, value: dict[str, Any]) -> None:
    session_id = value["session_id"]
    key = session_id
    state = session_to_state.get(key)
    if state is None:
        state = new_session(session_id)
        state["tallies"] = {}
        state["partition"] = partition
    before = state["counters"]["accepted"]
    try:
        apply(state, value)
    except ValueError as exc:
        EVENTS_SEEN.labels("refused").inc()
        log.warning("event of %s refused: %s", session_id, exc)
        return
    EVENTS_SEEN.labels("accepted" if state["counters"]["accepted"] > before else "duplicate").inc()
    # Every event the session sent counts as a sign of life, as for its event-time clock (views.apply's last_ts),
    # including one that waits in the reorder buffer for its predecessors.
    arrived = arrival_ms(value)
    state["last_arrival_ms"] = max(state.get("last_arrival_ms") or 0, arrived)
    watermark_by_partition[partition] = max(watermark_by_partition.get(partition, arrived), arrived)
    # The resume position is a row of its own (the newest playhead wins by cell timestamp), so it is written
    # alongside the state's rows rather than after them: one round trip per event, not two.
    progress = functools.partial(record_progress, value)
    await asyncio.gather(persist(key, state), until_applied(progress, f"progress of session {key}"))
    received = value.get("received_ts")
    if received is not None:
        EVENT_FRESHNESS.observe(max(0.0, time.time() - received.timestamp()))
    deadline = session_deadline(state)
    expiries = expiry_by_partition[partition]
    if deadline is None:
        expiries.pop(session_id, None)
    else:
        expiries[session_id] = deadline
    OPEN_SESSIONS.set(sum(len(e) for e in expiry_by_partition.values()))


async def persist(key: str, state: dict[str, Any], closed: ViewMetrics | None = None) -> None:
    """Write what the state produced, then store the state (see the module docstring for why this order)."""
    produced = take_produced(state, closed)
    await until_applied(functools.partial(write_produced, produced), f"QoE rows of session {state['session_id']}")
    session_to_state[key] = state


@dataclass(frozen=True)
class Produced:
    """What one step of a session produced: closed views and the session's tallies it changed."""

    session_id: str
    views: list[ViewMetrics]
    tallies: dict[str, list[int]]
    created: frozenset[str]  # the tally keys new to the session (their windows are not in the index yet)


def take_produced(state: dict[str, Any], closed: ViewMetrics | None = None) -> Produced:
    """Drain the state's outbox (plus ``closed``, a view the caller closed) into the rows to write."""
    drained = drain(state)
    touched, created = update_tallies(state, drained.activity)
    views = [*drained.views, *([closed] if closed is not None else [])]
    tallies = {k: list(state["tallies"][k]) for k in touched}
    return Produced(state["session_id"], views, tallies, frozenset(created))


async def write_produced(produced: Produced) -> None:
    """Write the rows (idempotent: absolute values under deterministic keys), then mark their windows dirty."""
    # The rows are independent of one another; only the state must wait for all of them.
    writes = [store().write_view(metrics) for metrics in produced.views]
    if produced.tallies:
        indexed = set(produced.tallies) - produced.created
        writes.append(store().write_session_tallies(produced.session_id, produced.tallies, indexed=indexed))
    await asyncio.gather(*writes)
    for metrics in produced.views:
        view_closed(metrics)
    # Dirty only once the inputs are in Cassandra: a recompute that ran between marking and writing would read
    # the old inputs and clear the mark, leaving the window one event short until something else touched it.
    for key in produced.tallies:
        scope_kind, scope_id, granularity, start_ms = split_tally_key(key)
        mark_dirty((scope_kind, scope_id), granularity, start_ms)


def view_closed(metrics: ViewMetrics) -> None:
    """A view's row is in Cassandra: count it and mark the windows it closed in."""
    VIEWS_CLOSED.labels(metrics.close_reason).inc()
    scopes = {
        ("video", metrics.video_id or "unknown"),
        ("device", metrics.device_class or "unknown"),
        ("global", "all"),
    }
    scopes |= {("rendition", name) for name in metrics.by_rendition} | {
        ("rendition", metrics.initial_rendition or "unknown")
    }
    for scope in scopes:
        for granularity in GRANULARITIES_S:
            mark_dirty(scope, granularity, window_start_ms(metrics.close_ts_ms, granularity))


def update_tallies(state: dict[str, Any], activity: list[Any]) -> tuple[set[str], set[str]]:
    """Add each accepted event to the session's own counts per (scope, window); returns the keys touched and,
    of those, the ones this session had no count for before."""
    tallies: dict[str, list[int]] = state.setdefault("tallies", {})
    touched: set[str] = set()
    created: set[str] = set()
    for record in activity:
        ts = int(record["ts_ms"])
        for scope in activity_scopes(record):
            for granularity in GRANULARITIES_S:
                start = window_start_ms(ts, granularity)
                key = tally_key(scope, granularity, start)
                if key not in tallies:
                    created.add(key)
                counts = tallies.setdefault(key, [0, 0, 0])
                counts[0] += 1
                counts[1] += int(record.get("bytes") or 0)
                counts[2] += int(bool(record.get("starts_view")))
                touched.add(key)
    if activity:
        horizon = max(int(r["ts_ms"]) for r in activity) - TALLY_RETENTION_MS
        for key in [k for k in tallies if split_tally_key(k)[3] < horizon]:
            del tallies[key]
    return touched, created


def final_at_ms(granularity_s: int, start_ms: int) -> int:
    """When a window's row becomes final: FINAL_AFTER_S past its end."""
    return start_ms + granularity_s * 1000 + int(FINAL_AFTER_S * 1000)


def mark_dirty(scope: tuple[str, str], granularity: int, start_ms: int) -> None:
    window = (scope[0], scope[1], granularity, start_ms)
    if time.time() * 1000 > final_at_ms(granularity, start_ms):
        LATE_INPUTS.inc()
    dirty_windows.add(window)


async def record_progress(value: dict[str, Any]) -> None:
    """Resume position: the latest playhead per (profile or user, video), from heartbeats and ends."""
    viewer = value.get("profile_id") or value.get("user_id")
    if viewer and value.get("video_id") and value.get("playhead_s") is not None:
        await store().write_progress(viewer, value["video_id"], value["playhead_s"], value["client_ts"])


def arrival_ms(value: dict[str, Any]) -> int:
    """When the collector received the event (its clock); the player's time for events produced without one."""
    received = value.get("received_ts")
    return to_ms(received) if received is not None else to_ms(value["client_ts"])


def session_deadline(state: dict[str, Any]) -> int | None:
    """Collector time at which the session's open view expires (None when nothing is open)."""
    if expires_at(state) is None:
        return None
    last_arrival = state.get("last_arrival_ms") or state["last_ts"]
    return int(last_arrival + DEFAULT_INACTIVITY_S * 1000)


def rebuild_expiry(partition: int) -> None:
    """After a (re)start, find this partition's open sessions in the restored table."""
    rebuilt_partitions.add(partition)
    for _key, state in session_to_state.items():
        if (
            state
            and state.get("partition", partition) == partition
            and (deadline := session_deadline(state)) is not None
        ):
            expiry_by_partition[partition][state["session_id"]] = deadline


async def sweep(partition: int) -> None:
    """Close the partition's sessions that were quiet for the inactivity timeout (by arrival time)."""
    watermark = watermark_by_partition.get(partition)
    expiries = expiry_by_partition[partition]
    if watermark is None:
        return
    for session_id in [sid for sid, deadline in expiries.items() if deadline <= watermark]:
        key = session_id
        state = session_to_state.get(key)
        expiries.pop(session_id, None)
        if state is None or (deadline := session_deadline(state)) is None or deadline > watermark:
            continue
        await persist(key, state, close(state, "inactive"))
        timer_closed.pop(session_id, None)


@app.timer(interval=5.0)
async def close_quiet_sessions() -> None:
    """Partitions that went quiet get no events to sweep them: write the rows their expired sessions' closes
    produce (views and tallies, from a copy of each state: the table is only changed inside the stream). They
    are the rows the stream writes when it sweeps the same state later, so whichever comes first, or both,
    leave the same rows; the expiry stays until the stream has swept it."""
    now_ms = int(time.time() * 1000)
    quiet = [
        partition
        for partition, expiries in expiry_by_partition.items()
        if expiries and time.monotonic() - last_event_wall_by_partition.get(partition, 0.0) >= QUIET_AFTER_S
    ]
    if not quiet:
        return
    # Quiet only counts when the partition is caught up: a partition whose events wait behind others in the
    # fetch queue is not idle, and closing its sessions would cut views short.
    try:
        end_offsets = await asyncio.to_thread(latest_offsets, quiet)
    except KafkaException as exc:  # a broker away for a moment: the sessions are still expired at the next tick
        log.warning("quiet sessions not closed: %s", exc)
        return
    for partition in quiet:
        # The agent may have taken this partition up while the offsets were queried: its states are its own then.
        busy = partition == processing_partition
        if busy or next_offset_by_partition.get(partition, 0) < end_offsets.get(partition, 0):
            continue
        watermark = max(watermark_by_partition.get(partition, 0), now_ms - int(QUIET_AFTER_S * 1000))
        for session_id, deadline in list(expiry_by_partition[partition].items()):
            if deadline > watermark or timer_closed.get(session_id) == deadline:
                continue
            state = session_to_state.get(session_id)
            if state is None:
                continue
            copy = json.loads(json.dumps(state))
            closing = functools.partial(write_produced, take_produced(copy, close(copy, "inactive")))
            if not await applied_once(closing, f"closing the quiet session {session_id}"):
                return  # still expired at the next tick, so tried again then
            timer_closed[session_id] = deadline


@app.timer(interval=LAG_EVERY_S)
async def report_consumer_lag() -> None:
    """End offset minus the next offset to process, per partition (Kafka's own lag, from this worker's view)."""
    partitions = sorted(next_offset_by_partition)
    if not partitions:
        return
    try:
        end_offsets = await asyncio.to_thread(latest_offsets, partitions)
    except KafkaException as exc:  # a broker away for a moment must not stop the worker over a gauge
        log.warning("consumer lag not measured: %s", exc)
        return
    for partition in partitions:
        lag = end_offsets.get(partition, 0) - next_offset_by_partition[partition]
        CONSUMER_LAG.labels(str(partition)).set(max(0, lag))


def latest_offsets(partitions: list[int]) -> dict[int, int]:
    topic = telemetry_topic.get_topic_name()
    requests = {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}
    return {tp.partition: future.result(30).offset for tp, future in offsets_admin().list_offsets(requests).items()}


@functools.cache
def offsets_admin() -> AdminClient:
    """One admin client for the offset queries of the timers (not a new connection every few seconds)."""
    return admin_client()


@app.timer(interval=AGGREGATE_EVERY_S)
async def aggregate_windows() -> None:
    """Recompute the window rows whose inputs changed, and once more when they become final."""
    now_ms = int(time.time() * 1000)
    now_wall = time.monotonic()
    due = {
        w
        for w in dirty_windows
        if now_wall - last_refresh.get(w, -math.inf) >= REFRESH_EVERY_S.get(w[2], AGGREGATE_EVERY_S)
        or now_ms >= final_at_ms(w[2], w[3])
    }
    dirty_windows.difference_update(due)  # the others stay dirty for a later round
    for window in list(pending_final):
        if now_ms >= final_at_ms(window[2], window[3]):
            due.add(window)
    ordered = sorted(due, key=lambda w: w[3])
    # Oldest first; what does not fit this round stays dirty (a window due to become final also stays in
    # pending_final until its final row is written).
    dirty_windows.update(ordered[RECOMPUTE_PER_ROUND:])
    ordered = ordered[:RECOMPUTE_PER_ROUND]
    for first in range(0, len(ordered), RECOMPUTE_BATCH):
        await asyncio.gather(*(recompute(window, now_ms) for window in ordered[first : first + RECOMPUTE_BATCH]))


async def recompute(window: tuple[str, str, int, int], now_ms: int) -> None:
    scope_kind, scope_id, granularity, start_ms = window
    end_ms = start_ms + granularity * 1000
    final = now_ms >= final_at_ms(granularity, start_ms)
    last_refresh[window] = time.monotonic()
    computing = functools.partial(
        store().recompute_window, (scope_kind, scope_id), granularity, from_ms(start_ms), final
    )
    if not await applied_once(computing, f"recomputing window {window}"):
        # Cassandra away for a moment: the window stays due and is recomputed in a later round.
        dirty_windows.add(window)
        last_refresh.pop(window, None)
        return
    if final:
        last_refresh.pop(window, None)
        if window in pending_final:
            WINDOW_CLOSE_DELAY.observe((now_ms - end_ms) / 1000)
        pending_final.discard(window)
    else:
        pending_final.add(window)


@app.task
async def recompute_recent_windows() -> None:
    """After a (re)start, recompute every window of the last RECOVERY_HORIZON: inputs a previous worker wrote
    just before it died may not have been aggregated, and the replayed events are duplicates that dirty
    nothing."""
    now_ms = int(time.time() * 1000)
    for granularity in GRANULARITIES_S:
        g = granularity * 1000
        start = now_ms - RECOVERY_HORIZON_MS
        for start_ms in range(start - start % g, now_ms, g):
            read = functools.partial(store().scopes_in_window, granularity, from_ms(start_ms))
            for scope in await until_applied(read, f"window index of {start_ms}", kind="read"):
                dirty_windows.add((scope[0], scope[1], granularity, start_ms))
