"""Cassandra reads and writes of discovery: catalogue lists, search, view counts, trending, co-watching, similarity.

The lists and search read the ``videos`` table through its SAI indexes (migration 0008), so they always see the
catalogue as it is: an edit, a privacy change or a deletion shows at once, with no second copy to keep in step.
``index_text`` writes what SAI cannot derive itself (Cassandra 5.0 has no analysers): the stems of title,
description and tags, the folded title, and the text vector (``sinks/text_index.py``). ``Catalog`` calls it
whenever those fields are written; ``python -m sinks.discovery reindex`` backfills videos written before.

View counts, trending and co-watching are written by processors/recommend.py with absolute values under
deterministic keys (no counters), so a replayed event rewrites the same rows. Style of sinks/catalog.py:
statements prepared once per session, every call an ``async`` wrapper of the driver's own async execution.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cassandra import WriteFailure
from cassandra.cluster import Session
from cassandra.query import PreparedStatement

from common.cassandra import cassandra_session, run
from sinks.text_index import embed, normalized_title, query_terms, search_terms, stems

# What a list, a search hit or a recommendation shows of a video (never the plan or the source location).
LIST_COLUMNS = (
    "video_id, owner_id, title, description, tags, privacy, status, duration_s, width, height, created_at,"
    " playable_at, ready_at, thumbnail_time_s"
)
LISTED_STATUSES = frozenset({"ready", "playable"})
MOST_VIEWED_BUCKET = 0
# How many candidates each tier of a search reads at most (title matches, then matches anywhere). SAI returns
# matches in token order and reads each matching row (about 0.1 ms a row here), so a word found in thousands of
# videos would cost seconds; the title tier keeps the best of them. Exact title matches are read separately and
# are never cut off.
SEARCH_CANDIDATES = 120
MAX_QUERY_TERMS = 8
INDEXED_QUERY_TERMS = 2
VECTOR_WRITE_ATTEMPTS = 6
_vector_writes = asyncio.Semaphore(2)


def listed(row: Any, owner_id: str | None = None) -> bool:
    """Shown in a list: ready or playable, and public unless the list is the owner's own."""
    if row is None or row.status not in LISTED_STATUSES:
        return False
    return owner_id is not None and row.owner_id == owner_id or row.privacy == "public"


def hour_of(at: datetime) -> datetime:
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return at.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class SearchFilters:
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    uploaded_after: datetime | None = None
    uploaded_before: datetime | None = None

    def clauses(self) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, op, value in (
            ("duration_s", ">=", self.min_duration_s),
            ("duration_s", "<=", self.max_duration_s),
            ("created_at", ">=", self.uploaded_after),
            ("created_at", "<", self.uploaded_before),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                params.append(value)
        return clauses, params


class Discovery:
    def __init__(self, session: Session) -> None:
        self.session = session
        prepare = session.prepare
        self._index_terms = prepare(
            "UPDATE videos SET search_terms = ?, title_terms = ?, title_key = ? WHERE video_id = ?"
        )
        self._index_vector = prepare("UPDATE videos SET embedding = ? WHERE video_id = ?")
        self._text_of = prepare("SELECT title, description, tags FROM videos WHERE video_id = ?")
        self._all_ids = prepare("SELECT video_id FROM videos")
        self._video = prepare(f"SELECT {LIST_COLUMNS} FROM videos WHERE video_id = ?")
        self._embedding_of = prepare("SELECT embedding FROM videos WHERE video_id = ?")
        self._by_owner = prepare(f"SELECT {LIST_COLUMNS} FROM videos WHERE owner_id = ?")
        self._public_between = prepare(
            f"SELECT {LIST_COLUMNS} FROM videos WHERE privacy = 'public' AND created_at >= ? AND created_at < ?"
        )
        self._oldest_public = prepare(
            "SELECT created_at FROM videos WHERE privacy = 'public' AND created_at < ? LIMIT 1"
        )
        self._similar = prepare(
            f"SELECT {LIST_COLUMNS}, similarity_cosine(embedding, ?) AS similarity FROM videos"
            " WHERE privacy = 'public' ORDER BY embedding ANN OF ? LIMIT ?"
        )
        self._searches: dict[tuple[str, int, tuple[str, ...]], PreparedStatement] = {}
        self._exact_title = prepare(f"SELECT {LIST_COLUMNS} FROM videos WHERE title_key = ? AND privacy = 'public'")
        # View counts and trending.
        self._set_total = prepare("INSERT INTO video_view_totals (video_id, views, updated_at) VALUES (?, ?, ?)")
        self._total = prepare("SELECT views FROM video_view_totals WHERE video_id = ?")
        self._unrank = prepare("DELETE FROM most_viewed WHERE bucket = ? AND views = ? AND video_id = ?")
        self._rank = prepare("INSERT INTO most_viewed (bucket, views, video_id) VALUES (?, ?, ?)")
        self._most_viewed_first = prepare("SELECT views, video_id FROM most_viewed WHERE bucket = ? LIMIT ?")
        self._most_viewed_after = prepare(
            "SELECT views, video_id FROM most_viewed WHERE bucket = ? AND (views, video_id) < (?, ?) LIMIT ?"
        )
        self._set_hour = prepare("INSERT INTO video_views_by_hour (hour, video_id, views) VALUES (?, ?, ?)")
        self._hour = prepare("SELECT video_id, views FROM video_views_by_hour WHERE hour = ?")
        # Co-watching.
        self._set_co_watched = prepare("INSERT INTO co_watched (video_id, neighbours, updated_at) VALUES (?, ?, ?)")
        self._co_watched = prepare("SELECT neighbours FROM co_watched WHERE video_id = ?")
        self._set_recent = prepare(
            "INSERT INTO viewer_recent_videos (viewer_id, video_ids, updated_at) VALUES (?, ?, ?)"
        )
        self._recent = prepare("SELECT video_ids FROM viewer_recent_videos WHERE viewer_id = ?")

    # --- the text index on the video row ---------------------------------------------------------

    async def index_text(
        self, video_id: str, title: str | None, description: str | None, tags: Iterable[str] | None
    ) -> None:
        tags = list(tags or ())
        terms = search_terms(title, description, tags)
        vector = embed(title, description, tags)
        title_terms = set(stems(title))
        await run(
            self.session,
            self._index_terms,
            (terms or None, title_terms or None, normalized_title(title) or None, video_id),
        )
        await self._write_vector(video_id, vector)

    async def _write_vector(self, video_id: str, vector: list[float] | None) -> None:
        # Cassandra 5.0.9 fails a write into a vector index when more writes than jvector's per-graph pool (cores + 1)
        # reach the memtable index at once ("Number of outstanding pooled objects has gone beyond the limit",
        # CASSANDRA-21644, fixed after 5.0.9). So this process sends vector writes one pair at a time, and retries the
        # rare failure caused by other writers; the write is idempotent.
        for attempt in range(VECTOR_WRITE_ATTEMPTS):
            try:
                async with _vector_writes:
                    await run(self.session, self._index_vector, (vector, video_id))
                return
            except WriteFailure:
                if attempt == VECTOR_WRITE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.05 * 2**attempt)

    async def reindex(self, video_id: str) -> bool:
        rows = await run(self.session, self._text_of, (video_id,))
        if not rows:
            return False
        await self.index_text(video_id, rows[0].title, rows[0].description, rows[0].tags)
        return True

    async def reindex_all(self, concurrency: int = 32) -> int:
        ids = [row.video_id for row in await run(self.session, self._all_ids)]
        gate = asyncio.Semaphore(concurrency)

        async def one(video_id: str) -> None:
            async with gate:
                await self.reindex(video_id)

        await asyncio.gather(*(one(video_id) for video_id in ids))
        return len(ids)

    # --- videos ---------------------------------------------------------------------------------

    async def video(self, video_id: str) -> Any | None:
        rows = await run(self.session, self._video, (video_id,))
        return rows[0] if rows else None

    async def videos(self, video_ids: Sequence[str]) -> list[Any | None]:
        """The rows of these videos, in the same order (None where a video does not exist)."""
        return list(await asyncio.gather(*(self.video(video_id) for video_id in video_ids)))

    async def by_owner(self, owner_id: str) -> list[Any]:
        return await run(self.session, self._by_owner, (owner_id,))

    async def public_between(self, start: datetime, end: datetime) -> list[Any]:
        return await run(self.session, self._public_between, (start, end))

    async def has_public_before(self, end: datetime) -> bool:
        return bool(await run(self.session, self._oldest_public, (end,)))

    async def newest(self, before: datetime, limit: int, first_window: timedelta = timedelta(hours=6)) -> list[Any]:
        """Listed public videos created before ``before``, newest first, at most ``limit``.

        SAI cannot order by a column other than a vector in 5.0, so the list is read in time windows going back
        from ``before``, each twice as long as the last, until it has ``limit`` videos or nothing older exists.
        """
        found: list[Any] = []
        end, window = before, first_window
        while len(found) < limit:
            start = end - window
            rows = [row for row in await self.public_between(start, end) if listed(row)]
            found.extend(sorted(rows, key=lambda r: (r.created_at, r.video_id), reverse=True))
            if len(found) >= limit or not await self.has_public_before(start):
                break
            end, window = start, window * 2
        return found[:limit]

    async def search(self, terms: Sequence[str], filters: SearchFilters, column: str = "search_terms") -> list[Any]:
        """Videos whose ``column`` (``search_terms`` or ``title_terms``) holds every one of ``terms`` and that pass
        the filters (SAI AND), at most ``SEARCH_CANDIDATES``; privacy and status are left to ``listed``: an index
        on privacy matches nearly every row, and intersecting with it costs more than the few rows it removes."""
        if column not in ("search_terms", "title_terms"):
            raise ValueError(f"not a terms column: {column}")
        terms = list(terms)[:MAX_QUERY_TERMS]
        # SAI intersects one posting list per CONTAINS, and a common word's list is long: the index is asked for the
        # longest words only (short words are the common ones: "how", "best", "new"), the rest is checked here.
        asked = sorted(terms, key=lambda term: (-len(term), term))[:INDEXED_QUERY_TERMS]
        checked = set(terms) - set(asked)
        clauses, params = filters.clauses()
        shape = (column, len(asked), tuple(clauses))
        statement = self._searches.get(shape)
        if statement is None:
            where = [f"{column} CONTAINS ?"] * len(asked) + clauses
            statement = self._searches[shape] = self.session.prepare(
                f"SELECT {LIST_COLUMNS}, {column} AS terms FROM videos WHERE {' AND '.join(where)}"
                f" LIMIT {SEARCH_CANDIDATES}"
            )
        rows = await run(self.session, statement, [*asked, *params])
        return [row for row in rows if checked <= (row.terms or set())]

    async def exact_title(self, query: str) -> list[Any]:
        key = normalized_title(query)
        return await run(self.session, self._exact_title, (key,)) if key else []

    async def embedding(self, video_id: str) -> list[float] | None:
        rows = await run(self.session, self._embedding_of, (video_id,))
        return list(rows[0].embedding) if rows and rows[0].embedding is not None else None

    async def similar(self, vector: Sequence[float], limit: int) -> list[Any]:
        """Public videos nearest to ``vector`` by cosine (SAI ANN), with their ``similarity``."""
        vector = [float(x) for x in vector]
        return await run(self.session, self._similar, (vector, vector, limit))

    # --- view counts and trending (written by processors/recommend.py) -----------------------------

    async def record_views(
        self, video_id: str, total: int, previous_total: int, hour: datetime, hour_views: int
    ) -> None:
        """The video's new total, its place in the most-viewed list and its count for the hour, all absolute."""
        now = datetime.now(UTC)
        writes = [
            run(self.session, self._set_total, (video_id, total, now)),
            run(self.session, self._rank, (MOST_VIEWED_BUCKET, total, video_id)),
            run(self.session, self._set_hour, (hour_of(hour), video_id, hour_views)),
        ]
        if previous_total and previous_total != total:
            writes.append(run(self.session, self._unrank, (MOST_VIEWED_BUCKET, previous_total, video_id)))
        await asyncio.gather(*writes)

    async def view_total(self, video_id: str) -> int:
        rows = await run(self.session, self._total, (video_id,))
        return int(rows[0].views) if rows else 0

    async def most_viewed(self, limit: int, after: tuple[int, str] | None = None) -> list[tuple[int, str]]:
        if after is None:
            rows = await run(self.session, self._most_viewed_first, (MOST_VIEWED_BUCKET, limit))
        else:
            rows = await run(self.session, self._most_viewed_after, (MOST_VIEWED_BUCKET, after[0], after[1], limit))
        return [(int(row.views), row.video_id) for row in rows]

    async def views_by_hour(self, hours: Sequence[datetime]) -> list[list[tuple[str, int]]]:
        results = await asyncio.gather(*(run(self.session, self._hour, (hour_of(h),)) for h in hours))
        return [[(row.video_id, int(row.views)) for row in rows] for rows in results]

    # --- co-watching ------------------------------------------------------------------------------

    async def set_co_watched(self, video_id: str, neighbours: dict[str, int]) -> None:
        await run(self.session, self._set_co_watched, (video_id, neighbours, datetime.now(UTC)))

    async def co_watched(self, video_id: str) -> dict[str, int]:
        rows = await run(self.session, self._co_watched, (video_id,))
        return dict(rows[0].neighbours or {}) if rows else {}

    async def set_recent(self, viewer_id: str, video_ids: Sequence[str]) -> None:
        await run(self.session, self._set_recent, (viewer_id, list(video_ids), datetime.now(UTC)))

    async def recent(self, viewer_id: str) -> list[str]:
        rows = await run(self.session, self._recent, (viewer_id,))
        return list(rows[0].video_ids or []) if rows else []


# --- reads that combine the queries above (the API and bench/ share them) -------------------------------


def _stem_set(text: str | None) -> set[str]:
    return set(stems(text))


def search_rank(row: Any, terms: Sequence[str], query_key: str) -> tuple[int, float, float]:
    """Sort key of a hit: exact title matches first, then title, tag and description matches, then newest.

    Every hit holds all of ``terms`` somewhere, so the terms in neither title nor tags are in the description:
    counted without analysing the description again (the costliest part of ranking)."""
    title_key = normalized_title(row.title)
    exact = 0 if query_key and title_key == query_key else 1
    wanted = set(terms)
    in_title = wanted & _stem_set(row.title)
    in_tags = wanted & {s for tag in row.tags or () for s in stems(tag)}
    score = 3.0 * len(in_title) + 2.0 * len(in_tags) + 1.0 * len(wanted - in_title - in_tags)
    if query_key and f" {query_key} " in f" {title_key} ":
        score += 2.0  # the query as a phrase in the title
    created = row.created_at.timestamp() if row.created_at else 0.0
    return (exact, -score, -created)


def passes(row: Any, filters: SearchFilters) -> bool:
    duration, created = row.duration_s, row.created_at
    if filters.min_duration_s is not None and (duration is None or duration < filters.min_duration_s):
        return False
    if filters.max_duration_s is not None and (duration is None or duration > filters.max_duration_s):
        return False
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    if filters.uploaded_after is not None and (created is None or created < filters.uploaded_after):
        return False
    return not (filters.uploaded_before is not None and (created is None or created >= filters.uploaded_before))


async def search_videos(
    discovery: Discovery, query: str, filters: SearchFilters, wanted: int = SEARCH_CANDIDATES
) -> list[Any]:
    """Listed public videos matching all words of ``query`` (stemmed) and the filters, best first.

    Title matches are read first; matches anywhere (description, tags) only when the title tier holds fewer than
    ``wanted`` hits — a broad word is then answered from its title matches alone, reading half the rows. A query
    of several words seldom has enough titles holding all of them, so for it the match-anywhere read starts at
    once, beside the title read, instead of after it (one round trip of latency, not two).
    """
    terms = query_terms(query)
    if not terms:
        return []
    anywhere = asyncio.ensure_future(discovery.search(terms, filters, "search_terms")) if len(terms) > 1 else None
    try:
        exact, in_title = await asyncio.gather(
            discovery.exact_title(query), discovery.search(terms, filters, "title_terms")
        )
    except BaseException:
        if anywhere is not None:
            anywhere.cancel()
        raise
    rows = [*in_title, *(row for row in exact if passes(row, filters))]
    if sum(1 for row in in_title if listed(row)) < wanted:
        rows += await (anywhere or discovery.search(terms, filters, "search_terms"))
    elif anywhere is not None:
        anywhere.cancel()
    by_id = {row.video_id: row for row in rows}
    query_key = normalized_title(query)
    return sorted((row for row in by_id.values() if listed(row)), key=lambda r: search_rank(r, terms, query_key))


TRENDING_HOURS = 24
TRENDING_HALF_LIFE_H = 6.0


async def trending_scores(discovery: Discovery, now: datetime, hours: int = TRENDING_HOURS) -> dict[str, float]:
    """Views of the last ``hours`` UTC hours per video, each hour weighted down by its age (half-life 6 h)."""
    current = hour_of(now)
    buckets = [current - timedelta(hours=age) for age in range(hours)]
    scores: dict[str, float] = {}
    for age, counts in enumerate(await discovery.views_by_hour(buckets)):
        weight = 0.5 ** (age / TRENDING_HALF_LIFE_H)
        for video_id, views in counts:
            scores[video_id] = scores.get(video_id, 0.0) + weight * views
    return scores


async def listed_in_order(
    discovery: Discovery, ranked_ids: Sequence[str], limit: int, exclude: Iterable[str] = ()
) -> list[Any]:
    """The rows of the first ``limit`` listed public videos of ``ranked_ids``, read a slice at a time."""
    skip = set(exclude)
    wanted = [video_id for video_id in dict.fromkeys(ranked_ids) if video_id not in skip]
    found: list[Any] = []
    start = 0
    while len(found) < limit and start < len(wanted):
        chunk = wanted[start : start + max(limit * 2, 10)]
        start += len(chunk)
        found.extend(row for row in await discovery.videos(chunk) if listed(row))
    return found[:limit]


async def trending(discovery: Discovery, now: datetime, limit: int) -> list[tuple[Any, float]]:
    scores = await trending_scores(discovery, now)
    ranked = sorted(scores, key=lambda video_id: (-scores[video_id], video_id))
    return [(row, scores[row.video_id]) for row in await listed_in_order(discovery, ranked, limit)]


async def content_similar(discovery: Discovery, video_id: str, limit: int, exclude: Iterable[str] = ()) -> list[Any]:
    """Listed public videos nearest in text to ``video_id`` (SAI ANN over the stored vectors)."""
    vector = await discovery.embedding(video_id)
    if vector is None:
        return []
    skip = {video_id, *exclude}
    rows = await discovery.similar(vector, limit + len(skip) + 10)
    return [row for row in rows if row.video_id not in skip and listed(row)][:limit]


async def related(discovery: Discovery, video_id: str, limit: int) -> list[tuple[Any, str, float]]:
    """ "Because you watched": co-watched videos first (by viewers in common), then content similarity."""
    neighbours = await discovery.co_watched(video_id)
    ranked = sorted(neighbours, key=lambda other: (-neighbours[other], other))
    results: list[tuple[Any, str, float]] = [
        (row, "co_watch", float(neighbours[row.video_id]))
        for row in await listed_in_order(discovery, ranked, limit, exclude=(video_id,))
    ]
    if len(results) < limit:
        taken = {row.video_id for row, _, _ in results}
        for row in await content_similar(discovery, video_id, limit - len(results), exclude=taken):
            results.append((row, "content", float(row.similarity)))
    return results


FOR_YOU_SEEDS = 10


async def for_you(discovery: Discovery, viewer_id: str, now: datetime, limit: int) -> list[tuple[Any, str, float]]:
    """What a viewer may watch next: co-watched neighbours of their recent videos (recent ones weigh more), then
    videos like their latest one, then what is trending; never what they already watched."""
    recent = await discovery.recent(viewer_id)
    seeds = recent[:FOR_YOU_SEEDS]
    watched = set(recent)
    scores: dict[str, float] = {}
    for rank, neighbours in enumerate(await asyncio.gather(*(discovery.co_watched(seed) for seed in seeds))):
        for other, count in neighbours.items():
            if other not in watched:
                scores[other] = scores.get(other, 0.0) + count / (1.0 + rank)
    ranked = sorted(scores, key=lambda video_id: (-scores[video_id], video_id))
    results: list[tuple[Any, str, float]] = [
        (row, "co_watch", scores[row.video_id]) for row in await listed_in_order(discovery, ranked, limit)
    ]
    taken = watched | {row.video_id for row, _, _ in results}
    if len(results) < limit and seeds:
        for row in await content_similar(discovery, seeds[0], limit - len(results), exclude=taken):
            results.append((row, "content", float(row.similarity)))
            taken.add(row.video_id)
    if len(results) < limit:
        for row, score in await trending(discovery, now, limit + len(taken)):
            if row.video_id not in taken and len(results) < limit:
                results.append((row, "trending", score))
    return results


async def _reindex_main() -> int:
    session = await asyncio.to_thread(cassandra_session)
    try:
        count = await Discovery(session).reindex_all()
    finally:
        session.cluster.shutdown()
    print(f"[discovery] indexed the text of {count} videos")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sinks.discovery", description="Discovery index maintenance")
    parser.add_argument("command", choices=["reindex"], help="reindex: write search terms and vectors of every video")
    parser.parse_args(argv)
    return asyncio.run(_reindex_main())


if __name__ == "__main__":
    sys.exit(main())
