"""What an API process remembers between requests, in memory and bounded: no I/O, no request.

* ``SlidingWindow`` — the one rate limiter: failed logins and sign-ups per e-mail and address (api/auth.py), beacon
  batches per playback session (api/collector.py);
* ``SessionLimits`` — the collectors' per-session rate limit and (session_id, source, seq) dedupe;
* ``CollectorState`` — the CMCD collector's last play state per session and its v1 request counter (api/cmcd.py).

Per process: a cluster would keep them in a shared store; per process still bounds a client to limit × processes.
They live apart from the handlers so that api/keys.py can name their types without importing a handler.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

# A player sends a beacon every few seconds; 20 batches per 10 s per session leaves room for bursts.
RATE_LIMIT_BATCHES = 20
RATE_LIMIT_WINDOW_S = 10.0
SEEN_CAPACITY = 200_000
# CMCD sessions whose last play state is remembered.
STATE_MEMORY = 100_000


class SlidingWindow:
    """At most ``limit`` events per key in any ``window_s`` seconds; past ``max_keys`` keys, the least recently
    used are forgotten (bounded memory)."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000) -> None:
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self._events: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> list[float]:
        """The key's events still in the window, oldest first; the key becomes the most recently used."""
        recent = [t for t in self._events.pop(key, ()) if now - t < self.window_s]
        self._events[key] = recent
        while len(self._events) > self.max_keys:
            self._events.popitem(last=False)
        return recent

    def _wait_s(self, recent: list[float], now: float) -> float | None:
        return None if len(recent) < self.limit else recent[0] + self.window_s - now

    def retry_after(self, key: str) -> int | None:
        """Whole seconds (at least 1) until ``key`` may try again, or None when it may now; counts nothing."""
        now = time.monotonic()
        wait_s = self._wait_s(self._recent(key, now), now)
        return None if wait_s is None else max(1, int(wait_s) + 1)

    def add(self, key: str) -> None:
        now = time.monotonic()
        self._recent(key, now).append(now)

    def allow(self, key: str) -> float | None:
        """Count one event of ``key`` and return None if it is under the limit; else the seconds to wait (uncounted)."""
        now = time.monotonic()
        recent = self._recent(key, now)
        wait_s = self._wait_s(recent, now)
        if wait_s is None:
            recent.append(now)
        return wait_s

    def clear(self, key: str) -> None:
        self._events.pop(key, None)


class SessionLimits:
    """The collectors' memory of each playback session: its recent batches (rate limit) and the events seen."""

    def __init__(self) -> None:
        self.batches = SlidingWindow(RATE_LIMIT_BATCHES, RATE_LIMIT_WINDOW_S, max_keys=SEEN_CAPACITY)
        self._seen: OrderedDict[tuple[str, str, int], None] = OrderedDict()

    def first_time(self, session_id: str, source: str, seq: int) -> bool:
        # Each source numbers its own events (our SDK's counter, CMCD v2 sn, the collector's v1 numbers).
        key = (session_id, source, seq)
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > SEEN_CAPACITY:
            self._seen.popitem(last=False)
        return True

    def forget(self, session_id: str, source: str, seq: int) -> None:
        """An event that was not delivered may be sent again."""
        self._seen.pop((session_id, source, seq), None)


class CollectorState:
    """Per API process: the last CMCD v2 play state of each session, and the v1 request counter."""

    def __init__(self) -> None:
        self.play_state: OrderedDict[str, str] = OrderedDict()
        self._last_v1 = 0
        self.pending: set[asyncio.Task[None]] = set()
        self.harvested = 0  # requests whose CMCD data went to be published

    def next_v1_seq(self) -> int:
        self._last_v1 = max(self._last_v1 + 1, time.time_ns() // 1000)
        return self._last_v1

    def remember(self, session_id: str, sta: str | None) -> None:
        if sta is None:
            return
        self.play_state.pop(session_id, None)
        self.play_state[session_id] = sta
        while len(self.play_state) > STATE_MEMORY:
            self.play_state.popitem(last=False)
