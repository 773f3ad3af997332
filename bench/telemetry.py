"""Telemetry benchmark: simulated players → collector → Kafka → QoE worker → Cassandra, beside raw Kafka.

    .venv/bin/python -m bench.telemetry [--players 150] [--duration 300] [--api http://127.0.0.1:8080]
        [--beacon-every 5] [--saturate 20]

Needs the platform running (`make services`). `--saturate S` first saturates the collector for S seconds
(bench/collector_load.py: as many SDK beacons as it accepts). The QoE worker's own capacity on a backlog,
beside a bare consumer, its memory with 100,000 open sessions and its restart time are bench/qoe_backlog.py's
(it needs the platform's QoE worker stopped). In one run this measures:

1. the raw confluent-kafka produce rate on this machine (idempotent, acks=all, PlaybackEvent-sized Avro);
2. N concurrent simulated players (tests/qoe_simulate.py: starts, stalls, rendition switches, seeks,
   failures, exits before start — ground truth known) posting their events in real time as SDK beacons to
   `POST /api/v1/telemetry` for `--duration` seconds, each player's events batched into one beacon every
   `--beacon-every` seconds as our SDK batches its heartbeats; the events/s the collector accepted and the QoE worker
   processed (its Prometheus counter), and the freshness from "accepted by the collector" to "window inputs
   in Cassandra" (its histogram, p50/p99 as bucket bounds);
3. after the run, how many of the views the simulator finished were stored with exactly the truth's watch
   time and rebuffering.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import aiohttp
from confluent_kafka.admin import NewTopic

from bench.collector_load import saturate_collector
from common.avro import AvroCodec
from common.cassandra import cassandra_session
from common.kafka import admin_client, durable_producer
from common.qoe.views import to_ms
from tests import qoe_simulate as simulate

BEACON_FIELDS = (
    "rendition", "bitrate_kbps", "video_width", "video_height", "player_width", "player_height", "playhead_s",
    "error_code", "fatal", "bytes",
)  # fmt: skip
QOE_METRICS = "http://127.0.0.1:9402/metrics"
ACCEPTED = 'qoe_events_total{outcome="accepted"}'
DRAIN_S = 15


def raw_produce_rate(count: int = 100_000) -> float:
    """Messages/s of the durable confluent-kafka producer alone, on a scratch topic."""
    topic = f"bench.raw-produce.{uuid.uuid4().hex[:8]}"
    admin = admin_client()
    for future in admin.create_topics([NewTopic(topic, 12, 1)]).values():
        future.result(30)
    session = simulate.generate(1, 1, start_ms=int(time.time() * 1000))[0]
    value = AvroCodec().encode("PlaybackEvent", next(iter(session)))
    producer = durable_producer()
    began = time.monotonic()
    for index in range(count):
        while True:
            try:
                producer.produce(topic, key=f"session-{index % 5000}".encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    rate = count / (time.monotonic() - began)
    for future in admin.delete_topics([topic]).values():
        future.result(30)
    return rate


def beacon_event(event: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"seq": event["seq"], "type": event["event_type"].lower(), "ts": to_ms(event["client_ts"])}
    out.update({name: event[name] for name in BEACON_FIELDS if event.get(name) is not None})
    return out


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def quantile_bound(before: dict[str, float], after: dict[str, float], name: str, q: float) -> str:
    buckets = sorted(
        (float(key.split('le="')[1].split('"')[0]), after[key] - before.get(key, 0.0))
        for key in after
        if key.startswith(f"{name}_bucket")
    )
    total = buckets[-1][1] if buckets else 0
    for bound, count in buckets:
        if total and count >= q * total:
            if bound == float("inf"):
                return f"> {max(b for b, _ in buckets if b != bound):g} s"
            return f"≤ {bound:g} s"
    return "n/a"


async def play(
    api: str, sessions: list[simulate.Session], duration_s: float, beacon_every_s: int
) -> tuple[int, Counter[str], int]:
    """Post every session's events at their client time, one beacon per session every ``beacon_every_s`` seconds
    (two when the session moved to its next video within that time: a beacon names one video). A session's
    beacons go out in order, one after the other, as one player's would; sessions post concurrently."""
    t0_ms = min(to_ms(s.events[0]["client_ts"]) for s in sessions)
    wall0 = time.monotonic()
    batches: dict[int, dict[str, dict[str | None, list[dict[str, Any]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    devices = {session.session_id: session.device_class for session in sessions}
    for session in sessions:
        # Each player beacons on its own clock, from when it started: an audience is not synchronised (beacons
        # at the same second from every player would be a burst every beacon_every_s seconds instead of a load).
        phase_s = (to_ms(session.events[0]["client_ts"]) - t0_ms) // 1000 % beacon_every_s
        for event in session:
            if event["source"] != "SDK":
                continue  # the simulator's CMCD request records are not SDK beacon events
            offset_s = (to_ms(event["client_ts"]) - t0_ms) // 1000
            offset_s += beacon_every_s - 1 - (offset_s - phase_s) % beacon_every_s  # sent at the end of its batch
            if offset_s < duration_s:
                batches[offset_s][session.session_id][event.get("video_id")].append(beacon_event(event))
    accepted = posted = 0
    refused: Counter[str] = Counter()

    async def post_session(http: aiohttp.ClientSession, session_id: str, by_video: dict[str | None, Any]) -> None:
        nonlocal accepted, posted
        for video_id, events in by_video.items():
            body = {"session_id": session_id, "video_id": video_id, "device_class": devices[session_id]}
            body["events"] = events
            posted += 1
            try:
                async with http.post(
                    f"{api}/api/v1/telemetry", data=json.dumps(body), headers={"Content-Type": "text/plain"}
                ) as reply:
                    if reply.status == 202:
                        accepted += (await reply.json())["accepted"]
                    else:
                        refused[f"HTTP {reply.status}"] += 1
            except aiohttp.ClientError as exc:
                refused[type(exc).__name__] += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http:
        for second in range(int(duration_s)):
            await asyncio.sleep(max(0.0, wall0 + second - time.monotonic()))
            await asyncio.gather(
                *(post_session(http, sid, by_video) for sid, by_video in batches.get(second, {}).items())
            )
    return accepted, refused, posted


def stored_truth(sessions: list[simulate.Session], horizon_ms: int) -> tuple[int, int, list[str]]:
    """Views the simulator finished before the horizon, how many are stored with the truth's numbers, and a
    description of the first few that are not (missing, or which numbers differ)."""
    db = cassandra_session()
    lookup = db.prepare("SELECT metrics_json FROM qoe_views_by_id WHERE view_id = ?")
    finished = [v for s in sessions for v in s.views if v.close_ms and v.close_ms < horizon_ms - 60_000]
    matched = 0
    mismatches: list[str] = []
    for truth in finished:
        row = db.execute(lookup, (truth.view_id,)).one()
        if row is None:
            mismatches.append(f"{truth.view_id}: not stored (truth closed {truth.close_reason})")
            continue
        stored = json.loads(row.metrics_json)
        got = (stored["watch_time_ms"], stored["rebuffer_ms"], stored["rebuffer_count"])
        want = (truth.watch_ms, truth.rebuffer_ms, truth.rebuffer_count)
        if got == want:
            matched += 1
        else:
            mismatches.append(
                f"{truth.view_id}: watch/rebuffer ms/count stored {got} closed {stored['close_reason']},"
                f" truth {want} closed {truth.close_reason}"
            )
    db.cluster.shutdown()
    return len(finished), matched, mismatches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--players", type=int, default=150)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--api", default="http://127.0.0.1:8080")
    parser.add_argument("--beacon-every", type=int, default=10, help="seconds between a player's beacons")
    parser.add_argument("--spread", type=float, default=None, help="seconds over which players start (duration/2)")
    parser.add_argument("--saturate", type=float, default=0.0, help="seconds of collector saturation first")
    parser.add_argument(
        "--backlog", type=int, default=0, help="then bench/qoe_backlog.py with this many players (and 100,000 open)"
    )
    args = parser.parse_args()

    raw = raw_produce_rate()
    print(f"raw confluent-kafka produce (idempotent, acks=all): {raw:,.0f} events/s", flush=True)
    if args.saturate:
        load = saturate_collector(args.api, args.saturate, concurrency=64, events_per_beacon=10)
        print(
            f"collector saturated ({load['events_per_beacon']} events per beacon, {load['seconds']:.0f} s):"
            f" {load['accepted_events_per_s']:,.0f} events/s accepted = {load['accepted_events_per_s'] / raw:.3f} of"
            f" the raw produce rate; refused: {load['refusals'] or 'none'}",
            flush=True,
        )
        time.sleep(DRAIN_S)  # let the QoE worker take what the saturation left before the players start

    start_ms = int(datetime.now(UTC).timestamp() * 1000) + 2000
    seed = int(time.time())
    # No quiet gaps (quiet_rate=0): the bench posts a player's events in beacons every --beacon-every seconds, so
    # a silence of 32 s in player time can reach the collector as one of 25 s, which the platform rightly does not
    # call inactivity, and the simulator's truth would. The oracle tests deliver gaps as they happen.
    sessions = simulate.generate(
        seed, args.players, start_ms=start_ms, spread_ms=int((args.spread or args.duration / 2) * 1000), quiet_rate=0
    )
    # Session ids unique to this run, so a rerun never meets the previous run's state.
    for session in sessions:
        session.session_id = f"bench{seed}-{session.session_id}"
        for event in session.events:
            event["session_id"] = session.session_id
        for view in session.views:
            view.session_id = session.session_id
    before = scrape(QOE_METRICS)
    began = time.monotonic()
    accepted, refused, posted = asyncio.run(play(args.api, sessions, args.duration, args.beacon_every))
    elapsed = time.monotonic() - began
    at_end = scrape(QOE_METRICS)
    processed_during = at_end.get(ACCEPTED, 0.0) - before.get(ACCEPTED, 0.0)
    # Let the worker drain what is still queued, then read its totals.
    time.sleep(DRAIN_S)
    after = scrape(QOE_METRICS)
    drain_rate = (after.get(ACCEPTED, 0.0) - at_end.get(ACCEPTED, 0.0)) / DRAIN_S
    processed = after.get(ACCEPTED, 0.0) - before.get(ACCEPTED, 0.0)
    refusals = ", ".join(f"{reason} × {n}" for reason, n in refused.most_common()) or "none"
    print(f"players: {args.players}, beacons posted: {posted}, refused: {refusals}, run: {elapsed:.0f} s", flush=True)
    print(f"collector accepted: {accepted / elapsed:,.1f} events/s ({accepted} events)")
    print(f"QoE worker processed during the run: {processed_during / elapsed:,.1f} events/s; {processed:.0f} in all")
    print(
        "freshness accepted → in Cassandra: p50 "
        + quantile_bound(before, after, "qoe_event_to_cassandra_seconds", 0.5)
        + ", p99 "
        + quantile_bound(before, after, "qoe_event_to_cassandra_seconds", 0.99)
    )
    print(f"end-to-end ÷ raw produce rate = {processed_during / elapsed / raw:.4f}")
    lag = sum(v for k, v in after.items() if k.startswith("qoe_consumer_lag_messages"))
    print(f"QoE consumer lag {DRAIN_S} s after the run: {lag:.0f} messages")
    if lag > 0:  # still working through a backlog with nothing else arriving: the worker's own capacity
        print(f"QoE worker rate on its backlog after the run: {drain_rate:,.1f} events/s")
    finished, matched, mismatches = stored_truth(sessions, start_ms + int(args.duration * 1000))
    print(f"views finished by the simulator: {finished}; stored with the truth's watch/rebuffer numbers: {matched}")
    for line in mismatches[:5]:
        print(f"  differs: {line}")
    if args.backlog:
        # The worker's own capacity, beside a bare consumer, its memory and restart: on a scratch platform, once
        # the platform's worker has nothing left to do (lag 0 above). Imported here: it imports this module.
        from bench import qoe_backlog

        qoe_backlog.measure(args.backlog, 100_000)


if __name__ == "__main__":
    main()
