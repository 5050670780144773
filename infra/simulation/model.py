"""The simulator's user model: pure, seeded, no I/O.

Users have latent genre tastes (Dirichlet around the genres' popularity, so most users
have one clear favourite), an activity level, and a return model:

- **play or skip.** A recommendation of genre ``g`` is played with probability
  ``play_min + (play_max - play_min) * (taste_g / max taste) ** play_shape``, else skipped.
  A play lasts ``play_ms`` (uniform), a skip ``skip_ms`` (uniform). Items are
  ``<genre>-<k>`` with a Zipf(``item_zipf``) choice among ``items_per_genre``.
- **sessions.** Day 0 (the first exposure) is a session for every user. Each other day
  ``k`` (in ``[-7, 0)`` before it, ``(0, ...]`` after it) holds one possible session at
  ``start + k days + offset`` (offset uniform in [1 h, 22 h)), so day ``k`` of a user lies
  inside ``[k d, (k + 1) d)`` after the first exposure. Before day 0 sessions are organic
  plays only; from day 0 on, a session is ``recs_per_session`` recommendations (each
  played or skipped; the first answer's ``num_items``, the home surface's parameter, sets
  how many the session shows) then a Poisson(``organic_per_session``) number of organic plays.
- **return.** The probability of the session of day ``k`` is, before day 0,
  ``sigmoid(activity)``; from day 1 on,
  ``sigmoid(activity + genre_weight * (G - reference_genres) + item_weight * (ln(1 + I) - reference_items))``
  with ``G`` and ``I`` the distinct genres and items *played* in the 7 days before the
  session: the discovery the user experienced. A narrow recommender lowers ``G`` and ``I``
  and so the chance that the user comes back. ``return_shifts`` add a variant's own effect
  to that logit (none by default), e.g. a strongly harmful treatment.

Every user draws from its own ``random.Random`` seeded by ``(seed, index)``, so a user's
life depends only on the seed and on the arms it was served, never on processing order.
"""

from __future__ import annotations

import dataclasses
import math
import random
from bisect import bisect_left
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from itertools import accumulate

from streams.events import EventType, ListeningEvent
from streams.features import DEFAULT_CONFIG

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS

#: Day 0 of the simulation, 2026-01-08T00:00Z: the pre-period starts at the demo spec's start.
ORIGIN_MS = 1_767_830_400_000

#: Days of sessions after the first exposure by default: day-7 retention's ``[7 d, 8 d)`` closes, plus a day of slack.
DEFAULT_POST_DAYS = 9

#: The genres of the features' config, so every arm has an ``affinity_<genre>_7d`` feature.
GENRES: tuple[str, ...] = DEFAULT_CONFIG.top_genres


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass(frozen=True, slots=True)
class ModelParams:
    """Every parameter of the model (see the module docstring for how each is used)."""

    genres: tuple[str, ...] = GENRES
    genre_popularity: tuple[float, ...] = (0.22, 0.18, 0.14, 0.12, 0.10, 0.09, 0.08, 0.07)
    taste_concentration: float = 2.0
    items_per_genre: int = 40
    item_zipf: float = 1.1
    play_min: float = 0.15
    play_max: float = 0.9
    play_shape: float = 0.5
    play_ms: tuple[int, int] = (120_000, 300_000)
    skip_ms: tuple[int, int] = (5_000, 30_000)
    recs_per_session: int = 3
    organic_per_session: float = 1.0
    pre_organic_per_session: float = 3.0
    activity_mean: float = 1.2
    activity_sd: float = 0.6
    genre_weight: float = 0.65
    item_weight: float = 0.4
    reference_genres: float = 3.0
    reference_items: float = 2.0
    arrival_ms: int = DAY_MS
    post_days: int = DEFAULT_POST_DAYS
    #: A variant's own effect on coming back: ``(experiment, variant, shift)`` adds ``shift`` to the
    #: logit of every return (day 1 on) of the users first exposed to that variant (a harmful
    #: treatment: strongly negative). None by default: retention then moves only with discovery.
    return_shifts: tuple[tuple[str, str, float], ...] = ()

    def __post_init__(self) -> None:
        if len(self.genre_popularity) != len(self.genres):
            raise ValueError("genre_popularity: one weight per genre")
        if not 0.0 <= self.play_min <= self.play_max <= 1.0:
            raise ValueError("play_min, play_max: need 0 <= play_min <= play_max <= 1")
        if self.recs_per_session < 1 or self.items_per_genre < 1 or self.post_days < DEFAULT_POST_DAYS:
            raise ValueError(f"recs_per_session, items_per_genre >= 1 and post_days >= {DEFAULT_POST_DAYS}")

    @property
    def mean_play_ms(self) -> float:
        return sum(self.play_ms) / 2.0

    @property
    def mean_skip_ms(self) -> float:
        return sum(self.skip_ms) / 2.0

    def play_probability(self, tastes: tuple[float, ...], genre: int) -> float:
        top = max(tastes)
        return self.play_min + (self.play_max - self.play_min) * (tastes[genre] / top) ** self.play_shape

    def return_probability(self, activity: float, genres: int, items: int, shift: float = 0.0) -> float:
        """The chance of a session after day 0, given the discovery of the last 7 days (and the
        ``return_shift`` of the variants the user was first exposed to)."""
        return sigmoid(
            activity
            + self.genre_weight * (genres - self.reference_genres)
            + self.item_weight * (math.log1p(items) - self.reference_items)
            + shift
        )

    def return_shift(self, first_exposures: dict[str, tuple[int, str]]) -> float:
        """The summed ``return_shifts`` of the variants in ``first_exposures`` (experiment -> (ts, variant))."""
        return sum(shift for experiment, variant, shift in self.return_shifts
                   if first_exposures.get(experiment, (0, None))[1] == variant)

    def horizon_ms(self, lateness_ms: int = 30 * 60_000) -> int:
        """Event time at which the run ends: every window ending ``post_days - 1`` days after a first
        exposure closed (8 by default: day-7 retention's ``[7 d, 8 d)``), plus lateness and slack."""
        return ORIGIN_MS + self.arrival_ms + (self.post_days - 1) * DAY_MS + lateness_ms + 2 * HOUR_MS

    def covering(self, outcome_end_ms: int) -> ModelParams:
        """These parameters with enough days that an outcome interval ending ``outcome_end_ms`` after
        the first exposure closes before the horizon (unchanged when it already does)."""
        days = -(-outcome_end_ms // DAY_MS)  # ceiling
        return dataclasses.replace(self, post_days=max(self.post_days, days + 1))


@dataclass(frozen=True, slots=True)
class Expected:
    """The model's expectation for one recommendation, or for a session's organic plays."""

    ts: int
    plays: float
    skips: float
    ms_played: float
    arm: str | None = None  # None: organic plays
    played: bool = False  # the realized outcome of a recommendation
    realized_ms: int = 0


@dataclass(frozen=True, slots=True)
class Served:
    """What serving answered for one recommendation: the arm, and the surface's ``num_items``."""

    arm: str
    num_items: int | None = None


@dataclass(frozen=True, slots=True)
class Slot:
    """One day's possible session: when, with which probability, and whether it happened."""

    ts: int
    day: int
    p_active: float
    active: bool


@dataclass(eq=False)
class User:
    index: int
    user_id: str
    tastes: tuple[float, ...]
    play_probs: tuple[float, ...]
    activity: float
    start: int
    offsets: tuple[int, ...]  # per day from -7
    rng: random.Random = field(repr=False)
    recent: deque[tuple[int, int, str]] = field(default_factory=deque, repr=False)  # (ts, genre, item) plays
    expected: list[Expected] = field(default_factory=list, repr=False)
    slots: list[Slot] = field(default_factory=list, repr=False)
    #: experiment -> (first exposure's event time, variant)
    first_exposures: dict[str, tuple[int, str]] = field(default_factory=dict, repr=False)
    events: int = 0

    def expose(self, experiment: str, variant: str, ts: int) -> None:
        """Remember the user's first exposure to ``experiment`` (later ones change nothing)."""
        self.first_exposures.setdefault(experiment, (ts, variant))

    def slot_times(self, params: ModelParams) -> list[tuple[int, int]]:
        """``(ts, day)`` of every possible session, day -7 to ``post_days``, before the horizon."""
        horizon = params.horizon_ms()
        out = []
        for i, offset in enumerate(self.offsets):
            day = i - 7
            ts = self.start + day * DAY_MS + offset
            if ts < horizon:
                out.append((ts, day))
        return out

    def discovery(self, at_ms: int) -> tuple[int, int]:
        """Distinct genres and distinct items played in ``[at_ms - 7 d, at_ms)``."""
        while self.recent and self.recent[0][0] < at_ms - WEEK_MS:
            self.recent.popleft()
        genres, items = set(), set()
        for ts, genre, item in self.recent:
            if ts < at_ms:
                genres.add(genre)
                items.add(item)
        return len(genres), len(items)


def make_user(params: ModelParams, seed: int, index: int) -> User:
    rng = random.Random(f"tandem-sim:{seed}:{index}")
    weights = [rng.gammavariate(params.taste_concentration * p, 1.0) + 1e-12 for p in params.genre_popularity]
    total = sum(weights)
    tastes = tuple(w / total for w in weights)
    offsets = tuple(0 if day == 0 else rng.randrange(HOUR_MS, 22 * HOUR_MS) for day in range(-7, DEFAULT_POST_DAYS + 1))
    # The days beyond the default draw from their own stream, so a longer run repeats the default run's
    # users and first days exactly and only adds days after them.
    later = random.Random(f"tandem-sim:{seed}:{index}:later-days")
    offsets += tuple(later.randrange(HOUR_MS, 22 * HOUR_MS) for _ in range(DEFAULT_POST_DAYS + 1, params.post_days + 1))
    return User(
        index=index,
        user_id=f"sim{seed}-u{index:05d}",
        tastes=tastes,
        play_probs=tuple(params.play_probability(tastes, g) for g in range(len(tastes))),
        activity=rng.gauss(params.activity_mean, params.activity_sd),
        start=ORIGIN_MS + rng.randrange(params.arrival_ms),
        offsets=offsets,
        rng=rng,
    )


def make_users(params: ModelParams, *, users: int, seed: int) -> list[User]:
    return [make_user(params, seed, i) for i in range(users)]


def _poisson(rng: random.Random, mean: float) -> int:
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class _Emitter:
    """Builds one user's events with deterministic ids."""

    def __init__(self, params: ModelParams, user: User, out: list[ListeningEvent]) -> None:
        self.params, self.user, self.out = params, user, out
        self._item_cdf = list(accumulate(1.0 / (k + 1) ** params.item_zipf for k in range(params.items_per_genre)))

    def _event(self, ts: int, kind: EventType, genre: int | None = None, ms: int = 0) -> ListeningEvent:
        user = self.user
        item = None
        if genre is not None:
            k = min(bisect_left(self._item_cdf, user.rng.random() * self._item_cdf[-1]), len(self._item_cdf) - 1)
            item = f"{self.params.genres[genre]}-{k}"
        event = ListeningEvent(
            event_id=f"{user.user_id}-e{user.events}", user_id=user.user_id, ts=ts, type=kind,
            item_id=item, genre=None if genre is None else self.params.genres[genre], ms_played=ms,
        )
        user.events += 1
        self.out.append(event)
        if kind is EventType.PLAY:
            user.recent.append((ts, genre, item))  # type: ignore[arg-type]
        return event

    def start(self, ts: int) -> None:
        self._event(ts, EventType.SESSION_START)

    def play(self, ts: int, genre: int) -> int:
        ms = self.user.rng.randrange(*self.params.play_ms)
        self._event(ts, EventType.PLAY, genre, ms)
        return ms

    def skip(self, ts: int, genre: int) -> int:
        ms = self.user.rng.randrange(*self.params.skip_ms)
        self._event(ts, EventType.SKIP, genre, ms)
        return ms

    def organic(self, ts: int, count: int) -> int:
        rng, tastes = self.user.rng, self.user.tastes
        for _ in range(count):
            genre = rng.choices(range(len(tastes)), weights=tastes)[0]
            ts += self.play(ts, genre) + rng.randrange(1_000, 5_000)
        return ts


def session(
    params: ModelParams, user: User, ts: int, day: int, out: list[ListeningEvent]
) -> Generator[int, Served | None, None]:
    """One day's possible session of ``user``, appending its events to ``out``.

    A generator: it yields the event time of each recommendation it needs and is sent
    what was served (``None`` when serving failed: that recommendation is lost). The first
    answer's ``num_items`` sets how many recommendations the session shows. It decides
    first whether the session happens at all (day 0 always does).
    """
    rng = user.rng
    if day == 0:
        p = 1.0
    elif day < 0:
        p = sigmoid(user.activity)
    else:
        p = params.return_probability(user.activity, *user.discovery(ts), params.return_shift(user.first_exposures))
    active = day == 0 or rng.random() < p
    user.slots.append(Slot(ts=ts, day=day, p_active=p, active=active))
    if not active:
        return
    emit = _Emitter(params, user, out)
    emit.start(ts)
    ts += 1_000
    if day < 0:
        emit.organic(ts, 1 + _poisson(rng, params.pre_organic_per_session - 1.0))
        return
    index = {genre: g for g, genre in enumerate(params.genres)}
    shown, limit = 0, params.recs_per_session
    while shown < limit:
        served = yield ts
        if shown == 0 and served is not None and served.num_items is not None:
            limit = served.num_items
        shown += 1
        arm = served.arm if served is not None else None
        g = index.get(arm) if arm is not None else None
        if g is None:  # serving failed (or answered an unknown arm): nothing to listen to
            ts += 2_000
            continue
        p_play = user.play_probs[g]
        played = rng.random() < p_play
        at = ts + 500
        ms = emit.play(at, g) if played else emit.skip(at, g)
        user.expected.append(Expected(
            ts=at, plays=p_play, skips=1.0 - p_play,
            ms_played=p_play * params.mean_play_ms + (1.0 - p_play) * params.mean_skip_ms,
            arm=arm, played=played, realized_ms=ms if played else 0,
        ))
        ts = at + ms + rng.randrange(1_000, 5_000)
    mean = params.organic_per_session
    user.expected.append(Expected(ts=ts, plays=mean, skips=0.0, ms_played=mean * params.mean_play_ms))
    emit.organic(ts, _poisson(rng, mean))
