"""Simulated players whose QoE ground truth is known by construction: for the oracle tests and the load bench.

``generate(seed, n_sessions)`` plays ``n_sessions`` random sessions (one to three views each: startups with
and without a startup stall, exits before video start, startup failures, rebuffers, seeks with and without
a seek stall, a stall the viewer seeks or pauses out of, pauses, rendition switches, player resizes,
non-fatal and fatal errors, a repeated play request, heartbeats every 5 s, segment requests with bytes; and,
in a ``quiet_rate`` share of the sessions, 10 % by default, one quiet gap: see below). The simulator decides
every duration itself and books it into a ``ViewTruth`` as it goes (startup, played, rebuffering, seeking,
paused, with the rendition current at the time), so the truth never comes from running ``common.qoe.views``
on the events. ``Session.events`` are the PlaybackEvent dicts in seq order; ``Session.deliveries(rng)`` /
``deliveries(sessions, seed)`` add duplicates and delivery delays (arrival order). ``recount(sessions)`` is
the offline recount of the windows from the truth, applying the attribution rules of ``common.qoe.windows``
(views by close time, activity by event time).

The simulated player behaves the way the definitions in ``common.qoe.views`` expect a real one to be
reported: a played segment starts with a HEARTBEAT (so a later stall is not mistaken for seek latency), a
stall that directly follows a seek is reported at the SEEK_END instant, gaps between the events of an open
view stay below 20 s (``MAX_EVENT_GAP_MS``; the inactivity timeout is 30 s) except for the quiet gaps, and
only the last view of a session or one interrupted by a quiet gap ends without END, fatal error or a next
view. Between views (after an END or a fatal error) a player may be silent for up to a minute: no view is
open then, so nothing expires.

Quiet gaps: mid-view, while playing, paused, stalled or seeking, the viewer hides the tab, loses the network
or puts the phone away, and the player sends nothing for ``QUIET_MIN_MS`` .. ``QUIET_MAX_MS`` (32-120 s: the
30 s inactivity timeout plus a margin). The platform closes that view as ``inactive`` (views.py): it ends at
its last event, which the simulator makes the last thing it booked (a HEARTBEAT at the moment it goes quiet
unless an event was sent then), so its watch, paused, rebuffer and seek times run up to that event and a
stall or seek in progress is booked up to it as what it was; it is attributed to last event + 30 s. Then the
player comes back: a few HEARTBEATs (and maybe a PLAYER_RESIZE) outside any view, counted as activity of
the video with no rendition, and a PLAY_REQUESTED that starts a new view of the same video, which plays on
like any other (and may itself end, fail or be abandoned). The gap also exists for the collector: in
``deliveries`` no event after a silence of 30 s or more arrives before the latest arrival before it plus
that silence, so delivery delays (at most ``max_delay_ms``) neither hide a gap nor, since they stay below
30 s - ``MAX_EVENT_GAP_MS``, create one.

    python -m tests.qoe_simulate 1000   # prints the ground-truth totals of 1000 sessions
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final, NamedTuple

from common.qoe.views import DEFAULT_INACTIVITY_S, UNKNOWN, from_ms, to_ms


@dataclass(frozen=True)
class Rendition:
    name: str
    bitrate_kbps: int
    width: int
    height: int


RENDITIONS: Final = (
    Rendition("240p", 300, 426, 240),
    Rendition("360p", 730, 640, 360),
    Rendition("480p", 1100, 854, 480),
    Rendition("720p", 4500, 1280, 720),
    Rendition("1080p", 7800, 1920, 1080),
)
PLAYER_SIZES: Final = ((640, 360), (1280, 720), (1920, 1080), (390, 219), (3840, 2160), (800, 600))
DEVICES: Final = ("desktop", "mobile", "tv")
HEARTBEAT_MS: Final = 5000
REQUEST_EVERY_MS: Final = 4000
INACTIVITY_MS: Final = int(DEFAULT_INACTIVITY_S * 1000)
# Longest silence inside an open view, quiet gaps aside (the heartbeats keep it near 5 s).
MAX_EVENT_GAP_MS: Final = 20_000
# Quiet gaps: the inactivity timeout plus a margin, up to two minutes.
QUIET_MIN_MS: Final = INACTIVITY_MS + 2000
QUIET_MAX_MS: Final = 120_000
DEFAULT_QUIET_RATE: Final = 0.1
DEFAULT_START_MS: Final = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass
class SliceTruth:
    watch_ms: int = 0
    rebuffer_ms: int = 0
    rebuffer_count: int = 0
    played_ms: int = 0
    bitrate_kbps_ms: int = 0
    bitrate_time_ms: int = 0

    def add(self, other: SliceTruth) -> None:
        self.watch_ms += other.watch_ms
        self.rebuffer_ms += other.rebuffer_ms
        self.rebuffer_count += other.rebuffer_count
        self.played_ms += other.played_ms
        self.bitrate_kbps_ms += other.bitrate_kbps_ms
        self.bitrate_time_ms += other.bitrate_time_ms


@dataclass
class ViewTruth:
    """What really happened in one view, booked by the simulator as it decided it."""

    session_id: str
    index: int
    start_seq: int
    video_id: str
    device_class: str
    start_ms: int
    end_ms: int = 0
    close_ms: int = 0
    close_reason: str = ""
    vst_ms: int | None = None
    player_startup_ms: int | None = None
    watch_ms: int = 0
    paused_ms: int = 0
    played_ms: int = 0
    seek_ms: int = 0
    rebuffer_count: int = 0
    rebuffer_ms: int = 0
    playback_failure: bool = False
    startup_failure: bool = False
    ebvs: bool = False
    bytes: int = 0
    initial_rendition: str | None = None
    slices: dict[str, SliceTruth] = field(default_factory=dict)
    pending: SliceTruth = field(default_factory=SliceTruth)
    upscale_weighted: Fraction = Fraction(0)
    upscale_time_ms: int = 0
    max_upscale: Fraction | None = None
    position_ms: int = 0
    events: int = 0
    last_ms: int = 0  # the view's last event other than a segment request (an inactive view ends there)

    @property
    def view_id(self) -> str:
        return f"{self.session_id}/SDK/{self.start_seq}"

    @property
    def started(self) -> bool:
        return self.vst_ms is not None

    @property
    def bitrate_kbps_ms(self) -> int:
        return sum(s.bitrate_kbps_ms for s in self.slices.values())

    @property
    def bitrate_time_ms(self) -> int:
        return sum(s.bitrate_time_ms for s in self.slices.values())

    @property
    def rendition_ms(self) -> dict[str, int]:
        return {name: s.played_ms for name, s in sorted(self.slices.items()) if s.played_ms > 0}


@dataclass(frozen=True)
class ActivityTruth:
    session_id: str
    seq: int
    ts_ms: int
    video_id: str | None
    rendition: str | None
    device_class: str
    bytes: int
    starts_view: bool


@dataclass
class Session:
    session_id: str
    device_class: str
    user_id: str
    views: list[ViewTruth]
    events: list[dict[str, Any]]
    activity: list[ActivityTruth]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The events in seq order (each a fresh copy)."""
        for ev in self.events:
            yield _copy(ev)

    def bursts(self) -> list[list[dict[str, Any]]]:
        """The events in seq order, split where the player was silent for the inactivity timeout or longer
        (quiet gaps, and long pauses between views); fresh copies."""
        out: list[list[dict[str, Any]]] = []
        previous = None
        for ev in self.events:
            ts = to_ms(ev["client_ts"])
            if previous is None or ts - previous >= INACTIVITY_MS:
                out.append([])
            out[-1].append(_copy(ev))
            previous = ts
        return out

    def deliveries(
        self, rng: random.Random, *, duplicate_rate: float = 0.1, max_delay_ms: int = 2000
    ) -> list[Delivery]:
        """Every event once plus random duplicates, each arriving after a random delay of 0 .. ``max_delay_ms``,
        in arrival order. A silence of the player (``bursts``) is at least as long in arrival time: nothing
        after it arrives before the latest arrival before it plus the silence (a delay that would is raised to
        that, which keeps it within ``max_delay_ms``)."""
        if not 0 <= max_delay_ms < INACTIVITY_MS - MAX_EVENT_GAP_MS:
            raise ValueError(
                f"max_delay_ms must be in [0, {INACTIVITY_MS - MAX_EVENT_GAP_MS}): a longer delay could turn an "
                "ordinary pause between events into a silence of the inactivity timeout"
            )
        out = []
        latest: int | None = None  # the latest arrival so far
        floor: int | None = None  # no arrival before this (set after each silence)
        previous: int | None = None
        for ev in self.events:
            ts = to_ms(ev["client_ts"])
            if previous is not None and latest is not None and ts - previous >= INACTIVITY_MS:
                floor = latest + ts - previous
            previous = ts
            copies = 2 if rng.random() < duplicate_rate else 1
            for _ in range(copies):
                arrival = ts + rng.randint(0, max_delay_ms)
                if floor is not None:
                    arrival = max(arrival, floor)
                latest = arrival if latest is None else max(latest, arrival)
                delivered = _copy(ev)
                delivered["received_ts"] = from_ms(arrival)
                out.append(Delivery(arrival, rng.random(), delivered))
        out.sort(key=lambda d: (d.arrival_ms, d.tiebreak))
        return out


class Delivery(NamedTuple):
    arrival_ms: int
    tiebreak: float
    event: dict[str, Any]


def _copy(ev: dict[str, Any]) -> dict[str, Any]:
    return {**ev, "extras": dict(ev["extras"])}


class _Player:
    """One simulated session: emits events and books the truth of every millisecond it spends."""

    def __init__(self, rng: random.Random, session_id: str, t0: int, *, quiet_rate: float = 0.0) -> None:
        self.rng = rng
        self.sid = session_id
        self.t = t0
        self.device = rng.choice(DEVICES)
        self.user = f"user-{rng.randrange(10_000)}"
        self.player = rng.choice(PLAYER_SIZES)
        self.seq = 0
        # Segment requests are CMCD v1 records, numbered by the collector apart from the SDK's own counter.
        self.request_seq = 0
        self.events: list[dict[str, Any]] = []
        self.activity: list[ActivityTruth] = []
        self.views: list[ViewTruth] = []
        self.view: ViewTruth | None = None
        self.rendition: Rendition | None = None
        self.player_startup_ms: int | None = None
        # The session goes quiet once, in its first view that starts playing (no draw at all when the rate
        # is 0, so such sessions are those of a simulator without quiet gaps).
        self.quiet_pending = quiet_rate > 0 and rng.random() < quiet_rate
        # The video the player holds between views (after a quiet gap), reported on its heartbeats.
        self.idle_video: str | None = None

    # -- events ------------------------------------------------------------------------------------------
    def emit(
        self,
        etype: str,
        *,
        rendition: Rendition | None = None,
        fatal: bool = False,
        error_code: str | None = None,
        nbytes: int | None = None,
        extras: dict[str, str] | None = None,
        player: bool = False,
    ) -> None:
        view = self.view
        request = etype == "CMCD_REQUEST"
        seq = self.request_seq if request else self.seq
        video = view.video_id if view else self.idle_video
        ev: dict[str, Any] = {
            "session_id": self.sid,
            "seq": seq,
            "event_type": etype,
            "client_ts": from_ms(self.t),
            "received_ts": from_ms(self.t),
            "video_id": video,
            "user_id": self.user,
            "profile_id": None,
            "device_class": self.device,
            "rendition": None,
            "bitrate_kbps": None,
            "video_width": None,
            "video_height": None,
            "player_width": self.player[0] if player else None,
            "player_height": self.player[1] if player else None,
            "playhead_s": None,
            "error_code": error_code,
            "fatal": fatal,
            "bytes": nbytes,
            "source": "CMCD_V1" if request else "SDK",
            "extras": dict(extras or {}),
        }
        if rendition is not None:
            ev.update(
                rendition=rendition.name,
                bitrate_kbps=rendition.bitrate_kbps,
                video_width=rendition.width,
                video_height=rendition.height,
            )
            self._set_rendition(rendition)
        if etype == "HEARTBEAT" and view is not None:
            ev["playhead_s"] = view.position_ms / 1000
        if request and self.rendition is not None:
            # A segment request: its br is the download's, which the state machine must not take as playing;
            # the collector knows the rendition from the request's path.
            ev["bitrate_kbps"] = self.rendition.bitrate_kbps
            ev["rendition"] = self.rendition.name
        self.events.append(ev)
        if view is not None and not request:
            # Requests count in the windows' activity, not in a view (see views._count_request).
            view.events += 1
            view.bytes += nbytes or 0
            view.last_ms = self.t
        self.activity.append(
            ActivityTruth(
                session_id=self.sid,
                seq=seq,
                ts_ms=self.t,
                # Outside a view an event counts for the video it names, with no rendition (views._activity).
                video_id=video,
                rendition=self.rendition.name if (view and self.rendition) else None,
                device_class=self.device,
                bytes=nbytes or 0,
                starts_view=etype == "PLAY_REQUESTED" and view is not None and view.start_seq == self.seq,
            )
        )
        if request:
            self.request_seq += 1
        else:
            self.seq += 1

    def _set_rendition(self, rendition: Rendition) -> None:
        view = self.view
        assert view is not None
        self.rendition = rendition
        if view.initial_rendition is None:
            # Time before the first known rendition is booked to the initial one (the definition).
            view.initial_rendition = rendition.name
            view.slices.setdefault(rendition.name, SliceTruth()).add(view.pending)
            view.pending = SliceTruth()

    def _slice(self) -> SliceTruth:
        view = self.view
        assert view is not None
        if self.rendition is None:
            return view.pending
        return view.slices.setdefault(self.rendition.name, SliceTruth())

    # -- time --------------------------------------------------------------------------------------------
    def book(self, ms: int, kind: str) -> None:
        """Spend ``ms`` in state ``kind`` (startup, played, rebuffer, seek, paused) and book it."""
        if ms <= 0:
            return
        view = self.view
        assert view is not None
        self.t += ms
        if kind == "paused":
            view.paused_ms += ms
            return
        view.watch_ms += ms
        piece = self._slice()
        piece.watch_ms += ms
        if kind == "rebuffer":
            view.rebuffer_ms += ms
            piece.rebuffer_ms += ms
        elif kind == "seek":
            view.seek_ms += ms
        elif kind == "played":
            assert self.rendition is not None
            view.played_ms += ms
            view.position_ms += ms
            piece.played_ms += ms
            piece.bitrate_kbps_ms += self.rendition.bitrate_kbps * ms
            piece.bitrate_time_ms += ms
            pw, ph = self.player
            scale = min(Fraction(pw, self.rendition.width), Fraction(ph, self.rendition.height))
            upscale = max(Fraction(0), scale - 1)
            view.upscale_weighted += upscale * ms
            view.upscale_time_ms += ms
            view.max_upscale = upscale if view.max_upscale is None else max(view.max_upscale, upscale)

    def spend(self, ms: int, kind: str, *, requests: bool = False) -> None:
        """``book`` with a HEARTBEAT every 5 s (and a segment request every 4 s) inside the interval."""
        marks: list[tuple[int, str]] = [(o, "HEARTBEAT") for o in range(HEARTBEAT_MS, ms, HEARTBEAT_MS)]
        if requests:
            marks += [(o, "CMCD_REQUEST") for o in range(REQUEST_EVERY_MS // 2, ms, REQUEST_EVERY_MS)]
        done = 0
        for offset, etype in sorted(marks):
            self.book(offset - done, kind)
            done = offset
            if etype == "CMCD_REQUEST":
                rate = self.rendition.bitrate_kbps if self.rendition else 1000
                self.emit("CMCD_REQUEST", nbytes=rate * REQUEST_EVERY_MS // 8)
            else:
                self.emit("HEARTBEAT")
        self.book(ms - done, kind)

    def segment(self, ms: int) -> None:
        # A played stretch starts with a heartbeat: evidence that the playhead moves again.
        self.emit("HEARTBEAT")
        self.spend(ms, "played", requests=True)

    # -- a view ------------------------------------------------------------------------------------------
    def play_view(self, video: str, *, last: bool) -> str:
        """One view from its PLAY_REQUESTED to its end; returns how it ended (its close reason, or ``quiet``
        when the session went quiet in it)."""
        rng = self.rng
        view = ViewTruth(
            session_id=self.sid,
            index=len(self.views),
            start_seq=self.seq,
            video_id=video,
            device_class=self.device,
            start_ms=self.t,
        )
        if not self.views:
            view.player_startup_ms = self.player_startup_ms
        self.views.append(view)
        self.view = view
        self.rendition = None
        self.emit("PLAY_REQUESTED")

        outcome = rng.choices(("play", "ebvs", "startup_failure"), weights=(80, 10, 10))[0]
        startup = rng.randint(100, 8000)
        initial = rng.choice(RENDITIONS)
        announce = rng.randint(0, startup - 1) if rng.random() < 0.85 else None
        steps: list[tuple[int, str]] = []
        if announce is not None:
            steps.append((announce, "rendition"))
        if rng.random() < 0.25:
            a, b = sorted(rng.sample(range(startup), 2))
            steps += [(a, "stall_start"), (b, "stall_end")]
        steps += [(o, "request") for o in range(0, startup, 1500)]
        end_of_startup = startup if outcome != "ebvs" else rng.randint(0, startup)
        done = 0
        for offset, step in sorted(steps):
            if offset >= end_of_startup:
                break
            self.spend(offset - done, "startup")
            done = offset
            if step == "rendition":
                self.emit("RENDITION_CHANGE", rendition=initial)
            elif step == "stall_start":
                self.emit("STALL_START")
            elif step == "stall_end":
                self.emit("STALL_END")
            else:
                self.emit("CMCD_REQUEST", nbytes=rng.randint(500, 400_000))
        self.spend(end_of_startup - done, "startup")

        if outcome == "ebvs":
            view.ebvs = True
            if last and rng.random() < 0.5:
                self.emit("HEARTBEAT")
                return self._finish(view, "inactive")
            self.emit("END")
            return self._finish(view, "end")
        if outcome == "startup_failure":
            view.playback_failure = view.startup_failure = True
            self.emit("ERROR", fatal=True, error_code="MEDIA_ERR_SRC_NOT_SUPPORTED")
            return self._finish(view, "fatal_error")

        self.emit("FIRST_FRAME", rendition=initial if self.rendition is None else None)
        view.vst_ms = startup
        n_actions = rng.randint(0, 10)
        # After which played segment the viewer goes away, if this is the view the session goes quiet in.
        quiet_at = rng.randint(0, n_actions) if self.quiet_pending else None
        for i in range(n_actions + 1):
            self.segment(rng.randint(500, 30_000))
            if i == quiet_at:
                return self.go_quiet()
            if i < n_actions:
                self.action()
        ending = rng.choices(
            ("end", "fatal", "abandon", "switch"), weights=(50, 10, 20 if last else 0, 0 if last else 20)
        )[0]
        if ending == "end":
            self.emit("END")
            return self._finish(view, "end")
        if ending == "fatal":
            view.playback_failure = True
            self.emit("ERROR", fatal=True, error_code="NETWORK_ERROR")
            return self._finish(view, "fatal_error")
        if ending == "abandon":
            self.emit("HEARTBEAT")
            return self._finish(view, "inactive")
        return self._finish(view, "new_view")

    def go_quiet(self) -> str:
        """The viewer goes away mid-view: the player's last events, then nothing; the platform closes the view
        as inactive at its last event, so everything booked up to it and nothing after."""
        rng = self.rng
        view = self.view
        assert view is not None
        self.quiet_pending = False
        how = rng.choice(("playing", "paused", "stalled", "seeking"))
        if how == "paused":  # the tab was hidden and the player paused itself
            self.emit("PAUSE")
            self.spend(rng.randint(0, 20_000), "paused")
        elif how == "stalled":  # the network went away: a rebuffer until the view is closed
            self.emit("STALL_START")
            view.rebuffer_count += 1
            self._slice().rebuffer_count += 1
            self.spend(rng.randint(0, 12_000), "rebuffer")
        elif how == "seeking":
            self.emit("SEEK_START")
            self.spend(rng.randint(0, 3000), "seek")
        if view.last_ms < self.t:
            self.emit("HEARTBEAT")  # the last sign of life: the view ends here
        return self._finish(view, "quiet")

    def come_back(self, video: str) -> None:
        """After a quiet gap: some heartbeats (the player holds ``video``) outside any view, then the caller
        plays a new view of the same video."""
        rng = self.rng
        self.t += rng.randint(QUIET_MIN_MS, QUIET_MAX_MS)
        self.idle_video = video
        for _ in range(rng.randint(0, 3)):
            self.emit("HEARTBEAT")
            if rng.random() < 0.2:  # the phone was turned round
                self.player = rng.choice([p for p in PLAYER_SIZES if p != self.player])
                self.emit("PLAYER_RESIZE", player=True)
            self.t += rng.randint(200, HEARTBEAT_MS)
        self.idle_video = None

    def _finish(self, view: ViewTruth, how: str) -> str:
        """Book the end of the view; ``how`` is its close reason, or ``quiet`` for an inactivity close that
        the session comes back from."""
        reason = "inactive" if how == "quiet" else how
        if reason == "inactive":
            assert view.last_ms == self.t, "an inactive view ends at its last event"
        view.end_ms = self.t
        view.close_reason = reason
        view.close_ms = self.t + INACTIVITY_MS if reason == "inactive" else self.t
        if view.initial_rendition is None:
            view.slices.setdefault(UNKNOWN, SliceTruth()).add(view.pending)
            view.pending = SliceTruth()
        self.view = None
        self.rendition = None
        return how

    def action(self) -> None:
        rng = self.rng
        view = self.view
        assert view is not None
        kind = rng.choice(
            (
                "rebuffer",
                "seek",
                "seek_stall_inside",
                "seek_stall_after",
                "stall_then_seek",
                "stall_then_pause",
                "pause",
                "switch",
                "resize",
                "error",
                "play_again",
            )
        )
        if kind in ("rebuffer", "stall_then_seek", "stall_then_pause"):
            self.emit("STALL_START")
            view.rebuffer_count += 1
            self._slice().rebuffer_count += 1
            self.spend(rng.randint(100, 12_000), "rebuffer")
            if kind == "rebuffer":
                self.emit("STALL_END")
            elif kind == "stall_then_seek":
                # The viewer seeks out of the stall: from SEEK_START on, the stall is seek latency.
                self.emit("SEEK_START")
                self.spend(rng.randint(50, 3000), "seek")
                view.position_ms = rng.randint(0, 3_600_000)
                self.emit("SEEK_END")
                self.spend(rng.randint(0, 3000), "seek")
                self.emit("STALL_END")
            else:
                self.emit("PAUSE")
                self.spend(rng.randint(100, 20_000), "paused")
                self.emit("PLAY")
        elif kind in ("seek", "seek_stall_inside", "seek_stall_after"):
            self.emit("SEEK_START")
            self.spend(rng.randint(20, 3000), "seek")
            if kind == "seek_stall_inside":
                self.emit("STALL_START")
                self.spend(rng.randint(20, 4000), "seek")
                self.emit("STALL_END")
                self.spend(rng.randint(0, 1000), "seek")
            view.position_ms = rng.randint(0, 3_600_000)
            self.emit("SEEK_END")
            if kind == "seek_stall_after":
                self.emit("STALL_START")
                self.spend(rng.randint(20, 6000), "seek")
                self.emit("STALL_END")
        elif kind == "pause":
            self.emit("PAUSE")
            self.spend(rng.randint(100, 20_000), "paused")
            self.emit("PLAY")
        elif kind == "switch":
            choices = [r for r in RENDITIONS if r != self.rendition]
            self.emit("RENDITION_CHANGE", rendition=rng.choice(choices))
        elif kind == "resize":
            self.player = rng.choice([p for p in PLAYER_SIZES if p != self.player])
            self.emit("PLAYER_RESIZE", player=True)
        elif kind == "error":
            self.emit("ERROR", error_code="FRAG_LOAD_TIMEOUT")
        else:
            self.emit("PLAY_REQUESTED")  # the same video again: a play command, not a new view

    def play_session(self, videos: list[str]) -> None:
        rng = self.rng
        init_ms = rng.randint(50, 3000)
        self.player_startup_ms = init_ms
        self.emit("PLAYER_RESIZE", player=True)
        self.emit("PLAYER_READY", extras={"player_init_ts": str(self.t - init_ms)})
        self.t += rng.randint(0, 3000)
        n_views = rng.choices((1, 2, 3), weights=(60, 25, 15))[0]
        video = rng.choice(videos)
        for i in range(n_views):
            last = i == n_views - 1
            how = self.play_view(video, last=last)
            while how == "quiet":
                self.come_back(video)
                how = self.play_view(video, last=last)
            if last:
                break
            video = rng.choice([v for v in videos if v != video])
            if how != "new_view":
                self.t += rng.randint(0, 60_000)


def generate_session(
    rng: random.Random, session_id: str, start_ms: int, videos: list[str], *, quiet_rate: float = DEFAULT_QUIET_RATE
) -> Session:
    player = _Player(rng, session_id, start_ms, quiet_rate=quiet_rate)
    player.play_session(videos)
    return Session(
        session_id=session_id,
        device_class=player.device,
        user_id=player.user,
        views=player.views,
        events=player.events,
        activity=player.activity,
    )


def generate(
    seed: int,
    n_sessions: int,
    *,
    start_ms: int = DEFAULT_START_MS,
    spread_ms: int = 120_000,
    n_videos: int = 12,
    quiet_rate: float = DEFAULT_QUIET_RATE,
) -> list[Session]:
    """``n_sessions`` random sessions starting within ``spread_ms`` of ``start_ms`` (deterministic per seed);
    a ``quiet_rate`` share of them goes quiet once mid-view and comes back (0: none does)."""
    if not 0 <= quiet_rate <= 1:
        raise ValueError("quiet_rate must be in [0, 1]")
    rng = random.Random(seed)
    videos = [f"video-{i:03d}" for i in range(n_videos)]
    return [
        generate_session(rng, f"s{seed}-{i:05d}", start_ms + rng.randint(0, spread_ms), videos, quiet_rate=quiet_rate)
        for i in range(n_sessions)
    ]


def deliveries(
    sessions: Iterable[Session], seed: int, *, duplicate_rate: float = 0.1, max_delay_ms: int = 2000
) -> list[Delivery]:
    """The events of all sessions as they arrive: duplicated at ``duplicate_rate``, each delayed by up to
    ``max_delay_ms`` (so reordered within a session; silences kept, see ``Session.deliveries``), merged in
    arrival order."""
    rng = random.Random(seed)
    out = [d for s in sessions for d in s.deliveries(rng, duplicate_rate=duplicate_rate, max_delay_ms=max_delay_ms)]
    out.sort(key=lambda d: (d.arrival_ms, d.tiebreak))
    return out


# ---------------------------------------------------------------------------------------------------------
# Offline recount of the windows from the truth
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ExpectedWindow:
    views_started: int = 0
    sessions: set[str] = field(default_factory=set)
    events: int = 0
    bytes: int = 0
    views: int = 0
    started_views: int = 0
    playback_failures: int = 0
    startup_failures: int = 0
    ebvs: int = 0
    watch_ms: int = 0
    rebuffer_ms: int = 0
    rebuffer_count: int = 0
    played_ms: int = 0
    bitrate_kbps_ms: int = 0
    bitrate_time_ms: int = 0
    rendition_ms: dict[str, int] = field(default_factory=dict)
    vst: list[int] = field(default_factory=list)


WindowKey = tuple[str, str, int, int]  # scope, scope_id, granularity_s, window start (epoch ms)


def recount(sessions: Iterable[Session], granularities_s: Iterable[int] = (10, 60)) -> dict[WindowKey, ExpectedWindow]:
    """The windows as an offline recount of the truth: activity by event time, views by close time."""
    grans = sorted(set(granularities_s))
    out: dict[WindowKey, ExpectedWindow] = {}

    def windows(scope: str, scope_id: str, ts: int) -> Iterator[ExpectedWindow]:
        for g in grans:
            start = ts - ts % (g * 1000)
            yield out.setdefault((scope, scope_id, g, start), ExpectedWindow())

    for session in sessions:
        for a in session.activity:
            scopes = (
                ("video", a.video_id or UNKNOWN),
                ("rendition", a.rendition or UNKNOWN),
                ("device", a.device_class or UNKNOWN),
                ("global", "all"),
            )
            for scope, scope_id in scopes:
                for w in windows(scope, scope_id, a.ts_ms):
                    w.events += 1
                    w.sessions.add(a.session_id)
                    w.bytes += a.bytes
                    w.views_started += int(a.starts_view)
        for v in session.views:
            initial = v.initial_rendition or UNKNOWN
            for scope, scope_id in (("video", v.video_id), ("device", v.device_class), ("global", "all")):
                for w in windows(scope, scope_id, v.close_ms):
                    _count_view(w, v)
                    w.watch_ms += v.watch_ms
                    w.rebuffer_ms += v.rebuffer_ms
                    w.rebuffer_count += v.rebuffer_count
                    w.played_ms += v.played_ms
                    w.bitrate_kbps_ms += v.bitrate_kbps_ms
                    w.bitrate_time_ms += v.bitrate_time_ms
                    for name, ms in v.rendition_ms.items():
                        w.rendition_ms[name] = w.rendition_ms.get(name, 0) + ms
            for name, piece in v.slices.items():
                for w in windows("rendition", name, v.close_ms):
                    if name == initial:
                        _count_view(w, v)
                    w.watch_ms += piece.watch_ms
                    w.rebuffer_ms += piece.rebuffer_ms
                    w.rebuffer_count += piece.rebuffer_count
                    w.played_ms += piece.played_ms
                    w.bitrate_kbps_ms += piece.bitrate_kbps_ms
                    w.bitrate_time_ms += piece.bitrate_time_ms
                    if piece.played_ms > 0:
                        w.rendition_ms[name] = w.rendition_ms.get(name, 0) + piece.played_ms
    return out


def _count_view(w: ExpectedWindow, v: ViewTruth) -> None:
    w.views += 1
    w.started_views += int(v.started)
    w.playback_failures += int(v.playback_failure)
    w.startup_failures += int(v.startup_failure)
    w.ebvs += int(v.ebvs)
    if v.vst_ms is not None:
        w.vst.append(v.vst_ms)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sessions", type=int, nargs="?", default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    sessions = generate(args.seed, args.sessions)
    views = [v for s in sessions for v in s.views]
    watch = sum(v.watch_ms for v in views)
    print(f"sessions {len(sessions)}  events {sum(len(s.events) for s in sessions)}  views {len(views)}")
    print(
        f"started {sum(v.started for v in views)}  ebvs {sum(v.ebvs for v in views)}  "
        f"startup failures {sum(v.startup_failure for v in views)}  failures {sum(v.playback_failure for v in views)}"
    )
    print(f"watch {watch / 3_600_000:.2f} h  rebuffer {100 * sum(v.rebuffer_ms for v in views) / max(watch, 1):.3f} %")


if __name__ == "__main__":
    main()
