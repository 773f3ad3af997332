"""A synthetic video catalogue and viewers with latent tastes, for bench/search.py and bench/recommend_eval.py.

Everything here is SYNTHETIC and deterministic (one seed): topics with their own vocabulary, videos whose
title, description and tags mix words of their topic with generic ones, Zipf-like popularity, and viewers whose
tastes are a few topics each. A viewer's next video is, in turn: of a topic they like (weighted by popularity),
of the same topic as the video just watched, or whatever is popular. No real catalogue or watch log is used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

TOPICS: dict[str, list[str]] = {
    "cooking": "recipe bread sourdough pasta sauce garlic oven baking kitchen chef dinner soup roast spice".split(),
    "football": "goal match league striker penalty keeper derby stadium transfer coach tactics offside cup".split(),
    "guitar": "guitar chord riff solo acoustic electric amp pedal strings fingerstyle blues scale tuning".split(),
    "space": "rocket orbit launch mars moon telescope galaxy astronaut nasa satellite planet comet nebula star".split(),
    "gaming": "speedrun boss level walkthrough console controller multiplayer quest loot patch mod pixel".split(),
    "fitness": "workout squat cardio yoga stretch running marathon protein gym muscle plank sprint mobility".split(),
    "travel": "trip beach mountain hostel passport island hiking city backpack flight museum street market".split(),
    "cars": "engine turbo drift racing lap tyres garage restoration horsepower exhaust gearbox rally circuit".split(),
    "science": "experiment chemistry physics atom molecule laboratory quantum energy reaction electron cell".split(),
    "music": "piano drums concert album vocals producer beat studio melody orchestra jazz symphony rhythm".split(),
    "pets": "puppy kitten dog cat training adoption vet aquarium parrot hamster grooming leash treats".split(),
    "diy": "woodworking drill furniture workshop paint repair tiles plumbing shelf sanding cabinet tools".split(),
}
GENERIC = (
    "best easy quick guide how to new first review tips ultimate beginners day week live story top amazing"
    " simple home full part episode 2024 vlog explained challenge my our vs"
).split()


@dataclass
class Video:
    video_id: str
    topic: str
    title: str
    description: str
    tags: list[str]
    duration_s: float
    created_at: datetime
    popularity: float


@dataclass
class Viewer:
    viewer_id: str
    tastes: dict[str, float]
    history: list[str] = field(default_factory=list)


def _words(rng: random.Random, topic: str, n: int, generic_share: float) -> list[str]:
    vocab = TOPICS[topic]
    return [rng.choice(GENERIC) if rng.random() < generic_share else rng.choice(vocab) for _ in range(n)]


def catalogue(count: int, seed: int = 7) -> list[Video]:
    rng = random.Random(seed)
    topics = list(TOPICS)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    videos = []
    for index in range(count):
        topic = rng.choice(topics)
        # A video borrows a few words from a neighbouring topic now and then (a cooking video in a travel vlog).
        other = rng.choice(topics)
        title = " ".join(_words(rng, topic, rng.randint(3, 7), 0.35)).capitalize()
        description = " ".join(_words(rng, topic, rng.randint(12, 40), 0.45) + _words(rng, other, rng.randint(0, 5), 0))
        tags = sorted(set(_words(rng, topic, rng.randint(2, 5), 0.1)))
        videos.append(
            Video(
                video_id=f"syn-{index:06d}",
                topic=topic,
                title=title,
                description=description,
                tags=tags,
                duration_s=round(rng.lognormvariate(5.5, 1.0), 1),
                created_at=start + timedelta(minutes=rng.randint(0, 3 * 365 * 24 * 60)),
                popularity=1.0 / (index % 997 + 1) ** 0.8 * rng.uniform(0.5, 1.5),
            )
        )
    return videos


def viewers(videos: list[Video], count: int, seed: int = 11) -> list[Viewer]:
    """Viewers with 1–3 liked topics and a watch sequence of 8–30 distinct videos each."""
    rng = random.Random(seed)
    by_topic: dict[str, list[Video]] = {}
    for video in videos:
        by_topic.setdefault(video.topic, []).append(video)
    topic_weights = {t: [v.popularity for v in vs] for t, vs in by_topic.items()}
    all_weights = [v.popularity for v in videos]
    people = []
    for index in range(count):
        liked = rng.sample(list(TOPICS), rng.randint(1, 3))
        shares = [rng.random() + 0.2 for _ in liked]
        tastes = {t: s / sum(shares) for t, s in zip(liked, shares, strict=True)}
        viewer = Viewer(f"viewer-{index:05d}", tastes)
        seen: set[str] = set()
        last_topic: str | None = None
        target = rng.randint(8, 30)
        while len(viewer.history) < target:
            roll = rng.random()
            if roll < 0.55:
                topic = rng.choices(list(tastes), weights=list(tastes.values()))[0]
                video = rng.choices(by_topic[topic], weights=topic_weights[topic])[0]
            elif roll < 0.85 and last_topic is not None:
                video = rng.choices(by_topic[last_topic], weights=topic_weights[last_topic])[0]
            else:
                video = rng.choices(videos, weights=all_weights)[0]
            if video.video_id in seen:
                continue
            seen.add(video.video_id)
            viewer.history.append(video.video_id)
            last_topic = video.topic
        people.append(viewer)
    return people
