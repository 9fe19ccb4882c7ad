"""Randomized campaigns in the demo generator: exposures with a heterogeneous true effect, and the true uplift.

A campaign day comes every `every_days` days, counted back from the end date. On it each user who has
joined (churned or not: a sender cannot tell a churned user from a quiet one) is sent a campaign
independently with the known probability `share`, drawn from a random stream of its own. The send is an
event, `Campaign Sent`, at exactly 00:00:00 UTC, so a snapshot at that midnight does not see it as a
feature (features use event_time < T): "treated at T" means a send in [T, T + 1 day). From the send day
on, for `effect_days` days, the user's carts per session are multiplied by exp(τ), τ being the user's own
true log-effect (`log_effect`). Nothing else changes: the latent walks, churn and the event draws of every
other user are those of the history without campaigns.

`ground_truth_uplift` gives, at a campaign day T, each user's probability of a purchase within the
horizon if sent at T and if not, from the same Monte Carlo as the demo's other ground truth.

Randomized campaigns
--------------------
Turn them on with `demo.generate_events(..., campaigns=CampaignSpec())` or
`python -m jobs.generate_demo_events --campaigns`. The effect is on carts per session only (so on
purchases through the carts that convert), ×exp(τ) on the send day and the 6 days after. τ is fixed per
user and depends on two base traits, standardised to standard normals: zp = (base_purchase − log 0.17) / 0.8
(purchase propensity) and zr = (base_response + 2.3) / 1.1 (notification responsiveness):

    τ = 1.5 · σ(−1.5 · zp) · σ(2 · zr) − 0.8 · [zr < −1.3]

Three groups, measured on the 20,000 users of the default spec (seed 7):

- persuadables, rare buyers who read their notifications: τ > 0.3 for 46.5 % of users (τ ≤ 1.48);
- loyal buyers, who buy anyway: |τ| < 0.05 for 6.8 %;
- sleeping dogs, the least responsive, put off by the contact: τ < 0 for 9.9 % (τ ≥ −0.80).

The mean τ is 0.29. At the campaign day 2026-05-25 of 6,000 users over 100 days (seed 7, 64 replicas),
among the 3,483 users who joined before it and have not churned, P(a purchase within 7 days) is 0.173 if
not sent and 0.208 if sent: a mean true uplift of +0.035, +0.071 among persuadables (base 0.121), +0.005
among loyal buyers (base 0.340) and −0.078 among sleeping dogs (base 0.180). A model that targets the
likeliest buyers finds the loyal ones, whose uplift is about zero; the uplift is where the base rate is low.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

import numpy as np
import pyarrow as pa

from segments_lib.intake import demo
from segments_lib.intake.demo import CAMPAIGN_SENT, DemoSpec, LatentState

__all__ = ["CAMPAIGN_SENT", "UPLIFT_TRUTH_SCHEMA", "CampaignSpec", "campaign_day_indices", "campaign_days",
           "default_uplift_snapshot_dates", "ground_truth_uplift", "iter_ground_truth_uplift", "log_effect"]

# τ = PERSUADABLE_LOG_EFFECT · σ(PURCHASE_SLOPE · zp) · σ(RESPONSE_SLOPE · zr)
#     − SLEEPING_DOG_LOG_EFFECT · [zr < SLEEPING_DOG_Z],
# with zp, zr the standardised base purchase propensity and notification responsiveness. The shape gives an
# uplift model something to find that a response model does not: the biggest lift is where purchases are
# rare (low zp) but messages are read (high zr), loyal buyers (high zp) buy anyway, and the least responsive
# users dislike being contacted.
PERSUADABLE_LOG_EFFECT = 1.5  # at most ×e^1.5 ≈ 4.5 carts per session
PURCHASE_SLOPE = -1.5  # the effect fades as the user already buys
RESPONSE_SLOPE = 2.0  # and grows with how much the user reacts to notifications
SLEEPING_DOG_Z = -1.3  # the least responsive tail, Φ(−1.3) ≈ 10 % of users ("sleeping dogs")
SLEEPING_DOG_LOG_EFFECT = 0.8  # put off by the contact: ×e^−0.8 ≈ 0.45 carts per session while it lasts

UPLIFT_TRUTH_SCHEMA = pa.schema([
    pa.field("snapshot_date", pa.date32()),
    pa.field("user_id", pa.string()),
    pa.field("treated", pa.bool_()),
    pa.field("p_treated", pa.float64()),
    pa.field("p_control", pa.float64()),
    pa.field("true_uplift", pa.float64()),
])


@dataclass(frozen=True)
class CampaignSpec:
    """A campaign every `every_days` days back from the end date, sent to each eligible user with
    probability `share`, changing behaviour on the send day and the `effect_days` − 1 days after it."""
    every_days: int = 7
    share: float = 0.5
    effect_days: int = 7

    def __post_init__(self) -> None:
        if self.every_days < 1:
            raise ValueError(f"every_days must be at least 1, got {self.every_days}")
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"share must be between 0 and 1, got {self.share}")
        # One campaign's effect ends before the next is sent, so the state at a campaign day holds no
        # leftover effect and the uplift truth's control arm is simply "no boost".
        if not 1 <= self.effect_days <= self.every_days:
            raise ValueError(f"effect_days must be between 1 and every_days ({self.every_days}), "
                             f"got {self.effect_days}")

    def is_campaign_day(self, spec: DemoSpec, day: int) -> bool:
        return 1 <= day < spec.days and (spec.days - day) % self.every_days == 0

    def send(self, spec: DemoSpec, day: int, state: LatentState, join_day: np.ndarray,
             rng: np.random.Generator) -> None:
        """At 00:00 of `day`: on a campaign day, send to eligible users at random and start the effect."""
        if not self.is_campaign_day(spec, day):
            return
        # One uniform for every user, eligible or not, so the stream's position never depends on who is.
        u = rng.random(state.alive.size)
        # Churned users are sent too: the sender cannot tell them from quiet ones. Sending only to the
        # living would make "was sent" reveal a latent state, and treated and control users at a snapshot
        # would differ before the send (the control arm holding every churned user).
        sent = (join_day <= day) & (u < self.share)
        # New arrays rather than writes in place: a snapshot sharing the old ones keeps its own values.
        state.campaign_boost = np.where(sent, log_effect(state), state.campaign_boost)
        state.campaign_days_left = np.where(sent, self.effect_days, state.campaign_days_left).astype(np.int32)
        state.campaign_sent = sent


def campaign_day_indices(spec: DemoSpec, campaigns: CampaignSpec) -> list[int]:
    """Day indices (0 = the history's first day) of the campaign days, in order."""
    return [d for d in range(1, spec.days) if campaigns.is_campaign_day(spec, d)]


def campaign_days(spec: DemoSpec, campaigns: CampaignSpec) -> list[date]:
    """The campaign days of the history, oldest first: end_date − every_days, end_date − 2·every_days, ..."""
    return [spec.start_date + timedelta(days=d) for d in campaign_day_indices(spec, campaigns)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def log_effect(state: LatentState) -> np.ndarray:
    """Each user's true log-multiplier τ on carts per session while a campaign's effect lasts."""
    zp = (state.base_purchase - demo.BASE_PURCHASE_MEAN) / demo.BASE_PURCHASE_SD
    zr = (state.base_response - demo.BASE_RESPONSE_MEAN) / demo.BASE_RESPONSE_SD
    return (PERSUADABLE_LOG_EFFECT * _sigmoid(PURCHASE_SLOPE * zp) * _sigmoid(RESPONSE_SLOPE * zr)
            - SLEEPING_DOG_LOG_EFFECT * (zr < SLEEPING_DOG_Z))


def default_uplift_snapshot_dates(spec: DemoSpec, campaigns: CampaignSpec, horizon_days: int = 7) -> list[date]:
    """The campaign days whose horizon ends within the history (so the realised outcome is observable)."""
    return [spec.start_date + timedelta(days=d) for d in campaign_day_indices(spec, campaigns)
            if d + horizon_days <= spec.days]


def _purchase_probabilities(state: LatentState, first_weekday: int, campaigns: CampaignSpec, replicas: int,
                            horizon_days: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """P(a purchase within `horizon_days`) per (alive) user if sent at 00:00 of the first day, and if not.

    Both arms follow the same simulated latent path per replica (common random numbers): a send changes
    carts per session and nothing the path depends on, and the closed form `demo.purchase_hazard` draws no
    events that would make the arms' random sequences diverge. So the difference carries little noise.
    """
    n = state.alive.size
    sim = state.take(np.repeat(np.arange(n), replicas))
    rows = sim.alive.size
    sim.campaign_boost = log_effect(sim)  # the treated arm, sent now; the replayed sends are overridden
    sim.campaign_days_left = np.full(rows, campaigns.effect_days, np.int32)
    no_boost = np.zeros(rows)
    everyone = np.ones(rows, dtype=bool)
    treated_hazard, control_hazard = np.zeros(rows), np.zeros(rows)
    for k in range(horizon_days):
        if k > 0:
            demo.advance(sim, everyone, rng)
        sessions = demo.expected_sessions(sim, (first_weekday + k) % 7)
        treated_hazard += demo.purchase_hazard(sim, sessions)
        control_hazard += demo.purchase_hazard(replace(sim, campaign_boost=no_boost), sessions)

    def probability(hazard: np.ndarray) -> np.ndarray:
        return 1.0 - np.exp(-hazard).reshape(n, replicas).mean(axis=1)

    return probability(treated_hazard), probability(control_hazard)


def iter_ground_truth_uplift(users: int, days: int, end_date: date, seed: int, campaigns: CampaignSpec,
                             snapshot_dates: Sequence[date] | None = None, replicas: int = 64,
                             horizon_days: int = 7) -> Iterator[pa.RecordBatch]:
    """One batch per campaign day T (see `ground_truth_uplift`)."""
    if not 1 <= horizon_days <= campaigns.every_days:
        # A longer horizon would reach the next campaign, whose random send neither arm accounts for.
        raise ValueError(f"horizon_days must be between 1 and every_days ({campaigns.every_days}), "
                         f"got {horizon_days}")
    spec = DemoSpec(users, days, end_date, seed)
    if snapshot_dates is None:
        snapshot_dates = default_uplift_snapshot_dates(spec, campaigns, horizon_days)
    wanted = {spec.day_index(d): d for d in snapshot_dates}
    bad = [d.isoformat() for i, d in wanted.items() if not campaigns.is_campaign_day(spec, i)]
    if bad:
        raise ValueError(f"snapshot dates {', '.join(bad)} are not campaign days (every {campaigns.every_days} "
                         f"days back from {end_date}, after {spec.start_date})")
    if not wanted:
        return
    ids = demo.user_ids(users)
    for day, state, join_day in demo.iter_latent_states(spec, campaigns):
        if day not in wanted:
            continue
        members = np.flatnonzero(join_day < day)
        alive = members[state.alive[members]]
        p_treated, p_control = np.zeros(users), np.zeros(users)  # churned users: certain, no purchase either way
        rng = np.random.default_rng([seed, 5, day])
        p_treated[alive], p_control[alive] = _purchase_probabilities(
            state.take(alive), wanted[day].weekday(), campaigns, replicas, horizon_days, rng)
        yield pa.RecordBatch.from_arrays([
            pa.array(np.full(members.size, (wanted[day] - date(1970, 1, 1)).days, np.int32), pa.date32()),
            ids.take(pa.array(members)),
            pa.array(state.campaign_sent[members]),
            pa.array(p_treated[members]),
            pa.array(p_control[members]),
            pa.array(p_treated[members] - p_control[members]),
        ], schema=UPLIFT_TRUTH_SCHEMA)
        if day == max(wanted):
            break


def ground_truth_uplift(users: int, days: int, end_date: date, seed: int, campaigns: CampaignSpec,
                        snapshot_dates: Sequence[date] | None = None, replicas: int = 64,
                        horizon_days: int = 7) -> pa.Table:
    """The true effect of a send at each campaign day T on P(a purchase in [T, T + horizon_days)).

    One row per user who joined before T: `treated` (sent at T in the generated events), `p_treated`
    and `p_control` (the probability if sent at T / if not, on common random numbers) and
    `true_uplift` = p_treated − p_control; 0 for users churned before T. Snapshot dates default to the
    campaign days whose horizon ends within the history; any other date than a campaign day is refused.
    """
    batches = list(iter_ground_truth_uplift(users, days, end_date, seed, campaigns, snapshot_dates, replicas,
                                            horizon_days))
    return pa.Table.from_batches(batches, UPLIFT_TRUTH_SCHEMA)
