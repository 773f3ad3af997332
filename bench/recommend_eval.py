"""Offline evaluation of the recommenders: hit rate@10 on held-out watch sequences, against popularity.

    .venv/bin/python -m bench.recommend_eval [--videos 3000] [--viewers 4000] [--seed 7]

The data is SYNTHETIC (bench/catalogue.py: topics with their own vocabulary, viewers with latent tastes, one
seed), not a real watch log. Each viewer's last video is held out; the rest is replayed, viewer by viewer, through
the co-watch agent's own functions (processors/recommend.py ``with_view`` / ``with_co_watches``). The newest
10 % of the catalogue never appears in training (videos just uploaded): the "new videos" column counts only the
viewers whose held-out video is one of them, where co-watching cannot help and text similarity must.

Recommenders, each asked for 10 videos the viewer has not watched, given their training history:

* popularity — the most watched videos in training (the baseline);
* co-watch, last video — "because you watched X" (``/videos/{id}/related`` without its fallback);
* co-watch, recent videos — neighbours of the last 10 videos, recent ones weigh more (``/recommendations/for-you``);
* content: random indexing — the platform's stateless vectoriser (sinks/text_index.py), cosine to the last video;
* content: TF-IDF + SVD — scikit-learn, fitted on the catalogue's text (128 dimensions, the vector column's size);
* related (co-watch, then content) — what ``/videos/{id}/related`` serves.

Every list is padded with popular videos when a recommender has fewer than 10, as the API pads with trending.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from bench.catalogue import Video, catalogue, viewers
from processors.recommend import with_co_watches, with_view
from sinks.text_index import DIMENSIONS, embed, stems

K = 10
Recommender = Callable[[list[str], set[str]], list[str]]


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def nearest(vectors: np.ndarray, ids: list[str], index: dict[str, int]) -> Callable[[str, set[str], int], list[str]]:
    def find(video_id: str, skip: set[str], k: int) -> list[str]:
        scores = vectors @ vectors[index[video_id]]
        order = np.argsort(-scores)
        return [ids[i] for i in order[: k + len(skip) + 1] if ids[i] not in skip and ids[i] != video_id][:k]

    return find


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.recommend_eval", description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=3000)
    parser.add_argument("--viewers", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()

    videos = catalogue(args.videos, seed=args.seed)
    people = viewers(videos, args.viewers, seed=args.seed + 4)
    ids = [v.video_id for v in videos]
    index = {video_id: i for i, video_id in enumerate(ids)}
    new = set(ids[int(len(ids) * 0.9) :])

    # Hold out each viewer's last video; new videos never appear in training.
    train: dict[str, list[str]] = {}
    held_out: dict[str, str] = {}
    for person in people:
        history = [v for v in person.history[:-1] if v not in new]
        if history:
            train[person.viewer_id], held_out[person.viewer_id] = history, person.history[-1]

    # Co-watching, replayed through the agent's own state functions.
    neighbours: dict[str, dict[str, int]] = {}
    popularity: Counter[str] = Counter()
    for history in train.values():
        recent: list[str] = []
        for video_id in history:
            popularity[video_id] += 1
            recent, pairs = with_view(recent, video_id)
            if pairs:
                neighbours[video_id] = with_co_watches(neighbours.get(video_id, {}), pairs, video_id)
                for other in pairs:
                    neighbours[other] = with_co_watches(neighbours.get(other, {}), [video_id], other)
    popular = [video_id for video_id, _ in popularity.most_common()]

    def pad(found: Sequence[str], seen: set[str]) -> list[str]:
        out = list(dict.fromkeys(v for v in found if v not in seen))[:K]
        for video_id in popular:
            if len(out) >= K:
                break
            if video_id not in seen and video_id not in out:
                out.append(video_id)
        return out

    def by_popularity(history: list[str], seen: set[str]) -> list[str]:
        return pad([], seen)

    def co_watch_last(history: list[str], seen: set[str]) -> list[str]:
        near = neighbours.get(history[-1], {})
        return pad(sorted(near, key=lambda v: (-near[v], v)), seen)

    def co_watch_recent(history: list[str], seen: set[str]) -> list[str]:
        scores: dict[str, float] = {}
        for rank, seed in enumerate(reversed(history[-10:])):
            for other, count in neighbours.get(seed, {}).items():
                scores[other] = scores.get(other, 0.0) + count / (1.0 + rank)
        return pad(sorted(scores, key=lambda v: (-scores[v], v)), seen)

    # Text vectors: the platform's stateless one, and a fitted TF-IDF + SVD for comparison.
    def text_of(v: Video) -> str:
        return " ".join([v.title, v.title, " ".join(v.tags), " ".join(v.tags), v.description])

    t0 = time.perf_counter()
    ri = unit_rows(np.array([embed(v.title, v.description, v.tags) for v in videos], dtype=np.float32))
    ri_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tfidf = TfidfVectorizer(tokenizer=stems, token_pattern=None, lowercase=False, sublinear_tf=True, min_df=2)
    svd = TruncatedSVD(n_components=DIMENSIONS, random_state=args.seed)
    lsa = unit_rows(svd.fit_transform(tfidf.fit_transform([text_of(v) for v in videos])))
    lsa_s = time.perf_counter() - t0
    near_ri, near_lsa = nearest(ri, ids, index), nearest(lsa, ids, index)

    def content_ri(history: list[str], seen: set[str]) -> list[str]:
        return pad(near_ri(history[-1], seen, K), seen)

    def content_lsa(history: list[str], seen: set[str]) -> list[str]:
        return pad(near_lsa(history[-1], seen, K), seen)

    def related(history: list[str], seen: set[str]) -> list[str]:
        near = neighbours.get(history[-1], {})
        found = [v for v in sorted(near, key=lambda v: (-near[v], v)) if v not in seen][:K]
        if len(found) < K:
            found += near_ri(history[-1], seen | set(found), K - len(found))
        return pad(found, seen)

    recommenders: dict[str, Recommender] = {
        "popularity (baseline)": by_popularity,
        "co-watch, last video": co_watch_last,
        "co-watch, recent videos": co_watch_recent,
        "content: random indexing": content_ri,
        "content: TF-IDF + SVD": content_lsa,
        "related (co-watch, then content)": related,
    }
    cold = [viewer for viewer, target in held_out.items() if target in new]
    print(
        f"[recommend-eval] SYNTHETIC data, seed {args.seed}: {len(videos)} videos ({len(new)} new, unseen in training),"
        f" {len(held_out)} viewers, {sum(len(h) for h in train.values())} training views;"
        f" vectors: random indexing {ri_s:.2f} s, TF-IDF + SVD fit {lsa_s:.2f} s"
    )
    print(f"{'recommender':<36}{'hit rate@10':>12}{'new videos':>12}{'vs popularity':>15}")
    baseline = None
    for name, recommend in recommenders.items():
        hits = {viewer: held_out[viewer] in recommend(train[viewer], set(train[viewer])) for viewer in held_out}
        rate = sum(hits.values()) / len(hits)
        cold_rate = sum(hits[v] for v in cold) / len(cold) if cold else 0.0
        baseline = baseline if baseline is not None else rate
        print(f"{name:<36}{rate:>12.3f}{cold_rate:>12.3f}{rate / baseline if baseline else 0:>14.2f}×")
    print(f"[recommend-eval] {len(cold)} viewers' held-out video is new; took {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
