"""What search and content similarity read from a video's text: analysed terms and a text vector.

Cassandra 5.0's SAI indexes a text column as whole values only (the ``index_analyzer`` option with Lucene
tokenizers and filters, and the ``:`` match operator, arrived after 5.0: 5.0.9 answers "Properties specified
[index_analyzer] are not understood by StorageAttachedIndex"). So the analysis that an analyser would do runs
here, when a video's metadata is written: Unicode folding, lowercasing, a standard-like word split and
Snowball (Porter 2) English stemming of title, description and tags. The stems go into ``videos.search_terms``
(a ``set<text>`` with an SAI index on its values) and a query is analysed the same way, so ``runs`` finds
"Running". The same terms feed the text vector kept in ``videos.embedding`` (``vector<float, 128>``, SAI ANN).

The vectoriser is stateless (random indexing: every term has a fixed pseudo-random direction, derived from a
hash of the term, and a text is the weighted sum of its terms' directions), so a new video gets its vector the
moment it is created, with nothing fitted, downloaded or stored. ``bench/recommend_eval.py`` compares it with a
fitted TF-IDF + SVD model and with co-watching on held-out watch sequences.

Pure functions only; ``python -m sinks.text_index "Some title"`` prints the terms of a text.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable

import numpy as np
import snowballstemmer

DIMENSIONS = 128
WORD = re.compile(r"[^\W_]+")
# Words so common that a query made of other words is better without them. They are still indexed, so a
# query of stop words alone ("the who") still finds titles made of them.
STOP_WORDS = frozenset(
    "a an and are as at be but by for from has have in into is it its of on or that the their this to was were"
    " will with".split()
)
# Where a word appears says how much it tells about the video (title and tags are chosen, descriptions chatty).
FIELD_WEIGHTS = {"title": 2.0, "tags": 2.0, "description": 1.0}
_stemmer = snowballstemmer.stemmer("english")


def fold(text: str) -> str:
    """Lowercase without accents: "Café" and "cafe" are one word (what ASCII folding does in an analyser)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str | None) -> list[str]:
    return WORD.findall(fold(text or ""))


@functools.lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    # Snowball in pure Python costs microseconds a word; a catalogue's vocabulary is small, so cache the stems.
    return str(_stemmer.stemWord(word))


def stems(text: str | None) -> list[str]:
    return [stem(word) for word in words(text)]


def normalized_title(text: str | None) -> str:
    """The form in which two titles count as the same: folded words joined by single spaces."""
    return " ".join(words(text))


def search_terms(title: str | None, description: str | None, tags: Iterable[str] | None) -> set[str]:
    terms = set(stems(title)) | set(stems(description))
    for tag in tags or ():
        terms |= set(stems(tag))
    return terms


def query_terms(query: str) -> list[str]:
    """A query's terms in order, without repeats, and without stop words unless that leaves nothing."""
    found = list(dict.fromkeys(stems(query)))
    content = [term for term in found if term not in STOP_WORDS]
    return content or found


@functools.lru_cache(maxsize=200_000)
def _direction(term: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(term.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(DIMENSIONS).astype(np.float32)


def _weighted_terms(title: str | None, description: str | None, tags: Iterable[str] | None) -> dict[str, float]:
    weights: defaultdict[str, float] = defaultdict(float)
    fields = {
        "title": stems(title),
        "description": stems(description),
        "tags": [s for t in tags or () for s in stems(t)],
    }
    for field, field_stems in fields.items():
        for term, count in Counter(s for s in field_stems if s not in STOP_WORDS).items():
            weights[term] += FIELD_WEIGHTS[field] * (1.0 + math.log(count))
    return weights


def embed(title: str | None, description: str | None, tags: Iterable[str] | None) -> list[float] | None:
    """The unit-length text vector of a video, or None when it has no words to go by."""
    weights = _weighted_terms(title, description, tags)
    if not weights:
        return None
    vector = np.zeros(DIMENSIONS, dtype=np.float32)
    for term, weight in weights.items():
        vector += weight * _direction(term)
    norm = float(np.linalg.norm(vector))
    return [float(x) for x in vector / norm] if norm > 0 else None


if __name__ == "__main__":
    text = " ".join(sys.argv[1:])
    print(sorted(search_terms(text, None, None)))
