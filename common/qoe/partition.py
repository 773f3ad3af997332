"""One Kafka partition's QoE aggregation, in memory: its sessions, its share of every window, and what the next
flush writes. Pure: no Kafka, no Cassandra, no clock (the caller passes offsets and times).

    aggregate = PartitionAggregate(partition)
    aggregate.apply(offset, event)          # per PlaybackEvent of playback.telemetry, in offset order
    aggregate.close_quiet(now_ms)           # a partition without events: close its expired sessions anyway
    flush = aggregate.take_flush(now_ms=...)   # a snapshot of what changed, as of flush.offset

How the work is split (the way Kafka Streams' record caches and Flink's mini-batches do it): each event is
applied to its session's state (common/qoe/views.py) and what the session produced — the event's activity and
any view it closed — is added at once to this partition's *partial* of each window it falls in (integer sums
and a mergeable sketch, common/qoe/windows.py). Nothing is written per event: a flush takes the partials,
closed views, resume positions and session states that changed since the last one, as of one offset.

Exactness under replay. Everything written carries the offset it includes: a partial "includes every event
below `tag`", a session state "includes every event below `included`", and the checkpoint "every event below
`offset`" (the consumer offset committed after it). After a crash the worker restores the last checkpoint and
Kafka redelivers from the committed offset, so some events come again whose effects are already stored:

* events below the checkpoint offset are skipped outright; a session whose state was written by a checkpoint
  that did not complete skips the events below its own `included`;
* the partials the interrupted flush may have written are named, before any was written, in its manifest
  (``Flush.manifest``); the restore loads them with their tags (``preload``), and an event's contribution to
  such a window is added only if the partial does not already hold it (its offset is not below the tag).

Inactivity (30 s, views.py) is judged by the collector's clock: ``received_ts`` of the partition's events
(a watermark: the largest seen), swept *before* the event that moved it is applied, so a session that comes
back after a gap finds its view closed, as a replay does. A partition that goes quiet gets no events to move its
watermark; ``close_quiet`` closes its expired sessions by the caller's wall clock, changes the real states
(not copies) and records which sessions it closed at which offset, so that a replay of the same stretch closes
the same sessions at the same place (``Flush.manifest["timer_closes"]``).

Positions: an event at offset e is at position (2e + 1, 0); a quiet close made when every event below N was
applied is at (2N, r), r numbering the rounds of quiet closes at N. A partial tagged N holds every position below
(2N, R), R stamped in it as ``tag_rounds``: the rounds at N made before its snapshot. (The offset alone cannot say
it: on a quiet partition the flush at N comes first, the timer closes sessions at N seconds later, in rounds
with flushes in between, so partials tagged N exist both without and with a close at N. With positions of 2N
only, a restore took an older partial tagged N for one holding the closes the manifest names at N, and a crash
right after that manifest lost their views from the windows.)
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from common.qoe.views import (
    DEFAULT_INACTIVITY_S,
    SessionState,
    ViewMetrics,
    apply,
    close,
    drain,
    expires_at,
    new_session,
    to_ms,
)
from common.qoe.windows import (
    GRANULARITIES_S,
    activity_scopes,
    add_view_part,
    merge_partial,
    new_partial,
    view_contributions,
)

INACTIVITY_MS: Final = int(DEFAULT_INACTIVITY_S * 1000)
# A session remembers which windows it was counted in (concurrent viewers = distinct sessions) for windows
# this close to its newest event time; a session whose clock jumps back further than this is counted again.
COUNTED_RETENTION_MS: Final = 3 * 60 * 1000
# A closed session's state stays this long (collector time) so that its late duplicates are recognised.
RETAIN_CLOSED_MS: Final = 10 * 60 * 1000

# The keys of a partition's records on the checkpoint topic (processors/telemetry.py writes and reads them).
CHECKPOINT_KEY: Final = b"c:checkpoint"
MANIFEST_KEY: Final = b"c:flush"
SESSION_PREFIX: Final = b"s:"

WindowKey = tuple[str, str, int, int]  # scope, scope_id, granularity_s, window start (epoch ms)
Position = tuple[int, int]  # (2 x offset + 1, 0) for an event; (2 x offset, round) for a quiet close
TimerClose = tuple[int, list[str], int]  # offset, sessions, round
# In a partial as flushed: the quiet-close rounds at its tag's offset it holds (see "Positions").
TAG_ROUNDS: Final = "tag_rounds"


def arrival_ms(event: dict[str, Any]) -> int:
    """When the collector received the event (its clock); the player's time for events produced without one."""
    received = event.get("received_ts")
    return to_ms(received) if received is not None else to_ms(event["client_ts"])


def session_deadline(state: SessionState) -> int | None:
    """Collector time at which the session's open view (or its buffered events) expires; None when nothing is open."""
    if expires_at(state) is None:
        return None
    last_arrival = state.get("last_arrival_ms") or state["last_ts"]
    return int(last_arrival + INACTIVITY_MS)


@dataclass
class WindowSlot:
    """This partition's partial of one window, and what is known of its stored row."""

    partial: dict[str, Any] = field(default_factory=new_partial)
    # The stored partial was read and added in (or it was created by a restore that read it): until then the
    # slot holds only what was added since this worker took the partition up.
    based: bool = False
    # Contributions at positions below (2 x floor, floor_rounds) are in the partial already (a flush that a crash
    # interrupted).
    floor: int = -1
    floor_rounds: int = 0
    # Wall time (ms) of the last change; a slot long final and unchanged is dropped from memory.
    changed_ms: int = 0
    final_written: bool = False

    def holds(self, position: Position) -> bool:
        """The preloaded partial holds the contribution at ``position`` already."""
        return position < (2 * self.floor, self.floor_rounds)


@dataclass
class Flush:
    """A snapshot of one partition's changes as of ``offset`` (every event below it applied)."""

    partition: int
    offset: int
    # window -> (its partial, the offset it includes); the partial is the live object: serialise it before the
    # next event is applied
    partials: dict[WindowKey, tuple[dict[str, Any], int]]
    views: list[ViewMetrics]
    progress: dict[tuple[str, str], tuple[float, int]]  # (viewer, video) -> (position s, client time ms)
    received_s: list[float]  # collector times of the events this flush makes durable (freshness)
    manifest: dict[str, Any]  # written ahead of the partials: what a restore must preload
    sessions: dict[str, bytes | None]  # JSON of each changed state; None: the session was dropped
    watermark_ms: int | None


class PartitionAggregate:
    def __init__(self, partition: int) -> None:
        self.partition = partition
        # A session's state is a dict while it changes and its JSON (bytes) once a checkpoint took it: most
        # sessions are idle between two of their beacons, and the JSON is a third of the dict's memory (100,000
        # open sessions in well under 1 GiB). ``state()`` turns it back into a dict when the session moves again.
        self.sessions: dict[str, SessionState | bytes] = {}
        # Per session, what the sweep and drop_idle need without decoding it: the collector time its open view
        # expires at (absent when nothing is open) and its last arrival.
        self._deadline_of: dict[str, int] = {}
        self._last_arrival: dict[str, int] = {}
        self.watermark_ms: int | None = None
        self.next_offset = 0
        # Offsets below this are in the restored checkpoint.
        self.resume_offset = 0
        self.checkpoint_offset = 0
        self.windows: dict[WindowKey, WindowSlot] = {}
        # Per granularity, the latest window start of any partial ever written for this partition (checkpointed,
        # for the next owner).
        self.written_upto: dict[int, int] = {}
        # Per granularity, the latest window start that may have a stored partial this aggregate does not hold:
        # what was written before the restore, and windows dropped from memory. A window starting later is in
        # ``windows`` if this partition ever wrote it, so a new one needs no read, whatever its scope — in the
        # current window, a video or device seen for the first time included.
        self.stored_upto: dict[int, int] = {}
        self.counters: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self._deadlines: list[tuple[int, str]] = []  # heap; an entry is current when it equals the session's deadline
        self._deferred: list[tuple[int, str]] = []  # expiries of sessions whose state is ahead of the replay
        self._dirty_windows: set[WindowKey] = set()
        self._dirty_sessions: set[str] = set()
        self._dropped_sessions: set[str] = set()
        self._views: list[ViewMetrics] = []
        self._progress: dict[tuple[str, str], tuple[float, int]] = {}
        self._received: list[float] = []
        # Since the last checkpoint: the windows flushed (a restore preloads them) and the quiet closes made.
        self._flushed_since_checkpoint: set[WindowKey] = set()
        self._timer_closes: list[TimerClose] = []
        # From a restored manifest: quiet closes to make again at the same positions.
        self._replay_closes: list[TimerClose] = []
        # The quiet-close rounds made at one offset (offset, count); the rounds restored partials hold, per tag;
        # how many of _timer_closes the last snapshot included (its session states hold them).
        self._rounds: tuple[int, int] = (-1, 0)
        self._preloaded_rounds: dict[int, int] = {}
        self._closes_in_snapshot = 0
        self._snapshot_position: Position = (0, 0)  # the last snapshot holds the positions below this

    # --- events -----------------------------------------------------------------------------------

    def apply(self, offset: int, event: dict[str, Any]) -> str:
        """Apply one event at ``offset``; returns accepted, duplicate, refused or replayed (already stored).
        Raises ValueError (nothing changed) for an event the state machine refuses."""
        if offset < self.resume_offset:
            self.counters["replayed"] += 1
            return "replayed"
        self.next_offset = max(self.next_offset, offset + 1)
        position = (2 * offset + 1, 0)
        if self._replay_closes:
            self._make_replay_closes(offset)
        arrived = arrival_ms(event)
        if self.watermark_ms is None or arrived > self.watermark_ms:
            self.watermark_ms = arrived
            self._sweep(arrived, offset, position)
        session_id = event["session_id"]
        state = self.state(session_id)
        if state is not None and offset < state.get("included", 0):
            self.counters["replayed"] += 1
            return "replayed"
        fresh = state is None
        if state is None:
            state = new_session(session_id)
            state["counted"] = {}
        accepted_before = state["counters"]["accepted"]
        apply(state, event)  # ValueError before any change: the event is refused, the state untouched
        if fresh:
            self.sessions[session_id] = state
        self._dropped_sessions.discard(session_id)
        outcome = "accepted" if state["counters"]["accepted"] > accepted_before else "duplicate"
        self.counters[outcome] += 1
        # Every event the session sent is a sign of life, one waiting in the reorder buffer included.
        state["last_arrival_ms"] = max(state.get("last_arrival_ms") or 0, arrived)
        self._take(state, position)
        self._schedule(state)
        self._dirty_sessions.add(session_id)
        self._note_progress(event)
        received = event.get("received_ts")
        if received is not None:
            self._received.append(received.timestamp())
        return outcome

    def close_quiet(self, now_ms: int, quiet_ms: int) -> list[str]:
        """Close the sessions expired by ``now_ms - quiet_ms`` (the caller's wall clock, for a partition that
        went quiet and is caught up: no event will move its watermark); returns their ids."""
        if self._replay_closes:
            self._make_replay_closes(self.next_offset)
        horizon = max(self.watermark_ms or 0, now_ms - quiet_ms)
        offset = self.next_offset
        round_ = self._next_round(offset)
        closed = self._sweep(horizon, offset, (2 * offset, round_))
        if closed:
            self._timer_closes.append((offset, closed, round_))
            self._rounds = (offset, round_ + 1)
        return closed

    def _next_round(self, offset: int) -> int:
        """The number of the next round of quiet closes at ``offset``: after those made, and after those any
        restored partial holds (a new close is in no stored partial)."""
        made = self._rounds[1] if self._rounds[0] == offset else 0
        return max(made, self._preloaded_rounds.get(offset, 0))

    def _make_replay_closes(self, offset: int) -> None:
        while self._replay_closes and self._replay_closes[0][0] <= offset:
            at, session_ids, round_ = self._replay_closes.pop(0)
            for session_id in session_ids:
                state = self.state(session_id)
                if state is not None and state.get("included", 0) <= at:
                    self._close(state, (2 * at, round_))
            # Made again, it is a quiet close of this run: the next manifests name it until a checkpoint holds it
            # (a partial flushed from now on may hold it).
            self._timer_closes.append((at, session_ids, round_))
            self._rounds = (at, max(round_ + 1, self._rounds[1] if self._rounds[0] == at else 0))

    def _sweep(self, horizon_ms: int, offset: int, position: Position) -> list[str]:
        """Close the sessions whose deadline is at or before ``horizon_ms`` (collector time)."""
        closed = []
        if self._deferred and offset >= 0:
            for deadline, session_id in self._deferred:
                heapq.heappush(self._deadlines, (deadline, session_id))
            self._deferred = []
        heap = self._deadlines
        while heap and heap[0][0] <= horizon_ms:
            deadline, session_id = heapq.heappop(heap)
            if self._deadline_of.get(session_id) != deadline:
                continue  # a stale entry: the session moved on since
            state = self.state(session_id)
            if state is None:
                continue
            if offset < state.get("included", 0):
                # The restored state is ahead of the replay; it expires again once the replay reaches it.
                self._deferred.append((deadline, session_id))
                continue
            self._close(state, position)
            closed.append(session_id)
        return closed

    def _close(self, state: SessionState, position: Position) -> None:
        metrics = close(state, "inactive")
        self._take(state, position, metrics)
        self._schedule(state)
        self._dirty_sessions.add(state["session_id"])

    def state(self, session_id: str) -> SessionState | None:
        """The session's state as a dict (decoded if a checkpoint had frozen it), or None."""
        value = self.sessions.get(session_id)
        if isinstance(value, bytes):
            value = self.sessions[session_id] = orjson.loads(value)
        return value

    def _schedule(self, state: SessionState) -> None:
        session_id = state["session_id"]
        self._last_arrival[session_id] = state.get("last_arrival_ms") or 0
        deadline = session_deadline(state)
        if deadline is None:
            self._deadline_of.pop(session_id, None)
        elif self._deadline_of.get(session_id) != deadline:
            self._deadline_of[session_id] = deadline
            heapq.heappush(self._deadlines, (deadline, session_id))

    def _take(self, state: SessionState, position: Position, closed: ViewMetrics | None = None) -> None:
        """Add what the session's state produced to this partition's window partials."""
        drained = drain(state)
        for record in drained.activity:
            self._count_activity(state, record, position)
        for metrics in [*drained.views, *([closed] if closed is not None else [])]:
            self._count_view(metrics, position)
            self._views.append(metrics)
            self.closed[metrics.close_reason] += 1

    def _slot(self, key: WindowKey) -> WindowSlot:
        slot = self.windows.get(key)
        if slot is None:
            slot = self.windows[key] = WindowSlot(based=not self.may_be_stored(key))
        self._dirty_windows.add(key)
        return slot

    def _count_activity(self, state: SessionState, record: Mapping[str, Any], position: Position) -> None:
        ts = int(record["ts_ms"])
        counted: dict[str, list[str]] = state["counted"]
        nbytes = int(record.get("bytes") or 0)
        starts = int(bool(record.get("starts_view")))
        for granularity in GRANULARITIES_S:
            start = ts - ts % (granularity * 1000)
            seen_key = f"{granularity}|{start}"
            seen = counted.get(seen_key)
            if seen is None:
                seen = counted[seen_key] = []
                self._forget_old_windows(counted, ts)
            for scope in activity_scopes(record):
                scope_key = f"{scope[0]}|{scope[1]}"
                first_time = scope_key not in seen
                if first_time:
                    seen.append(scope_key)
                slot = self._slot((scope[0], scope[1], granularity, start))
                if slot.holds(position):
                    continue  # the interrupted flush wrote it already
                partial = slot.partial
                partial["events"] += 1
                partial["bytes"] += nbytes
                partial["views_started"] += starts
                partial["concurrent"] += first_time

    @staticmethod
    def _forget_old_windows(counted: dict[str, list[str]], ts: int) -> None:
        horizon = ts - COUNTED_RETENTION_MS
        for key in [k for k in counted if int(k.split("|", 1)[1]) < horizon]:
            del counted[key]

    def _count_view(self, metrics: ViewMetrics, position: Position) -> None:
        ts = metrics.close_ts_ms
        for scope, part in view_contributions(metrics):
            for granularity in GRANULARITIES_S:
                slot = self._slot((scope[0], scope[1], granularity, ts - ts % (granularity * 1000)))
                if not slot.holds(position):
                    add_view_part(slot.partial, part)

    def _note_progress(self, event: dict[str, Any]) -> None:
        viewer = event.get("profile_id") or event.get("user_id")
        if viewer and event.get("video_id") and event.get("playhead_s") is not None:
            at = to_ms(event["client_ts"])
            key = (viewer, event["video_id"])
            if key not in self._progress or self._progress[key][1] <= at:
                self._progress[key] = (float(event["playhead_s"]), at)

    # --- flushes and checkpoints ------------------------------------------------------------------

    def may_be_stored(self, key: WindowKey) -> bool:
        """A partial of ``key`` for this partition may be stored without being held in ``windows``."""
        return key[3] <= self.stored_upto.get(key[2], -1)

    def unbased(self) -> list[WindowKey]:
        """Changed windows whose stored partial has not been read yet (a flush adds it in first)."""
        return [key for key in self._dirty_windows if not self.windows[key].based]

    def add_base(self, key: WindowKey, stored: dict[str, Any] | None) -> None:
        """Add the stored partial of a window to what this worker counted since (both are sums)."""
        slot = self.windows[key]
        if slot.based:
            return
        if stored is not None:
            slot.partial = merge_partial(stored, slot.partial)
        slot.based = True

    def preload(self, key: WindowKey, stored: dict[str, Any], tag: int) -> None:
        """A window the interrupted flush may have written: its stored partial holds the positions below
        (2 x tag, its tag_rounds)."""
        rounds = int(stored.get(TAG_ROUNDS, 0))
        self.windows[key] = WindowSlot(partial=stored, based=True, floor=tag, floor_rounds=rounds)
        self._preloaded_rounds[tag] = max(self._preloaded_rounds.get(tag, 0), rounds)
        self._dirty_windows.add(key)  # its merged row is written again at the next flush

    def pending(self) -> bool:
        return bool(self._dirty_windows or self._views or self._dirty_sessions or self._progress)

    def take_flush(self, *, now_ms: int) -> Flush:
        """What changed, as of ``self.next_offset``; every changed window must be based (see ``unbased``)."""
        if self.unbased():
            raise RuntimeError("add the stored partials of the changed windows first")
        offset = self.next_offset
        made = self._rounds[1] if self._rounds[0] == offset else 0
        partials = {}
        for key in self._dirty_windows:
            slot = self.windows[key]
            slot.changed_ms = now_ms
            # A preloaded partial may hold more than the replay has reached: its tag never goes back.
            partials[key] = (slot.partial, max(offset, slot.floor))
            if slot.floor > offset:
                slot.partial[TAG_ROUNDS] = slot.floor_rounds
            else:
                slot.partial[TAG_ROUNDS] = max(made, slot.floor_rounds if slot.floor == offset else 0)
        self._flushed_since_checkpoint |= self._dirty_windows
        for _scope, _scope_id, granularity, start in self._dirty_windows:
            self.written_upto[granularity] = max(self.written_upto.get(granularity, start), start)
        manifest = {
            "offset": offset,
            "checkpoint": self.checkpoint_offset,
            "written_upto": {str(g): start for g, start in self.written_upto.items()},
            "windows": sorted(self._flushed_since_checkpoint),
            # The closes since the checkpoint, and those a restore named that are not made again yet.
            "timer_closes": sorted([*self._timer_closes, *self._replay_closes], key=lambda c: (c[0], c[2])),
        }
        self._closes_in_snapshot = len(self._timer_closes)
        self._snapshot_position = (2 * offset, made)
        sessions: dict[str, bytes | None] = {}
        for session_id in self._dirty_sessions:
            state = self.state(session_id)
            if state is not None:
                state["included"] = offset
                # Frozen until the session moves again (see ``sessions``): the checkpoint's own record.
                sessions[session_id] = self.sessions[session_id] = frozen(state)
        for session_id in self._dropped_sessions:
            sessions[session_id] = None
        self._dirty_sessions = set()
        self._dropped_sessions = set()
        flush = Flush(
            partition=self.partition,
            offset=offset,
            partials=partials,
            views=self._views,
            progress=self._progress,
            received_s=self._received,
            manifest=manifest,
            sessions=sessions,
            watermark_ms=self.watermark_ms,
        )
        self._dirty_windows = set()
        self._views = []
        self._progress = {}
        self._received = []
        return flush

    def checkpointed(self, offset: int) -> None:
        """The checkpoint at ``offset`` is durable: the next manifest starts afresh from it."""
        self.checkpoint_offset = offset
        # A preloaded partial holding more than the checkpoint (a replay that has not reached the interrupted
        # flush yet, then another checkpoint) must be preloaded by a restore from this checkpoint too: read as a
        # base instead, its positions from the checkpoint to its floor were counted twice. Named by the next
        # manifests until a checkpoint passes its floor, and flushed again so that the next flush has a manifest.
        held = {
            key
            for key in self._flushed_since_checkpoint
            if (slot := self.windows.get(key)) is not None and slot.holds(self._snapshot_position)
        }
        self._flushed_since_checkpoint = held
        self._dirty_windows |= held
        # The quiet closes the snapshot included are in its session states. Not those made since, at the same
        # offset maybe: the timer may close sessions while the flush writes (kept by offset, they were lost).
        del self._timer_closes[: self._closes_in_snapshot]
        self._closes_in_snapshot = 0

    def drop_idle(self, now_ms: int, final_after_ms: int) -> None:
        """Forget what no longer changes: sessions closed RETAIN_CLOSED_MS ago (collector time) and windows
        whose final row is written and which have not changed since."""
        if self.watermark_ms is not None:
            horizon = self.watermark_ms - RETAIN_CLOSED_MS
            for session_id, last_arrival in list(self._last_arrival.items()):
                if session_id not in self._deadline_of and last_arrival < horizon:
                    del self.sessions[session_id]
                    del self._last_arrival[session_id]
                    self._dirty_sessions.discard(session_id)
                    self._dropped_sessions.add(session_id)
        for key, slot in list(self.windows.items()):
            if (
                slot.final_written
                and key not in self._dirty_windows
                and key not in self._flushed_since_checkpoint
                and now_ms - slot.changed_ms > final_after_ms
            ):
                del self.windows[key]
                self.stored_upto[key[2]] = max(self.stored_upto.get(key[2], key[3]), key[3])

    # --- restore ----------------------------------------------------------------------------------

    def restore(
        self,
        sessions: Mapping[str, SessionState | bytes],
        checkpoint: dict[str, Any] | None,
        manifest: dict[str, Any] | None,
    ) -> list[WindowKey]:
        """Take up a checkpoint (session states as dicts or as their JSON, which stays frozen until the session
        moves); returns the windows to preload (those the interrupted flush may have written)."""
        self.sessions = dict(sessions)
        for value in sessions.values():
            self._schedule(orjson.loads(value) if isinstance(value, bytes) else value)
        for record in (checkpoint, manifest):
            # The manifest is written ahead of its flush's partials: it may name later windows than the checkpoint.
            for granularity, start in ((record or {}).get("written_upto") or {}).items():
                self.written_upto[int(granularity)] = max(self.written_upto.get(int(granularity), start), start)
        self.stored_upto = dict(self.written_upto)
        if checkpoint is not None:
            self.resume_offset = self.next_offset = self.checkpoint_offset = int(checkpoint["offset"])
            self.watermark_ms = checkpoint.get("watermark_ms")
        # The manifest of a flush after the checkpoint; or the one of the flush that wrote it, which names the
        # windows whose partials hold more than it (a replay that had not reached an earlier interrupted flush).
        if manifest is None or self.checkpoint_offset not in (int(manifest["checkpoint"]), int(manifest["offset"])):
            return []
        self._replay_closes = sorted(
            ((int(c[0]), list(c[1]), int(c[2]) if len(c) > 2 else 0) for c in manifest.get("timer_closes", [])),
            key=lambda c: (c[0], c[2]),
        )
        return [(str(k[0]), str(k[1]), int(k[2]), int(k[3])) for k in manifest.get("windows", [])]


def frozen(state: SessionState) -> bytes:
    """The state's JSON in a bytes object of its own size. orjson writes into a buffer it grows in large steps
    and hands that allocation over as the bytes object: held for 100,000 sessions, a 1.7 KB state kept ~16 KB of
    heap each (1 GiB of RSS); the copy keeps what the JSON needs."""
    return bytes(memoryview(orjson.dumps(state)))


def checkpoint_from_records(
    latest: Mapping[bytes, bytes | None],
) -> tuple[dict[str, bytes], dict[str, Any] | None, dict[str, Any] | None]:
    """Session states, the checkpoint and the manifest, from the latest record of each key of a partition.
    The states stay JSON: the aggregate decodes a session when it moves (common/qoe/partition.py)."""
    sessions = {
        key[len(SESSION_PREFIX) :].decode(): value
        for key, value in latest.items()
        if key.startswith(SESSION_PREFIX) and value is not None
    }
    checkpoint = latest.get(CHECKPOINT_KEY)
    manifest = latest.get(MANIFEST_KEY)
    return (
        sessions,
        None if checkpoint is None else orjson.loads(checkpoint),
        None if manifest is None else orjson.loads(manifest),
    )
