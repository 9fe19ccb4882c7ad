"""Synthetic app and e-commerce events from a latent-state model, with the model's own ground truth.

Each user has five latent traits that drift day by day as mean-reverting log-scale random walks:
activity (sessions per day), purchase propensity (carts per session, and how often a cart converts),
churn hazard (daily chance of becoming inactive for good, higher when activity sags), spend level
(purchase amounts) and notification responsiveness (chance a notification is clicked). Events are
drawn per day for all users at once (numpy, no loop per event): sessions, the events inside them,
carts that convert within the same day or are abandoned, and notification clicks.

The latent path uses its own random stream, separate from the event draws, so `ground_truth` can
replay the exact latent state at any snapshot without drawing events, then re-simulate the future
from that state many times with the same dynamics. Where the target's probability given a latent
path has a closed form (any purchase, any activity, any click) it is used inside the Monte Carlo
(Rao-Blackwellised); cart abandonment and value sums are simulated event by event.

Randomized campaigns (`segments_lib.intake.campaigns`, opt-in) hook into the replay through `Campaigns`:
a send raises the user's carts per session for a few days (`LatentState.campaign_boost`), draws its
assignment from a stream of its own, and leaves the latent walks alone, so with campaigns off the events
and the ground truth are exactly those of the model without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

OPEN_APP = "Open App"
ADD_TO_CART = "Add to Cart"
PURCHASE = "Purchase Completed"
CLICK = "Click Notification"
TRANSACTION = "Transaction Made"
CAMPAIGN_SENT = "Campaign Sent"
# Events inside a session besides Open App, with their mean count per session.
SESSION_EVENT_MEANS: dict[str, float] = {
    "Screen Viewed": 1.0,
    "Content Viewed": 0.6,
    "Browse Content": 0.45,
    "Feature Used": 0.3,
    "Message Read": 0.25,
    "Form Submission": 0.03,
    "Plan Upgrade": 0.004,
    "Referral Sent": 0.01,
    TRANSACTION: 0.04,
}
# Codes are indices: the campaign send comes last so the other events keep the codes they always had.
EVENT_NAMES: tuple[str, ...] = (OPEN_APP, *SESSION_EVENT_MEANS, CLICK, ADD_TO_CART, PURCHASE, CAMPAIGN_SENT)
_CODE = {name: i for i, name in enumerate(EVENT_NAMES)}
# A campaign send is something done to the user, not by them: it is not activity.
ACTIVITY_EVENTS = frozenset({OPEN_APP, "Screen Viewed", "Content Viewed", "Browse Content", "Feature Used",
                             CLICK, "Message Read", ADD_TO_CART, PURCHASE})

DEMO_SEGMENTS = ("likely_to_purchase", "churn_risk", "cart_abandonment", "high_value", "engagement_booster")
HIGH_VALUE_THRESHOLD = 150.0
DAY_S = 86_400
_MICROS = 1_000_000

# Monday first: busier weekends.
WEEKDAY_FACTOR = np.array([0.95, 0.92, 0.94, 0.98, 1.05, 1.12, 1.04])
# Share of sessions starting in each hour (UTC): a morning bump, lunch, and an evening peak.
_HOUR_WEIGHTS = np.array([0.6, 0.35, 0.2, 0.15, 0.15, 0.3, 0.9, 2.0, 2.8, 2.6, 2.4, 2.6,
                          3.2, 3.0, 2.5, 2.4, 2.6, 3.0, 3.8, 4.6, 5.0, 4.4, 3.0, 1.5])
_HOUR_CDF = np.cumsum(_HOUR_WEIGHTS) / _HOUR_WEIGHTS.sum()

SESSION_SPAN_S = 20 * 60  # events of a session follow its start within 20 minutes
PURCHASE_DELAY_S = 3 * 3600  # a converting cart is bought within 3 hours, the same day
NOTIFICATIONS_PER_DAY = 0.7
VALUE_SIGMA = 0.45
TRANSACTION_LOG_MEAN, TRANSACTION_SIGMA = np.log(30.0), 0.9
# Base traits are normal on the log (or logit) scale; campaigns.log_effect standardises two of them.
BASE_PURCHASE_MEAN, BASE_PURCHASE_SD = np.log(0.17), 0.8
BASE_RESPONSE_MEAN, BASE_RESPONSE_SD = -2.3, 1.1
INITIAL_USER_SHARE = 0.45  # present on day one; the rest join uniformly over the history

# Mean-reverting walk per trait: x' = PHI·x + SIGMA·ε, so a trait's recent level predicts its near future.
PHI = 0.96
WALK_SIGMA = {"activity": 0.13, "purchase": 0.12, "churn": 0.15, "spend": 0.05, "response": 0.10}
ACTIVITY_ON_CHURN = 0.9  # a drop in activity raises the churn hazard


@dataclass(frozen=True)
class DemoSpec:
    users: int = 20_000
    days: int = 120
    end_date: date = date(2026, 6, 1)  # first day after the history: events are before its midnight
    seed: int = 7

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=self.days)

    def day_index(self, day: date) -> int:
        return (day - self.start_date).days


@dataclass
class LatentState:
    """Per-user latent traits; `x_*` are the drifting deviations from each user's own base level.

    The `campaign_*` arrays are a campaign's effect in progress (zeros without campaigns; left empty they
    are filled with zeros): the log-multiplier on carts per session, the days it still lasts including
    today, and whether a campaign was sent at today's 00:00.
    """
    base_activity: np.ndarray
    base_purchase: np.ndarray
    conversion_logit: np.ndarray
    base_churn: np.ndarray
    base_spend: np.ndarray
    base_response: np.ndarray
    x_activity: np.ndarray
    x_purchase: np.ndarray
    x_churn: np.ndarray
    x_spend: np.ndarray
    x_response: np.ndarray
    alive: np.ndarray
    campaign_boost: np.ndarray = field(default_factory=lambda: np.zeros(0))
    campaign_days_left: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    campaign_sent: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def __post_init__(self) -> None:
        n = self.alive.size
        if self.campaign_boost.size == 0 < n:
            self.campaign_boost = np.zeros(n)
        if self.campaign_days_left.size == 0 < n:
            self.campaign_days_left = np.zeros(n, np.int32)
        if self.campaign_sent.size == 0 < n:
            self.campaign_sent = np.zeros(n, bool)

    def copy(self) -> LatentState:
        return LatentState(**{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def take(self, index: np.ndarray) -> LatentState:
        return LatentState(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    # Rates for one day (weekday factor applied by the caller where it matters).
    def sessions_per_day(self) -> np.ndarray:
        return np.exp(self.base_activity + self.x_activity)

    def carts_per_session(self) -> np.ndarray:
        # Adding a zero boost leaves every value bit for bit as it was without campaigns.
        return np.exp(self.base_purchase + self.x_purchase + self.campaign_boost)

    def conversion(self) -> np.ndarray:
        return _sigmoid(self.conversion_logit + 0.5 * self.x_purchase)

    def clicks_per_day(self) -> np.ndarray:
        return NOTIFICATIONS_PER_DAY * _sigmoid(self.base_response + self.x_response)

    def churn_hazard(self) -> np.ndarray:
        return _sigmoid(self.base_churn + self.x_churn - ACTIVITY_ON_CHURN * self.x_activity)

    def log_spend(self) -> np.ndarray:
        return self.base_spend + self.x_spend


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _stationary(rng: np.random.Generator, sigma: float, n: int) -> np.ndarray:
    return rng.normal(0.0, sigma / np.sqrt(1.0 - PHI**2), n)


def initial_state(spec: DemoSpec, rng: np.random.Generator) -> tuple[LatentState, np.ndarray]:
    """Traits for every user and the day index each one joins."""
    n = spec.users
    joins_later = rng.random(n) >= INITIAL_USER_SHARE
    join_day = np.where(joins_later, rng.integers(1, max(spec.days, 2), n), 0).astype(np.int32)
    state = LatentState(
        base_activity=rng.normal(np.log(0.18), 0.7, n),
        base_purchase=rng.normal(BASE_PURCHASE_MEAN, BASE_PURCHASE_SD, n),
        conversion_logit=rng.normal(0.4, 1.1, n),
        base_churn=rng.normal(np.log(0.006 / 0.994), 0.7, n),
        base_spend=rng.normal(np.log(46.0), 0.55, n),
        base_response=rng.normal(BASE_RESPONSE_MEAN, BASE_RESPONSE_SD, n),
        x_activity=_stationary(rng, WALK_SIGMA["activity"], n),
        x_purchase=_stationary(rng, WALK_SIGMA["purchase"], n),
        x_churn=_stationary(rng, WALK_SIGMA["churn"], n),
        x_spend=_stationary(rng, WALK_SIGMA["spend"], n),
        x_response=_stationary(rng, WALK_SIGMA["response"], n),
        alive=np.ones(n, dtype=bool),
    )
    return state, join_day


def advance(state: LatentState, joined: np.ndarray, rng: np.random.Generator) -> None:
    """End of a day: joined users may churn (for good), then every trait takes one step of its walk."""
    churned = joined & state.alive & (rng.random(state.alive.size) < state.churn_hazard())
    state.alive &= ~churned
    n = state.alive.size
    for trait, sigma in WALK_SIGMA.items():
        attr = f"x_{trait}"
        setattr(state, attr, PHI * getattr(state, attr) + rng.normal(0.0, sigma, n))
    # A campaign's effect runs down; it draws nothing, so the walks' random sequence is unchanged.
    if state.campaign_days_left.any():
        state.campaign_days_left = np.maximum(state.campaign_days_left - 1, 0).astype(np.int32)
        state.campaign_boost = np.where(state.campaign_days_left > 0, state.campaign_boost, 0.0)
    if state.campaign_sent.any():
        state.campaign_sent = np.zeros(n, bool)


class Campaigns(Protocol):
    """What the replay asks of a campaign design (`campaigns.CampaignSpec`; that module builds on this one).

    `send` is called at 00:00 of every simulated day: on a campaign day it picks who is sent, sets their
    `campaign_*` state and draws from `rng` (its own stream), on other days it does nothing.
    """

    def send(self, spec: DemoSpec, day: int, state: LatentState, join_day: np.ndarray,
             rng: np.random.Generator) -> None: ...


def _diurnal_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    hours = np.searchsorted(_HOUR_CDF, rng.random(n), side="right")
    return hours * 3600 + rng.integers(0, 3600, n)


@dataclass
class DayEvents:
    """One day's events as parallel arrays; times are seconds since that day's midnight."""
    user: np.ndarray
    code: np.ndarray
    second: np.ndarray
    value: np.ndarray  # NaN for no value


def _within(rng: np.random.Generator, start: np.ndarray, span: int) -> np.ndarray:
    """A second after `start` and within `span`, never past 23:59:58 so a purchase can still follow."""
    room = np.minimum(span, DAY_S - 1 - start)
    return start + np.floor(rng.random(start.size) * room).astype(np.int64)


def _purchase_after(rng: np.random.Generator, cart_second: np.ndarray) -> np.ndarray:
    room = np.minimum(PURCHASE_DELAY_S, DAY_S - 1 - cart_second)
    return cart_second + 1 + np.floor(rng.random(cart_second.size) * room).astype(np.int64)


@dataclass(frozen=True)
class _Carts:
    """One day's carts (`who`: user or row index, `second`) and the purchases of those that convert."""
    who: np.ndarray
    second: np.ndarray
    converts: np.ndarray
    buyer: np.ndarray
    amount: np.ndarray
    bought_at: np.ndarray  # second of each purchase


def _draw_carts(state: LatentState, session_who: np.ndarray, start: np.ndarray,
               rng: np.random.Generator) -> _Carts:
    """Carts inside the sessions starting at `start`, and which of them convert into a purchase (and its amount)."""
    cart_session = np.repeat(np.arange(start.size), rng.poisson(state.carts_per_session()[session_who]))
    who = session_who[cart_session]
    second = _within(rng, start[cart_session], SESSION_SPAN_S)
    converts = rng.random(who.size) < state.conversion()[who]
    buyer = who[converts]
    return _Carts(who, second, converts, buyer, _purchase_amounts(state, buyer, rng),
                     _purchase_after(rng, second[converts]))


def _purchase_amounts(state: LatentState, buyer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.round(np.exp(state.log_spend()[buyer] + rng.normal(0.0, VALUE_SIGMA, buyer.size)), 2)


def simulate_day(state: LatentState, active: np.ndarray, weekday: int, rng: np.random.Generator) -> DayEvents:
    """All events of one day for the users in `active` (indices), given their latent state."""
    users = active
    sessions = rng.poisson(state.sessions_per_day()[users] * WEEKDAY_FACTOR[weekday])
    session_user = np.repeat(users, sessions)
    start = _diurnal_seconds(rng, session_user.size)
    parts_user, parts_code, parts_second, parts_value = [session_user], [np.full(start.size, _CODE[OPEN_APP])], \
        [start], [np.full(start.size, np.nan)]

    def add(which: np.ndarray, code: int, seconds: np.ndarray, values: np.ndarray | None = None) -> None:
        parts_user.append(which)
        parts_code.append(np.full(which.size, code))
        parts_second.append(seconds)
        parts_value.append(np.full(which.size, np.nan) if values is None else values)

    for name, mean in SESSION_EVENT_MEANS.items():
        per_session = np.repeat(np.arange(start.size), rng.poisson(mean, start.size))
        values = None
        if name == TRANSACTION:
            values = np.round(np.exp(rng.normal(TRANSACTION_LOG_MEAN, TRANSACTION_SIGMA, per_session.size)), 2)
        add(session_user[per_session], _CODE[name], _within(rng, start[per_session], SESSION_SPAN_S), values)

    carts = _draw_carts(state, session_user, start, rng)
    add(carts.who, _CODE[ADD_TO_CART], carts.second)
    add(carts.buyer, _CODE[PURCHASE], carts.bought_at, carts.amount)

    clicker = np.repeat(users, rng.poisson(state.clicks_per_day()[users]))
    add(clicker, _CODE[CLICK], _diurnal_seconds(rng, clicker.size))

    return DayEvents(
        user=np.concatenate(parts_user), code=np.concatenate(parts_code).astype(np.int8),
        second=np.concatenate(parts_second).astype(np.int64), value=np.concatenate(parts_value),
    )


EVENTS_ARROW_SCHEMA = pa.schema([
    pa.field("user_id", pa.string()),
    pa.field("event_name", pa.string()),
    pa.field("event_time", pa.timestamp("us", tz="UTC")),
    pa.field("event_value", pa.float64()),
    pa.field("event_date", pa.date32()),
])


def user_ids(n: int) -> pa.Array:
    width = max(6, len(str(n - 1)))
    return pa.array([f"u{i:0{width}d}" for i in range(n)], pa.string())


def _to_batch(day: DayEvents, day_date: date, ids: pa.Array, names: pa.Array) -> pa.RecordBatch:
    order = np.lexsort((day.code, day.user, day.second))
    midnight_us = int(datetime(day_date.year, day_date.month, day_date.day, tzinfo=timezone.utc).timestamp()) * _MICROS
    value = day.value[order]
    return pa.RecordBatch.from_arrays([
        ids.take(pa.array(day.user[order])),
        names.take(pa.array(day.code[order])),
        pa.array(midnight_us + day.second[order] * _MICROS, pa.timestamp("us", tz="UTC")),
        pa.array(value, pa.float64(), mask=np.isnan(value)),
        pa.array(np.full(order.size, (day_date - date(1970, 1, 1)).days, np.int32), pa.date32()),
    ], schema=EVENTS_ARROW_SCHEMA)


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Separate streams for the latent path and for event draws (see the module docstring)."""
    return np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])


def _assignment_rng(seed: int) -> np.random.Generator:
    """Campaign assignment's own stream: sending or not never shifts the latent or event draws."""
    return np.random.default_rng([seed, 4])


def iter_latent_states(spec: DemoSpec, campaigns: Campaigns | None = None
                       ) -> Iterator[tuple[int, LatentState, np.ndarray]]:
    """(day index, state at that day's 00:00, join day per user) for day 0 .. spec.days (the end date).

    With `campaigns`, the state at a campaign day already holds that day's sends (`campaign_sent`) and
    every day holds the boosts still in effect. The state is advanced in place after each step: copy (or
    `take`) it to keep a snapshot.
    """
    latent_rng, _ = _rngs(spec.seed)
    assignment_rng = _assignment_rng(spec.seed)
    state, join_day = initial_state(spec, latent_rng)
    for day in range(spec.days + 1):
        if campaigns is not None:
            campaigns.send(spec, day, state, join_day, assignment_rng)
        yield day, state, join_day
        advance(state, join_day <= day, latent_rng)


def _with_sends(day: DayEvents, sent: np.ndarray) -> DayEvents:
    """The day's events plus a Campaign Sent at exactly 00:00:00 for each user sent today (no value)."""
    who = np.flatnonzero(sent)
    return DayEvents(
        user=np.concatenate([day.user, who]), code=np.concatenate([day.code, np.full(who.size, _CODE[CAMPAIGN_SENT],
                                                                                   np.int8)]),
        second=np.concatenate([day.second, np.zeros(who.size, np.int64)]),
        value=np.concatenate([day.value, np.full(who.size, np.nan)]),
    )


def generate_event_batches(users: int = 20_000, days: int = 120, end_date: date = date(2026, 6, 1),
                           seed: int = 7, campaigns: Campaigns | None = None) -> Iterator[pa.RecordBatch]:
    """One Arrow batch per day, in the event contract, sorted by time. Memory stays at about one day.

    `campaigns` (a `campaigns.CampaignSpec`) adds randomized sends and their effect; without it the
    output is the same as it always was.
    """
    spec = DemoSpec(users, days, end_date, seed)
    _, event_rng = _rngs(seed)
    ids, names = user_ids(users), pa.array(EVENT_NAMES, pa.string())
    for day, state, join_day in iter_latent_states(spec, campaigns):
        if day == spec.days:
            break
        day_date = spec.start_date + timedelta(days=day)
        active = np.flatnonzero((join_day <= day) & state.alive)
        events = simulate_day(state, active, day_date.weekday(), event_rng)
        if state.campaign_sent.any():
            events = _with_sends(events, state.campaign_sent)
        yield _to_batch(events, day_date, ids, names)


def generate_events(users: int = 20_000, days: int = 120, end_date: date = date(2026, 6, 1),
                    seed: int = 7, campaigns: Campaigns | None = None) -> pa.Table:
    """The whole demo history as one Arrow table (use `generate_event_batches` for very large sizes)."""
    return pa.Table.from_batches(list(generate_event_batches(users, days, end_date, seed, campaigns)),
                                 EVENTS_ARROW_SCHEMA)


# ---------------------------------------------------------------- ground truth


def default_snapshot_dates(end_date: date, count: int = 45) -> list[date]:
    """The last `count` days up to and including the end date (the first scoring date after the history)."""
    return [end_date - timedelta(days=k) for k in range(count - 1, -1, -1)]


def expected_sessions(state: LatentState, weekday: int) -> np.ndarray:
    """Expected sessions of each row that day (zero once churned)."""
    return state.sessions_per_day() * WEEKDAY_FACTOR[weekday] * state.alive


def purchase_hazard(state: LatentState, sessions: np.ndarray) -> np.ndarray:
    """Expected number of sessions with a purchase that day, given the latent state: P(none) = exp(−hazard).

    Sessions ~ Poisson(λ), carts per session ~ Poisson(m), each converting with probability c, so a
    session has a purchase with probability 1 − e^{−mc} and those sessions are Poisson(λ(1 − e^{−mc})).
    """
    return sessions * (1.0 - np.exp(-state.carts_per_session() * state.conversion()))


def _future_probabilities(state: LatentState, first_weekday: int, replicas: int, rng: np.random.Generator,
                          before_day: Callable[[int, LatentState], None] | None = None) -> dict[str, np.ndarray]:
    """True probability of each demo target for each (alive) user, re-simulating 14 days `replicas` times.

    `before_day(k, sim)` runs at 00:00 of each future day k ≥ 1 (campaign sends yet to come).
    """
    n = state.alive.size
    sim = state.take(np.repeat(np.arange(n), replicas))
    future = _Future(sim.alive.size)
    everyone = np.ones(future.rows, dtype=bool)
    for k in range(14):
        if before_day is not None and k > 0:
            before_day(k, sim)
        future.add_day(sim, k, (first_weekday + k) % 7, rng)
        advance(sim, everyone, rng)

    def per_user(x: np.ndarray) -> np.ndarray:
        return x.reshape(n, replicas).mean(axis=1)

    return {
        "likely_to_purchase": 1.0 - per_user(np.exp(-future.no_purchase_7)),
        "churn_risk": per_user(np.exp(-future.no_activity_14)),
        "cart_abandonment": per_user(future.abandoned().astype(float)),
        "high_value": per_user((future.value_14 >= HIGH_VALUE_THRESHOLD).astype(float)),
        "engagement_booster": 1.0 - per_user(np.exp(-future.no_click_7)),
    }


class _Future:
    """What the 14 re-simulated days add up to per row (user × replica).

    The `no_*` sums are expected event counts along the path: P(no such event) = exp(−sum). Closed forms
    given the path: sessions ~ Poisson(λ), carts per session ~ Poisson(m), each converting with probability
    c, so P(no purchase today) = exp(−λ(1 − e^{−mc})). Carts and purchases of days 0–7 are kept for the
    24 h abandonment rule; later days only add purchase value.
    """

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.no_purchase_7, self.no_click_7 = np.zeros(rows), np.zeros(rows)
        self.no_activity_14, self.value_14 = np.zeros(rows), np.zeros(rows)
        self.carts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (row, time, closed) per day
        self.buys: list[tuple[np.ndarray, np.ndarray]] = []  # (row, time) per day

    def add_day(self, sim: LatentState, k: int, weekday: int, rng: np.random.Generator) -> None:
        sessions_rate = expected_sessions(sim, weekday)
        click_rate = sim.clicks_per_day() * sim.alive
        if k < 7:
            self.no_purchase_7 += purchase_hazard(sim, sessions_rate)
            self.no_click_7 += click_rate
        self.no_activity_14 += sessions_rate + click_rate
        if k > 7:
            # Past the abandonment horizon only purchase amounts matter: same distribution, drawn per row.
            carts = rng.poisson(rng.poisson(sessions_rate) * sim.carts_per_session())
            buyer = np.repeat(np.arange(self.rows), rng.binomial(carts, sim.conversion()))
            self._add_value(buyer, _purchase_amounts(sim, buyer, rng))
            return
        # Carts and purchases drawn like simulate_day draws them (session starts matter for the 24h rule).
        session_row = np.repeat(np.arange(self.rows), rng.poisson(sessions_rate))
        drawn = _draw_carts(sim, session_row, _diurnal_seconds(rng, session_row.size), rng)
        self._add_value(drawn.buyer, drawn.amount)
        # Day-7 carts are outside the window: closed, so they never label.
        self.carts.append((drawn.who, k * DAY_S + drawn.second, drawn.converts | (k == 7)))
        self.buys.append((drawn.buyer, k * DAY_S + drawn.bought_at))

    def _add_value(self, buyer: np.ndarray, amount: np.ndarray) -> None:
        self.value_14 += np.bincount(buyer, weights=amount, minlength=self.rows)

    def abandoned(self) -> np.ndarray:
        """Per row: a cart of days 0–6 that no purchase followed within 24 hours."""
        cart_row, cart_time, closed = (np.concatenate(parts) for parts in zip(*self.carts, strict=True))
        buy_row, buy_time = (np.concatenate(parts) for parts in zip(*self.buys, strict=True))
        abandoned = np.zeros(self.rows, dtype=bool)
        abandoned[_unrescued_cart_rows(cart_row, cart_time, closed, buy_row, buy_time)] = True
        return abandoned


def _unrescued_cart_rows(cart_row: np.ndarray, cart_time: np.ndarray, converted: np.ndarray,
                         buy_row: np.ndarray, buy_time: np.ndarray) -> np.ndarray:
    """Rows with a cart that no purchase follows within 24 hours (times in seconds from the snapshot)."""
    stride = 10 * DAY_S  # larger than any time, so each row's purchases sort together and apart
    buy_key = np.sort(buy_row.astype(np.int64) * stride + buy_time)
    open_carts = ~converted
    key = cart_row[open_carts].astype(np.int64) * stride + cart_time[open_carts]
    nxt = np.searchsorted(buy_key, key, side="right")
    rescued = (nxt < buy_key.size) & (buy_key[np.minimum(nxt, buy_key.size - 1)] <= key + DAY_S)
    return cart_row[open_carts][~rescued]


GROUND_TRUTH_SCHEMA = pa.schema([
    pa.field("segment", pa.string()),
    pa.field("snapshot_date", pa.date32()),
    pa.field("user_id", pa.string()),
    pa.field("true_probability", pa.float64()),
])


def _future_sends(campaigns: Campaigns, spec: DemoSpec, day: int,
                  rng: np.random.Generator) -> Callable[[int, LatentState], None]:
    """Sends on the campaign days ahead of snapshot `day`, drawn per simulated row from the Monte Carlo's stream."""
    def send(k: int, sim: LatentState) -> None:
        # Every simulated row has joined (join day 0): the send decides eligibility from `alive`.
        campaigns.send(spec, day + k, sim, np.zeros(sim.alive.size, np.int32), rng)
    return send


def iter_ground_truth(users: int = 20_000, days: int = 120, end_date: date = date(2026, 6, 1), seed: int = 7,
                      snapshot_dates: Sequence[date] | None = None, replicas: int = 64,
                      campaigns: Campaigns | None = None) -> Iterator[pa.RecordBatch]:
    """One batch per snapshot date: every user who joined before it, with each demo target's probability.

    Users who churned before the snapshot are certain: no purchase, cart, value or click, and churned.
    With `campaigns` the truth is that of the treated history: the snapshot's own sends and the boosts in
    effect are replayed, and the history's campaign days inside the 14 days ahead send at random as they would.
    """
    spec = DemoSpec(users, days, end_date, seed)
    wanted = {spec.day_index(d): d for d in (snapshot_dates or default_snapshot_dates(end_date))}
    bad = [d for i, d in wanted.items() if not 1 <= i <= spec.days]
    if bad:
        raise ValueError(f"snapshot dates {bad} are outside the history ({spec.start_date} .. {end_date})")
    ids = user_ids(users)
    for day, state, join_day in iter_latent_states(spec, campaigns):
        if day not in wanted:
            continue
        snapshot = wanted[day]
        members = np.flatnonzero(join_day < day)
        alive = members[state.alive[members]]
        rng = np.random.default_rng([seed, 3, day])
        before_day = None if campaigns is None else _future_sends(campaigns, spec, day, rng)
        probabilities = _future_probabilities(state.take(alive), snapshot.weekday(), replicas, rng, before_day)
        certain = {"likely_to_purchase": 0.0, "churn_risk": 1.0, "cart_abandonment": 0.0, "high_value": 0.0,
                   "engagement_booster": 0.0}
        for segment in DEMO_SEGMENTS:
            p = np.full(users, np.nan)
            p[members] = certain[segment]
            p[alive] = probabilities[segment]
            yield pa.RecordBatch.from_arrays([
                pa.array(np.full(members.size, segment)),
                pa.array(np.full(members.size, (snapshot - date(1970, 1, 1)).days, np.int32), pa.date32()),
                ids.take(pa.array(members)),
                pa.array(p[members]),
            ], schema=GROUND_TRUTH_SCHEMA)


def ground_truth(users: int = 20_000, days: int = 120, end_date: date = date(2026, 6, 1), seed: int = 7,
                 snapshot_dates: Sequence[date] | None = None, replicas: int = 64,
                 campaigns: Campaigns | None = None) -> pa.Table:
    """The generator's true probability that each user meets each demo segment's target (see iter_ground_truth)."""
    batches = list(iter_ground_truth(users, days, end_date, seed, snapshot_dates, replicas, campaigns))
    return pa.Table.from_batches(batches, GROUND_TRUTH_SCHEMA)


def realised_labels(events: pa.Table, snapshot: date) -> pd.DataFrame:
    """What actually happened after `snapshot`, for users active in the 28 days before it.

    One row per eligible user, one boolean column per demo segment. Used for the job's summary and the
    benchmark (pandas; the segment pipeline computes its labels with Spark).
    """
    t0 = pd.Timestamp(snapshot, tz="UTC")
    day = pd.Timedelta(days=1)
    frame = events.select(["user_id", "event_name", "event_time", "event_value"]).to_pandas()
    frame = frame[(frame.event_time >= t0 - 28 * day) & (frame.event_time < t0 + 15 * day)]
    is_activity = frame.event_name.isin(ACTIVITY_EVENTS)
    before, after = frame.event_time < t0, frame.event_time >= t0
    eligible = pd.Index(frame.loc[before & is_activity, "user_id"].unique(), name="user_id").sort_values()
    within7 = after & (frame.event_time < t0 + 7 * day)
    within14 = after & (frame.event_time < t0 + 14 * day)
    is_purchase = frame.event_name == PURCHASE

    def has(mask: pd.Series) -> np.ndarray:
        return eligible.isin(frame.loc[mask, "user_id"].unique())

    spend = frame.loc[within14 & is_purchase].groupby("user_id").event_value.sum()
    carts = frame.loc[within7 & (frame.event_name == ADD_TO_CART), ["user_id", "event_time"]].sort_values("event_time")
    buys = frame.loc[after & is_purchase, ["user_id", "event_time"]].rename(columns={"event_time": "bought_at"})
    matched = pd.merge_asof(carts, buys.sort_values("bought_at"), left_on="event_time", right_on="bought_at",
                            by="user_id", direction="forward", allow_exact_matches=False)
    open_carts = matched.bought_at.isna() | (matched.bought_at > matched.event_time + day)
    labels = pd.DataFrame({
        "likely_to_purchase": has(within7 & is_purchase),
        "churn_risk": ~has(within14 & is_activity),
        "cart_abandonment": eligible.isin(matched.loc[open_carts, "user_id"].unique()),
        "high_value": eligible.isin(spend.index[spend >= HIGH_VALUE_THRESHOLD]),
        "engagement_booster": has(within7 & (frame.event_name == CLICK)),
    }, index=eligible)
    return labels
