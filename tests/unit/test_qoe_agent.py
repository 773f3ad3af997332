"""The QoE agent's steps in-process against a recording store. A store away for a moment is waited out, never
skipped (processors/retry.py): the writes after Cassandra timeouts are those of a run without them, and only
transport failures are retried. A session closed by the quiet-partition timer gets the rows the stream's own
sweep writes, events still waiting in its reorder buffer included."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections import defaultdict
from typing import Any

import pytest
from cassandra import OperationTimedOut
from cassandra.cluster import NoHostAvailable
from minio.error import ServerError

from processors import retry, telemetry
from tests.unit.qoe.qoe_events import numbered, r720


class RecordingStore:
    """The QoE store's writes, optionally failing the first tries of each kind."""

    def __init__(self, failures: dict[str, list[Exception]] | None = None) -> None:
        self.failures = failures or {}
        self.views: list[tuple[str, str]] = []
        self.tallies: list[dict[str, list[int]]] = []
        self.progress: list[tuple[str, str, float]] = []
        self.attempts = {"view": 0, "tallies": 0, "progress": 0}

    def _maybe_fail(self, kind: str) -> None:
        self.attempts[kind] += 1
        if self.failures.get(kind):
            raise self.failures[kind].pop(0)

    async def write_view(self, metrics: Any) -> None:
        self._maybe_fail("view")
        self.views.append((metrics.view_id, metrics.close_reason))

    async def write_session_tallies(self, session_id: str, tallies: dict[str, list[int]], indexed: Any = ()) -> None:
        self._maybe_fail("tallies")
        self.tallies.append({k: list(v) for k, v in tallies.items()})

    async def write_progress(self, viewer: str, video_id: str, position_s: float, at: Any) -> None:
        self._maybe_fail("progress")
        self.progress.append((viewer, video_id, position_s))


def one_view() -> list[dict[str, Any]]:
    return numbered(
        ("PLAY_REQUESTED", 0, {**r720(), "profile_id": "p1"}),
        ("FIRST_FRAME", 1000, {"profile_id": "p1"}),
        ("HEARTBEAT", 6000, {"playhead_s": 5.0, "profile_id": "p1"}),
        ("STALL_START", 7000, {"profile_id": "p1"}),
        ("STALL_END", 8000, {"profile_id": "p1"}),
        ("END", 12_000, {"playhead_s": 11.0, "profile_id": "p1"}),
    )


def agent_in_memory(store: RecordingStore, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The agent's module state reset, its store ``store`` and its table an in-memory dict (returned)."""
    table: dict[str, Any] = {}
    monkeypatch.setattr(telemetry, "store", lambda: store)
    monkeypatch.setattr(telemetry, "session_to_state", table)
    monkeypatch.setattr(telemetry, "dirty_windows", set())
    monkeypatch.setattr(telemetry, "expiry_by_partition", defaultdict(dict))
    monkeypatch.setattr(telemetry, "watermark_by_partition", {})
    monkeypatch.setattr(telemetry, "timer_closed", {})
    monkeypatch.setattr(retry, "RETRY_FIRST_S", 0.001)
    return table


def run_agent_steps(
    store: RecordingStore, monkeypatch: pytest.MonkeyPatch, events: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The agent's per-event step (track) on each event, against ``store`` and an in-memory table."""
    table = agent_in_memory(store, monkeypatch)

    async def main() -> None:
        for event in one_view() if events is None else events:
            await telemetry.track(0, event)

    asyncio.run(main())
    return table


def test_cassandra_timeouts_in_the_qoe_agent_leave_the_rows_of_a_run_without_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clean = RecordingStore()
    clean_table = run_agent_steps(clean, monkeypatch)
    clean_dirty = set(telemetry.dirty_windows)

    flaky = RecordingStore(
        {
            "view": [OperationTimedOut("coordinator timed out")],
            "tallies": [NoHostAvailable("Cassandra restarting", {}), OperationTimedOut("again")],
            "progress": [OperationTimedOut("progress")],
        }
    )
    flaky_table = run_agent_steps(flaky, monkeypatch)

    assert flaky.views == clean.views == [(clean.views[0][0], "end")]
    # A write that succeeded beside one that failed is written again with the same values (absolute counts).
    assert without_repeats(flaky.tallies) == clean.tallies and len(clean.tallies) == len(one_view())
    assert flaky.progress == clean.progress == [("p1", "video-a", 5.0), ("p1", "video-a", 11.0)]
    # Each failure cost one more try of its step, no more.
    assert flaky.attempts == {"view": 2, "tallies": len(one_view()) + 3, "progress": 3}
    assert flaky_table == clean_table and set(telemetry.dirty_windows) == clean_dirty


def without_repeats(writes: list[Any]) -> list[Any]:
    return [w for n, w in enumerate(writes) if n == 0 or writes[n - 1] != w]


def test_a_failure_that_is_not_the_stores_transport_is_raised_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    store = RecordingStore({"tallies": [KeyError("a bug")]})
    with pytest.raises(KeyError):
        run_agent_steps(store, monkeypatch)
    assert store.attempts["tallies"] == 1


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (OperationTimedOut("timeout"), True),
        (NoHostAvailable("none", {}), True),
        (ServerError("S3 answered 503", 503), True),
        (ValueError("bad value"), False),
        (KeyError("bug"), False),
    ],
)
def test_which_failures_are_waited_out(error: Exception, transient: bool) -> None:
    assert retry.is_transient(error) is transient


def test_applied_once_reports_a_store_away_and_raises_a_bug() -> None:
    async def away() -> None:
        raise OperationTimedOut("timeout")

    async def bug() -> None:
        raise KeyError("bug")

    async def fine() -> None:
        return None

    assert asyncio.run(retry.applied_once(away, "a write")) is False
    assert asyncio.run(retry.applied_once(fine, "a write")) is True
    with pytest.raises(KeyError):
        asyncio.run(retry.applied_once(bug, "a write"))


def test_until_applied_returns_the_steps_result_and_backs_off(monkeypatch: pytest.MonkeyPatch) -> None:
    waited: list[float] = []

    async def sleep(delay: float) -> None:
        waited.append(delay)

    monkeypatch.setattr(retry.asyncio, "sleep", sleep)
    failures = [OperationTimedOut(str(n)) for n in range(6)]

    async def read() -> list[str]:
        if failures:
            raise failures.pop(0)
        return ["row"]

    assert asyncio.run(retry.until_applied(read, "a read", kind="read")) == ["row"]
    assert waited == [0.5, 1.0, 2.0, 4.0, 8.0, retry.RETRY_MAX_S]


def abandoned_with_a_gap() -> list[dict[str, Any]]:
    """A view whose player went away; seq 3 never arrives, so seq 4 and 5 wait in the reorder buffer."""
    events = numbered(
        ("PLAY_REQUESTED", 0, r720()),
        ("FIRST_FRAME", 1000),
        ("HEARTBEAT", 6000, {"playhead_s": 5.0}),
        ("STALL_START", 7000),
        ("STALL_END", 8000),
        ("HEARTBEAT", 11_000, {"playhead_s": 9.0}),
    )
    return [e for e in events if e["seq"] != 3]


def final_tallies(store: RecordingStore) -> dict[str, list[int]]:
    latest: dict[str, list[int]] = {}
    for write in store.tallies:
        latest.update(write)
    return latest


def test_the_quiet_timer_writes_the_rows_the_streams_sweep_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    # The stream's way: a later event on the partition moves its watermark past the session's deadline.
    swept = RecordingStore()
    run_agent_steps(swept, monkeypatch, abandoned_with_a_gap())
    telemetry.watermark_by_partition[0] += 10 * 60 * 1000
    asyncio.run(telemetry.sweep(0))
    assert [reason for _, reason in swept.views] == ["inactive"]

    # The timer's way: nothing else arrives, the partition is caught up and quiet for long enough.
    timed = RecordingStore()
    table = run_agent_steps(timed, monkeypatch, abandoned_with_a_gap())
    stored_before = json_copy(table)
    monkeypatch.setattr(telemetry, "latest_offsets", lambda partitions: {p: 6 for p in partitions})
    monkeypatch.setitem(telemetry.next_offset_by_partition, 0, 6)
    monkeypatch.setitem(telemetry.last_event_wall_by_partition, 0, time.monotonic() - telemetry.QUIET_AFTER_S - 1)
    timer = inspect.unwrap(telemetry.close_quiet_sessions)  # the function under Faust's timer loop
    asyncio.run(timer())
    asyncio.run(timer())  # a second tick writes nothing more

    assert timed.views == swept.views
    # The buffered events (seq 4, 5) count in the windows as they do when the stream sweeps.
    assert final_tallies(timed) == final_tallies(swept)
    assert sum(counts[0] for key, counts in final_tallies(timed).items() if key.startswith("global|all|60|")) == 5
    assert table == stored_before  # the table is the stream's alone
    assert telemetry.dirty_windows


def json_copy(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
