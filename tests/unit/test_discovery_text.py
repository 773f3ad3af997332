"""Text analysis for search and similarity, search ranking, and the co-watch agent's state functions (in memory)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np

from processors.recommend import NEIGHBOURS_KEPT, RECENT_PER_VIEWER, counted, viewer_of, with_co_watches, with_view
from sinks.discovery import listed, search_rank
from sinks.text_index import DIMENSIONS, embed, normalized_title, query_terms, search_terms


def test_terms_are_folded_lowercased_and_stemmed() -> None:
    assert search_terms("Running CATS in the Café", "baked breads", ["Home-Made"]) == {
        "run", "cat", "in", "the", "cafe", "bake", "bread", "home", "made",
    }  # fmt: skip
    assert query_terms("the runs of cafés") == ["run", "cafe"]  # stop words dropped when others remain
    assert query_terms("To Be") == ["to", "be"]  # kept when nothing else is left
    assert normalized_title("  Running,  Cats!  ") == "running cats"


def test_vectors_are_unit_length_deterministic_and_closer_for_shared_words() -> None:
    bread = np.array(embed("Sourdough bread baking", "crust", ["bread"]))
    bread_again = np.array(embed("Baking sourdough bread", "crumb", ["bread"]))
    racing = np.array(embed("Formula one qualifying", "tyres", ["racing"]))
    assert bread.shape == (DIMENSIONS,)
    assert abs(float(np.linalg.norm(bread)) - 1) < 1e-5
    assert embed("Sourdough bread baking", "crust", ["bread"]) == list(bread)
    assert float(bread @ bread_again) > 0.8 > float(bread @ racing)
    assert embed("", None, []) is None


def row(title: str, tags: tuple[str, ...] = (), created: int = 0, **extra: object) -> SimpleNamespace:
    return SimpleNamespace(
        title=title,
        tags=set(tags),
        description="",
        created_at=datetime.fromtimestamp(created, UTC),
        **extra,
    )


def test_exact_title_first_then_title_then_tags_then_newest() -> None:
    terms = query_terms("running cat")
    exact, title, tags, desc_new, desc_old = (
        row("Running Cat", created=1),
        row("A cat that runs", created=5),
        row("Other", ("cats", "running"), created=9),
        row("Other", created=20),
        row("Other", created=10),
    )
    ranked = sorted([desc_old, tags, desc_new, title, exact], key=lambda r: search_rank(r, terms, "running cat"))
    assert ranked == [exact, title, tags, desc_new, desc_old]


def test_lists_show_public_ready_or_playable_videos_and_the_owners_own() -> None:
    def video(privacy: str, status: str) -> SimpleNamespace:
        return SimpleNamespace(privacy=privacy, status=status, owner_id="alice")

    assert listed(video("public", "ready")) and listed(video("public", "playable"))
    assert not listed(video("public", "processing")) and not listed(video("public", "deleted"))
    assert not listed(video("private", "ready")) and not listed(video("unlisted", "ready"))
    assert listed(video("private", "ready"), owner_id="alice") and not listed(video("private", "ready"), "bob")
    assert not listed(video("private", "failed"), owner_id="alice")
    assert not listed(None)


def test_viewer_recent_list_pairs_only_new_videos() -> None:
    recent, pairs = with_view([], "a")
    assert (recent, pairs) == (["a"], [])
    recent, pairs = with_view(recent, "b")
    assert (recent, pairs) == (["b", "a"], ["a"])
    recent, pairs = with_view(recent, "a")  # watched again: moves to the front, pairs with nothing
    assert (recent, pairs) == (["a", "b"], [])
    long = [f"v{n}" for n in range(RECENT_PER_VIEWER)]
    recent, pairs = with_view(long, "new")
    assert len(recent) == RECENT_PER_VIEWER and recent[0] == "new" and pairs == long


def test_co_watch_counts_add_up_and_keep_the_best() -> None:
    counts = with_co_watches({}, ["b", "c", "a"], "a")
    assert counts == {"b": 1, "c": 1}
    assert with_co_watches(counts, ["b"], "a") == {"b": 2, "c": 1}
    many = with_co_watches({f"v{n:03d}": n + 1 for n in range(NEIGHBOURS_KEPT)}, ["zz"], "a")
    assert len(many) == NEIGHBOURS_KEPT and "zz" not in many and "v000" in many  # v000 ties zz at 1, sorts first


def test_view_tallies_and_viewer_identity() -> None:
    hour = 3_600_000
    state = counted(counted({}, 10 * hour), 10 * hour)
    state = counted(state, 11 * hour)
    assert state == {"total": 3, "hours": {str(10 * hour): 2, str(11 * hour): 1}}
    assert str(10 * hour) not in counted(state, 60 * hour)["hours"]  # hours older than two days leave the state
    assert viewer_of({"profile_id": "p", "user_id": "u", "session_id": "s"}) == "profile:p"
    assert viewer_of({"profile_id": None, "user_id": "u", "session_id": "s"}) == "user:u"
    assert viewer_of({"profile_id": None, "user_id": None, "session_id": "s"}) == "session:s"
