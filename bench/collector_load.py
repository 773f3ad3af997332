"""Collector load benchmark: how many SDK events/s `POST /api/v1/telemetry` accepts, beside raw Kafka.

    .venv/bin/python -m bench.collector_load --api http://127.0.0.1:8080 --seconds 20 \
        [--concurrency 64] [--events-per-beacon 10] [--processes 1]

Needs an API running (`make services`, or `python -m api`) and Kafka. The API's `playback.telemetry` topic
receives every accepted event, so point it at a scratch topic prefix (`TOPIC_PREFIX=…`) when nothing should
consume them, or stop the QoE worker first if it should not compete for the CPU.

Each client keeps `concurrency` keep-alive connections busy, each playing one player after another: a player
is a session of its own (a fresh id) whose beacons carry `events_per_beacon` events with contiguous seq —
`play_requested` and `first_frame` first, then heartbeats with rendition, bitrate and playhead — posted as
`text/plain`, the way `navigator.sendBeacon` sends them. A session sends fewer beacons than the collector's
per-session rate limit allows in its window, so every refusal counted is a real one (503, 400, …), not a 429 of
the load itself. A beacon is sent as soon as the answer to the previous one on its connection arrived: the
figures are what the collector accepts when saturated, not what real players (one beacon every few seconds)
would send.

The client is a minimal HTTP/1.1 client on asyncio streams rather than aiohttp's: on a 2-core machine the load
generator shares the CPU with the collector and Kafka, so it must be cheap. Measured on that machine, one client
process posting 4,500 beacons/s used 0.2 of a core and two processes did no better than one, so one is the
default; `--processes N` splits the connections among N processes timing the same window, for a collector that
outruns one client (the printed load generator CPU tells: near 1 core per process means the client is the limit).

In one run it prints the accepted events/s and requests/s, the refusals by status, and the raw
confluent-kafka produce rate (`bench.telemetry.raw_produce_rate`, idempotent, acks=all) measured right after,
with their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
import urllib.parse
import uuid
from collections import Counter
from typing import Any

import orjson

# Beacons per session, kept under the collector's per-session limit (api/state.py: 20 per 10 s).
BEACONS_PER_SESSION = 10
RENDITIONS = (("360p", 800, 640, 360), ("720p", 3000, 1280, 720), ("1080p", 6000, 1920, 1080))
# Client processes start their windows together, after this long (a spawned interpreter takes ~0.5 s to start).
START_DELAY_S = 2.0


class _Tally:
    """What one client process saw."""

    def __init__(self) -> None:
        self.requests = 0
        self.accepted_events = 0
        self.duplicates = 0
        self.refusals: Counter[str] = Counter()


def _beacons(session_id: str, events_per_beacon: int, t0_ms: int) -> list[bytes]:
    """One player's beacons: contiguous seq, start-up events first, then heartbeats every second."""
    rendition, bitrate, width, height = RENDITIONS[hash(session_id) % len(RENDITIONS)]
    beacons = []
    seq = 0
    for _ in range(BEACONS_PER_SESSION):
        events: list[dict[str, Any]] = []
        for _ in range(events_per_beacon):
            event: dict[str, Any] = {"seq": seq, "ts": t0_ms + seq * 1000}
            if seq == 0:
                event["type"] = "play_requested"
            elif seq == 1:
                event.update(type="first_frame", rendition=rendition, bitrate_kbps=bitrate)
            else:
                event.update(
                    type="heartbeat",
                    rendition=rendition,
                    bitrate_kbps=bitrate,
                    video_width=width,
                    video_height=height,
                    playhead_s=(seq - 1) * 1.0,
                )
            events.append(event)
            seq += 1
        body = {"session_id": session_id, "video_id": "bench-video", "device_class": "desktop", "events": events}
        beacons.append(orjson.dumps(body))
    return beacons


async def _connection(
    host: str, port: int, path: str, deadline: float, events_per_beacon: int, prefix: str, tally: _Tally
) -> None:
    """One keep-alive connection posting players' beacons back to back until ``deadline``."""
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: text/plain\r\nContent-Length: ").encode()
    players = 0
    reader = writer = None
    while time.monotonic() < deadline:
        players += 1
        for body in _beacons(f"{prefix}-{players}", events_per_beacon, int(time.time() * 1000)):
            if time.monotonic() >= deadline:
                break
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
                header = await reader.readuntil(b"\r\n\r\n")
                status = int(header[9:12])
                length = 0
                for line in header.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line[15:])
                answer = await reader.readexactly(length)
                if b"connection: close" in header.lower():
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                tally.refusals[type(exc).__name__] += 1
                if writer is not None:
                    writer.close()
                writer = None
                await asyncio.sleep(0.05)  # a refused connection must not become a busy loop
                continue
            tally.requests += 1
            if status == 202:
                reply = orjson.loads(answer)
                tally.accepted_events += reply["accepted"]
                tally.duplicates += reply["duplicates"]
            else:
                tally.refusals[f"HTTP {status}"] += 1
    if writer is not None:
        writer.close()


def _client(args: tuple[str, float, float, int, int, str]) -> dict[str, Any]:
    """One client process: ``connections`` connections from ``start_at`` (wall clock) for ``seconds``."""
    api_url, start_at, seconds, connections, events_per_beacon, prefix = args
    parts = urllib.parse.urlsplit(api_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    tally = _Tally()

    async def run() -> float:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        began = time.monotonic()
        deadline = began + seconds
        await asyncio.gather(
            *(
                _connection(host, port, "/api/v1/telemetry", deadline, events_per_beacon, f"{prefix}-{i}", tally)
                for i in range(connections)
            )
        )
        return time.monotonic() - began

    cpu0 = time.process_time()
    elapsed = asyncio.run(run())
    return {
        "elapsed_s": elapsed,
        "requests": tally.requests,
        "accepted_events": tally.accepted_events,
        "duplicates": tally.duplicates,
        "refusals": dict(tally.refusals),
        "client_cpu_s": time.process_time() - cpu0,
    }


def saturate_collector(
    api_url: str, seconds: float, concurrency: int, events_per_beacon: int, processes: int | None = None
) -> dict[str, Any]:
    """Post beacons as fast as the collector at ``api_url`` takes them for ``seconds``; return its throughput.

    ``concurrency`` connections in all, shared among ``processes`` client processes (default 1).
    Returns accepted events/s, requests/s (answered, whatever the status), the refusals by status (or by
    exception for a failed connection), and the client processes' CPU time, so a run can tell whether the
    load generator itself was the bottleneck.
    """
    processes = max(1, min(processes or 1, concurrency))
    run_id = f"load{uuid.uuid4().hex[:8]}"
    start_at = time.time() + (START_DELAY_S if processes > 1 else 0.0)
    shares = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    jobs = [
        (api_url, start_at, seconds, share, events_per_beacon, f"{run_id}-p{index}")
        for index, share in enumerate(shares)
    ]
    if processes == 1:
        results = [_client(jobs[0])]
    else:
        # spawn, not fork: a forked child would inherit whatever threads the caller runs (librdkafka's, say).
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            results = pool.map(_client, jobs)
    elapsed = max(result["elapsed_s"] for result in results)
    refusals: Counter[str] = Counter()
    for result in results:
        refusals.update(result["refusals"])
    accepted = sum(result["accepted_events"] for result in results)
    requests = sum(result["requests"] for result in results)
    return {
        "seconds": elapsed,
        "processes": processes,
        "concurrency": concurrency,
        "events_per_beacon": events_per_beacon,
        "accepted_events": accepted,
        "accepted_events_per_s": accepted / elapsed,
        "requests": requests,
        "requests_per_s": requests / elapsed,
        "duplicates": sum(result["duplicates"] for result in results),
        "refusals": dict(refusals),
        "client_cpu_share": sum(result["client_cpu_s"] for result in results) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--api", default="http://127.0.0.1:8080")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--events-per-beacon", type=int, default=10)
    parser.add_argument("--processes", type=int, default=1, help="client processes sharing the connections")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw confluent-kafka produce rate")
    args = parser.parse_args()

    load = saturate_collector(args.api, args.seconds, args.concurrency, args.events_per_beacon, args.processes)
    refusals = ", ".join(f"{reason} × {n}" for reason, n in sorted(load["refusals"].items())) or "none"
    print(
        f"collector: {load['accepted_events_per_s']:,.0f} events/s accepted, {load['requests_per_s']:,.0f} beacons/s "
        f"({load['events_per_beacon']} events each; {load['concurrency']} connections from {load['processes']} "
        f"client process(es), {load['seconds']:.1f} s)",
        flush=True,
    )
    print(f"refused: {refusals}; duplicates: {load['duplicates']}", flush=True)
    print(f"load generator CPU: {load['client_cpu_share']:.2f} cores", flush=True)
    if args.no_raw:
        return
    # Imported here: bench.telemetry pulls in the simulator and the Cassandra driver, which the clients never need.
    from bench.telemetry import raw_produce_rate

    raw = raw_produce_rate()
    print(f"raw confluent-kafka produce (idempotent, acks=all): {raw:,.0f} events/s")
    print(f"collector ÷ raw produce rate = {load['accepted_events_per_s'] / raw:.3f}")


if __name__ == "__main__":
    main()
