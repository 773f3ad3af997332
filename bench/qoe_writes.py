"""QoE window-input writes: one request per row against the store's batches, side by side in one run.

    .venv/bin/python -m bench.qoe_writes [--events 1500] [--rounds 2]

Needs Cassandra (`make up`). Each simulated event carries what one playback event gives the QoE agent to
write: its session's counts in eight windows (video, rendition, device class and global scopes × 10 s and
60 s), and for one event in ten the window-index rows of windows new to the session. Events are written one
after another, as the agent writes them. Prints events/s and the client's CPU per event for each way and
their ratio. Works in a keyspace of its own (`bench_qoe_<random>`), dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet

from common.cassandra import cassandra_session
from common.settings import load_settings
from common.qoe.views import from_ms
from sinks.catalog import run
from sinks.migrate import migrate
from sinks.qoe import QoeStore, split_tally_key, tally_key

SCOPES = [("video", "v1"), ("rendition", "720p"), ("device", "tv"), ("global", "all")]
Writer = Callable[[str, Mapping[str, list[int]], AbstractSet[str]], Awaitable[None]]


def event_tallies(n: int) -> dict[str, list[int]]:
    """The counts event ``n`` leaves in its windows (a new minute every ten events)."""
    start = 1_000_000_000_000 + (n // 10) * 60_000
    return {tally_key(scope, g, start): [n, n * 100, 1] for scope in SCOPES for g in (10, 60)}


def one_request_per_row(store: QoeStore) -> Writer:
    """The same rows, each its own request (how the store wrote them before batching)."""

    async def write(session_id: str, tallies: Mapping[str, list[int]], indexed: AbstractSet[str]) -> None:
        writes = []
        for key, (events, byte_count, views_started) in tallies.items():
            scope, scope_id, g, start_ms = split_tally_key(key)
            start = from_ms(start_ms)
            row = (scope, scope_id, g, start, session_id, events, byte_count, views_started)
            writes.append(run(store.session, store._window_session, row))
            if key not in indexed:
                writes.append(run(store.session, store._index, (g, start, scope, scope_id)))
        await asyncio.gather(*writes)

    return write


async def measure(write: Writer, events: int) -> tuple[float, float]:
    """(events/s, client CPU ms per event) for ``events`` events written one after another."""
    cpu, wall = time.process_time(), time.perf_counter()
    for n in range(events):
        tallies = event_tallies(n)
        await write(f"session-{n % 50}", tallies, set(tallies) if n % 10 else set())
    elapsed = time.perf_counter() - wall
    return events / elapsed, (time.process_time() - cpu) / events * 1000


async def main(events: int, rounds: int) -> None:
    settings = load_settings()
    keyspace = f"bench_qoe_{uuid.uuid4().hex[:8]}"
    cassandra = dataclasses.replace(settings.cassandra, keyspace=keyspace)
    migrate(cassandra)
    session = cassandra_session(cassandra)
    try:
        store = QoeStore(session)
        for number in range(1, rounds + 1):
            per_row = await measure(one_request_per_row(store), events)
            batched = await measure(store.write_session_tallies, events)
            print(
                f"round {number}: one request per row {per_row[0]:.0f} events/s ({per_row[1]:.2f} ms CPU/event), "
                f"batches {batched[0]:.0f} events/s ({batched[1]:.2f} ms CPU/event): "
                f"{batched[0] / per_row[0]:.2f}x the events/s, {per_row[1] / batched[1]:.2f}x less CPU per event"
            )
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        session.cluster.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds))
