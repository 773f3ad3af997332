"""Search benchmark: 10,000 synthetic videos in a keyspace of their own, then search latency p50/p95/p99.

    .venv/bin/python -m bench.search [--videos 10000] [--queries 400] [--keep]

Needs Cassandra (`make up`). Loads bench/catalogue.py's SYNTHETIC catalogue into `bench_search_<random>`
(every migration applied, the same text indexing as Catalog.create_video: search terms, folded title,
vector), 95 % of it public and ready, then times ``sinks.discovery.search_videos`` — what
``GET /api/v1/search`` runs: the exact-title lookup, the SAI title-term query
(then the any-field query when titles give fewer than a page plus one) and the ranking, for page 1 of 20 — over a mix of
queries: one topic word, two words, a whole title (exact match), and each of those with duration and
upload-date filters. The keyspace is dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from bench.catalogue import GENERIC, TOPICS, Video, catalogue
from common.cassandra import cassandra_session, run
from common.settings import load_settings
from sinks.discovery import Discovery, SearchFilters, search_videos
from sinks.migrate import migrate


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def load(discovery: Discovery, count: int) -> list[str]:
    videos = catalogue(count)
    rng = random.Random(3)
    insert = discovery.session.prepare(
        "INSERT INTO videos (video_id, owner_id, title, description, tags, privacy, status, duration_s,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    gate = asyncio.Semaphore(64)

    async def one(v: Video) -> None:
        privacy = "private" if rng.random() < 0.05 else "public"
        async with gate:
            await run(
                discovery.session,
                insert,
                (
                    v.video_id,
                    f"creator-{rng.randint(1, 500)}",
                    v.title,
                    v.description,
                    set(v.tags),
                    privacy,
                    "ready",
                    v.duration_s,
                    v.created_at,
                    v.created_at,
                ),
            )
            await discovery.index_text(v.video_id, v.title, v.description, v.tags)

    await asyncio.gather(*(one(v) for v in videos))
    return [v.title for v in videos]


def queries(titles: list[str], count: int) -> list[tuple[str, str, SearchFilters]]:
    rng = random.Random(5)
    words = [w for vocab in TOPICS.values() for w in vocab]
    plain = SearchFilters()
    mix: list[tuple[str, str, SearchFilters]] = []
    for index in range(count):
        kind = index % 3
        if kind == 0:
            text, label = rng.choice(words), "one word"
        elif kind == 1:
            text, label = f"{rng.choice(words)} {rng.choice(words + GENERIC)}", "two words"
        else:
            text, label = rng.choice(titles), "whole title"
        filters = plain
        if index % 2:
            low = rng.choice([0, 60, 120])
            filters = SearchFilters(min_duration_s=low, max_duration_s=low + rng.choice([300, 900, 3600]))
            label += " + duration"
            if index % 4 == 1:
                after = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 700))
                filters = dataclasses.replace(
                    filters, uploaded_after=after, uploaded_before=after + timedelta(days=365)
                )
                label += " + date"
        mix.append((label, text, filters))
    return mix


async def main_async(args: argparse.Namespace) -> None:
    settings = load_settings()
    keyspace = f"bench_search_{uuid.uuid4().hex[:8]}"
    cassandra = dataclasses.replace(settings.cassandra, keyspace=keyspace)
    print(f"[search-bench] keyspace {keyspace}: migrating", flush=True)
    await asyncio.to_thread(migrate, cassandra)
    session = await asyncio.to_thread(cassandra_session, cassandra)
    try:
        discovery = Discovery(session)
        started = time.perf_counter()
        titles = await load(discovery, args.videos)
        print(
            f"[search-bench] loaded and indexed {args.videos} SYNTHETIC videos in {time.perf_counter() - started:.1f} s"
        )
        mix = queries(titles, args.queries)
        for _label, text, filters in mix[:40]:  # warm-up: prepared statements, caches
            await search_videos(discovery, text, filters, wanted=21)
        latencies: dict[str, list[float]] = {}
        hits: list[int] = []
        exact_first = exact_total = 0
        for label, text, filters in mix:
            t0 = time.perf_counter()
            found = await search_videos(discovery, text, filters, wanted=21)
            elapsed = (time.perf_counter() - t0) * 1000
            latencies.setdefault(label, []).append(elapsed)
            latencies.setdefault("ALL", []).append(elapsed)
            hits.append(len(found))
            if label.startswith("whole title") and any(row.title == text for row in found):
                exact_total += 1  # the titled video is public and passes the filters: it must come first
                exact_first += found[0].title == text
        print(
            f"[search-bench] {len(mix)} queries, sequential, one client;"
            f" hits per query median {statistics.median(hits):.0f}, max {max(hits)}"
        )
        print(f"{'query kind':<28}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
        for label in sorted(latencies, key=lambda k: (k == "ALL", k)):
            values = latencies[label]
            print(
                f"{label:<28}{len(values):>5}{percentile(values, 50):>9.1f}{percentile(values, 95):>9.1f}"
                f"{percentile(values, 99):>9.1f}"
            )
        print(f"[search-bench] whole-title queries whose video was a hit and came first: {exact_first}/{exact_total}")
    finally:
        if not args.keep:
            await asyncio.to_thread(session.execute, f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        session.cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--keep", action="store_true", help="keep the keyspace for a look afterwards")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
