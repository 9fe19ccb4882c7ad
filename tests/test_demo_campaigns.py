"""Randomized campaigns in the demo generator: the schedule, the assignment, the true effect and its ground truth.

Expectations are worked out by hand (dates, τ, binomial bands) or come from what was generated before
campaigns existed (the sha256 digests), never from the code under test.
"""

from __future__ import annotations

import hashlib
import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from segments_lib.intake import demo
from segments_lib.intake.campaigns import (
    CAMPAIGN_SENT,
    CampaignSpec,
    campaign_days,
    ground_truth_uplift,
    log_effect,
)

END = date(2026, 6, 1)
DAY = pd.Timedelta(days=1)
# The end-to-end population: large enough that the realised uplift is measured to about ±0.005.
USERS, DAYS, SEED = 6000, 70, 3
# Digests of `_sha256` from the generator as it was before campaigns (commit dd3cea7), for
# generate_events(users=300, days=20, seed=5) and the ground_truth call below. Floats are written with 9
# significant digits: numpy's vectorised exp and log may differ in the last bit between CPUs, and the
# full-precision digest of the ground truth did differ between two machines for the same code.
EVENTS_SHA256 = "f1dc6789ddc1304e24b2ba60d52e948a29b7b224b9786a2561d671e9701a30cc"
TRUTH_SHA256 = "edd59254a5c8f0e7986dba66bd83fc26ecdece91a2a255f5920fed1c821b28c9"


def _sha256(table: pa.Table) -> str:
    return hashlib.sha256(table.to_pandas().to_csv(index=False, float_format="%.9g").encode()).hexdigest()


@pytest.fixture(scope="module")
def treated_history() -> pd.DataFrame:
    return demo.generate_events(users=USERS, days=DAYS, end_date=END, seed=SEED, campaigns=CampaignSpec()).to_pandas()


@pytest.fixture(scope="module")
def replay() -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per day index of the end-to-end history: (eligible, sent, boost, days left) at that day's 00:00."""
    spec = demo.DemoSpec(USERS, DAYS, END, SEED)
    return {day: (join_day <= day, state.campaign_sent.copy(), state.campaign_boost.copy(),
                  state.campaign_days_left.copy())
            for day, state, join_day in demo.iter_latent_states(spec, CampaignSpec())}


@pytest.fixture(scope="module")
def uplift_truth() -> pd.DataFrame:
    return ground_truth_uplift(USERS, DAYS, END, SEED, CampaignSpec(), replicas=8).to_pandas()


@pytest.fixture(scope="module")
def tau() -> pd.Series:
    """Each end-to-end user's τ (fixed per user: it depends on base traits only)."""
    _, state, _ = next(demo.iter_latent_states(demo.DemoSpec(USERS, DAYS, END, SEED)))
    return pd.Series(log_effect(state), index=demo.user_ids(USERS).to_pylist())


def test_campaign_days_count_back_from_the_end_date() -> None:
    # start_date = 2026-06-01 − 30 days = 2026-05-02; d with (30 − d) % 7 == 0 and 1 <= d < 30: 2, 9, 16, 23.
    spec = demo.DemoSpec(users=10, days=30, end_date=END)
    assert campaign_days(spec, CampaignSpec(every_days=7)) == [
        date(2026, 5, 4), date(2026, 5, 11), date(2026, 5, 18), date(2026, 5, 25)]


def test_an_effect_longer_than_the_gap_between_campaigns_is_refused() -> None:
    with pytest.raises(ValueError, match="effect_days"):
        CampaignSpec(every_days=7, effect_days=8)
    with pytest.raises(ValueError, match="share"):
        CampaignSpec(share=1.5)


def test_without_campaigns_events_and_ground_truth_are_byte_identical_to_before() -> None:
    assert _sha256(demo.generate_events(users=300, days=20, seed=5)) == EVENTS_SHA256
    truth = demo.ground_truth(users=200, days=20, seed=5, snapshot_dates=[date(2026, 5, 18), date(2026, 5, 25)],
                              replicas=4)
    assert _sha256(truth) == TRUTH_SHA256


def test_sends_are_events_at_midnight_of_campaign_days_to_half_the_eligible_users(
        treated_history: pd.DataFrame, replay: dict) -> None:
    assert CAMPAIGN_SENT not in demo.ACTIVITY_EVENTS
    assert demo.EVENT_NAMES[-1] == CAMPAIGN_SENT  # appended: every other event keeps its code
    sends = treated_history[treated_history.event_name == CAMPAIGN_SENT]
    spec = demo.DemoSpec(USERS, DAYS, END, SEED)
    days = campaign_days(spec, CampaignSpec())
    # 70 days back from 2026-06-01 start on 2026-03-23; campaigns every 7 days back from the end: 9 of them.
    assert days[0] == date(2026, 3, 30) and days[-1] == date(2026, 5, 25) and len(days) == 9
    assert set(sends.event_date) == set(days)
    assert (sends.event_time == pd.to_datetime(sends.event_date).dt.tz_localize("UTC")).all()  # 00:00:00 exactly
    assert sends.event_value.isna().all()
    assert not sends.duplicated(["user_id", "event_date"]).any()
    ids = np.array(demo.user_ids(USERS).to_pylist())
    for day in days:
        eligible, sent, _, _ = replay[spec.day_index(day)]
        assert set(sends[sends.event_date == day].user_id) == set(ids[sent])
        assert not (sent & ~eligible).any()
        n = int(eligible.sum())
        band = 4 * math.sqrt(0.5 * 0.5 / n)  # binomial(n, 0.5) share: standard deviation sqrt(0.25 / n)
        assert abs(sent.sum() / n - 0.5) < band, (day, n, int(sent.sum()))


def test_the_boost_lasts_seven_days_and_leaves_the_latent_walks_alone(replay: dict, tau: pd.Series) -> None:
    d = demo.DemoSpec(USERS, DAYS, END, SEED).day_index(date(2026, 5, 4))
    _, sent, boost, days_left = replay[d]
    assert np.array_equal(boost, np.where(sent, tau.to_numpy(), 0.0))
    assert np.array_equal(days_left, np.where(sent, 7, 0))
    _, _, boost6, left6 = replay[d + 6]  # the effect's last day
    assert np.array_equal(boost6, boost) and np.array_equal(left6, np.where(sent, 1, 0))
    sent7, boost7 = replay[d + 7][1], replay[d + 7][2]  # the next campaign day: only its own sends
    assert np.array_equal(boost7, np.where(sent7, tau.to_numpy(), 0.0))

    spec = demo.DemoSpec(USERS, DAYS, END, SEED)
    *_, (_, plain, _) = demo.iter_latent_states(spec)
    *_, (_, treated, _) = demo.iter_latent_states(spec, CampaignSpec())
    for trait in ("x_activity", "x_purchase", "x_churn", "x_spend", "x_response", "alive"):
        assert np.array_equal(getattr(plain, trait), getattr(treated, trait)), trait


def test_events_before_the_first_campaign_are_those_without_campaigns(treated_history: pd.DataFrame) -> None:
    plain = demo.generate_events(users=USERS, days=DAYS, end_date=END, seed=SEED).to_pandas()
    first = pd.Timestamp("2026-03-30", tz="UTC")
    before = treated_history[treated_history.event_time < first].reset_index(drop=True)
    pd.testing.assert_frame_equal(before, plain[plain.event_time < first].reset_index(drop=True))


def test_log_effect_of_three_hand_made_users() -> None:
    zp = np.array([-2.0, 3.0, 0.0])
    zr = np.array([2.0, 0.0, -2.0])
    zeros = np.zeros(3)
    state = demo.LatentState(
        base_activity=zeros, base_purchase=np.log(0.17) + 0.8 * zp, conversion_logit=zeros, base_churn=zeros,
        base_spend=zeros, base_response=-2.3 + 1.1 * zr, x_activity=zeros, x_purchase=zeros, x_churn=zeros,
        x_spend=zeros, x_response=zeros, alive=np.ones(3, dtype=bool))
    expected = [
        # persuadable: 1.5 · σ(3) · σ(4) = 1.5 · 0.95257 · 0.98201 ≈ 1.4032
        1.5 * (1 / (1 + math.exp(-3.0))) * (1 / (1 + math.exp(-4.0))),
        # loyal buyer: 1.5 · σ(−4.5) · σ(0) = 1.5 · 0.010987 · 0.5 ≈ 0.00824
        1.5 * (1 / (1 + math.exp(4.5))) * 0.5,
        # sleeping dog (zr = −2 < −1.3): 1.5 · σ(0) · σ(−4) − 0.8 = 1.5 · 0.5 · 0.017986 − 0.8 ≈ −0.7865
        1.5 * 0.5 * (1 / (1 + math.exp(4.0))) - 0.8,
    ]
    assert log_effect(state) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx([1.4032, 0.00824, -0.7865], abs=1e-4)


def test_true_uplift_follows_tau_and_is_exactly_zero_for_churned_users(uplift_truth: pd.DataFrame,
                                                                        tau: pd.Series) -> None:
    truth = uplift_truth.assign(tau=tau.reindex(uplift_truth.user_id).to_numpy())
    assert (truth.true_uplift == truth.p_treated - truth.p_control).all()
    assert truth[["p_treated", "p_control"]].stack().between(0.0, 1.0).all()
    churned = truth[truth.p_control == 0.0]
    assert len(churned) > 100
    assert (churned.p_treated == 0.0).all() and (churned.true_uplift == 0.0).all()
    # Sent like everyone else (the sender cannot tell), at the same random share: about half of them.
    assert abs(churned.treated.mean() - 0.5) < 4 * math.sqrt(0.25 / len(churned))
    alive = truth[truth.p_control > 0.0]

    strong = alive[alive.tau.abs() > 0.3]
    assert len(strong) > 5000
    assert (np.sign(strong.true_uplift) == np.sign(strong.tau)).mean() >= 0.95
    none = alive[alive.tau.abs() < 0.01]
    assert len(none) >= 20 and (none.true_uplift.abs() < 0.01).all()
    # The groups differ by far more than Monte Carlo noise: persuadables gain, sleeping dogs lose.
    assert alive[alive.tau > 0.3].true_uplift.mean() > 0.04
    assert alive[alive.tau < 0.0].true_uplift.mean() < -0.04
    assert np.corrcoef(alive.tau, alive.true_uplift)[0, 1] > 0.5


def test_realised_treated_minus_control_matches_the_true_uplift(treated_history: pd.DataFrame, replay: dict,
                                                                uplift_truth: pd.DataFrame) -> None:
    spec = demo.DemoSpec(USERS, DAYS, END, SEED)
    ids = np.array(demo.user_ids(USERS).to_pylist())
    purchases = treated_history[treated_history.event_name == demo.PURCHASE]
    sends = treated_history[treated_history.event_name == CAMPAIGN_SENT]
    realised, variances, true = [], [], []
    snapshots = sorted(set(uplift_truth.snapshot_date))
    assert snapshots == campaign_days(spec, CampaignSpec())  # each one's 7 days end within the history
    for day in snapshots:
        t0 = pd.Timestamp(day, tz="UTC")
        eligible = set(ids[replay[spec.day_index(day)][0]])
        rows = uplift_truth[(uplift_truth.snapshot_date == day) & uplift_truth.user_id.isin(eligible)]
        # The truth's rows are users who joined before the day; those joining on it can be sent too.
        assert set(rows.user_id[rows.treated]) == set(sends.user_id[sends.event_date == day]) & set(rows.user_id)
        window = purchases[(purchases.event_time >= t0) & (purchases.event_time < t0 + 7 * DAY)]
        bought = rows.user_id.isin(set(window.user_id)).to_numpy()
        sent = rows.treated.to_numpy()
        realised.append(bought[sent].mean() - bought[~sent].mean())
        variances.append(bought[sent].var() / sent.sum() + bought[~sent].var() / (~sent).sum())
        true.append(rows.true_uplift.mean())
    # Assignments are independent across campaign days and one send's 7 days end before the next, so the
    # days' differences are independent: their mean has standard error sqrt(Σ var) / k.
    k = len(snapshots)
    se = math.sqrt(sum(variances)) / k
    estimate, expected = sum(realised) / k, sum(true) / k
    assert abs(estimate - expected) < 3 * se, (estimate, expected, se)
    assert expected > 5 * se  # a real effect, which a generator without one could not match by chance


def test_each_arm_matches_the_segment_ground_truth_of_the_treated_history(uplift_truth: pd.DataFrame) -> None:
    # Two independent Monte Carlos: the uplift truth's arm a user actually took, and likely_to_purchase's
    # truth replaying that user's send (the next campaign is 7 days on, outside the week).
    snapshot = date(2026, 5, 18)
    segment = demo.ground_truth(USERS, DAYS, END, SEED, [snapshot], replicas=8, campaigns=CampaignSpec()).to_pandas()
    likely = segment[segment.segment == "likely_to_purchase"].set_index("user_id").true_probability
    rows = uplift_truth[(uplift_truth.snapshot_date == snapshot) & (uplift_truth.p_control > 0)].set_index("user_id")
    taken = rows.p_treated.where(rows.treated, rows.p_control)
    gap = likely.reindex(rows.index) - taken
    assert abs(gap[rows.treated].mean()) < 0.005 and abs(gap[~rows.treated].mean()) < 0.005
    assert rows.p_treated[rows.treated].mean() - rows.p_control[rows.treated].mean() > 0.02


def test_uplift_truth_refuses_dates_that_are_not_campaign_days_and_horizons_past_the_next() -> None:
    with pytest.raises(ValueError, match="2026-05-19"):
        ground_truth_uplift(50, 30, END, 1, CampaignSpec(), snapshot_dates=[date(2026, 5, 18), date(2026, 5, 19)])
    with pytest.raises(ValueError, match="horizon_days"):
        ground_truth_uplift(50, 30, END, 1, CampaignSpec(), horizon_days=8)


def test_job_writes_the_treated_history_and_its_uplift_truth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs import generate_demo_events

    monkeypatch.setenv("SEGMENTS_WORKSPACE", str(tmp_path / "ws"))
    argv = ["--users", "300", "--days", "30", "--seed", "4", "--truth-days", "10", "--replicas", "4", "--campaigns"]
    assert generate_demo_events.main(argv) == 0
    events = DeltaTable(str(tmp_path / "ws" / "tables" / "events")).to_pyarrow_table().to_pandas()
    sends = events[events.event_name == CAMPAIGN_SENT]
    # 30 days to 2026-06-01: campaigns on 05-04, 05-11, 05-18, 05-25 (see the first test).
    assert sorted(set(sends.event_date)) == [date(2026, 5, 4), date(2026, 5, 11), date(2026, 5, 18),
                                             date(2026, 5, 25)]
    expected = demo.generate_events(users=300, days=30, end_date=END, seed=4, campaigns=CampaignSpec())
    assert len(events) == expected.num_rows
    uplift = DeltaTable(str(tmp_path / "ws" / "tables" / "demo_uplift_ground_truth")).to_pyarrow_table()
    # Truth snapshots are the last 10 days (05-23 .. 06-01); of the campaign days only 05-25 is among them,
    # and its 7 days end by 06-01.
    assert set(uplift.column("snapshot_date").to_pylist()) == {date(2026, 5, 25)}
    assert set(uplift.schema.names) == {"snapshot_date", "user_id", "treated", "p_treated", "p_control", "true_uplift"}
