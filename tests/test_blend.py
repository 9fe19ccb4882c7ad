"""The GBT + BG/NBD quantile blend of `occurs` segments (issue 19): knots, interpolation, who gets it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from segments_lib.language.definitions import Absent, AnyOf, GbtParams, Occurs, Sequence, TrainingSettings, ValueSum
from segments_lib.model.blend import (
    GBT_SCORE,
    QuantileBlend,
    QuantileBlendModel,
    blend_slugs,
    ecdf_knots,
    piecewise_linear,
)
from segments_lib.model.pipeline import fit_with_time_validation

BUY, VIEW = "Purchase Completed", "Product Viewed"
BASE = ["purchase_completed", "product_viewed"]


def test_only_repeat_event_targets_get_the_blend_over_their_events_with_bgnbd_columns() -> None:
    on, off = TrainingSettings(), TrainingSettings(score_blend="none")
    assert on.score_blend == "auto"  # the default: the validation fold decides (fit_with_time_validation)
    assert blend_slugs(Occurs((BUY,)), TrainingSettings(score_blend="bgnbd"), BASE) == ["purchase_completed"]
    assert blend_slugs(Occurs((BUY,)), on, BASE) == ["purchase_completed"]
    assert blend_slugs(Occurs((BUY, VIEW, BUY), min_count=2), on, BASE) == ["purchase_completed", "product_viewed"]
    assert blend_slugs(AnyOf((Occurs((BUY,)), Occurs(("Cart Added",)))), on, BASE) == ["purchase_completed"]
    assert blend_slugs(Occurs((BUY,)), off, BASE) == []
    assert blend_slugs(Occurs(("Cart Added",)), on, BASE) == []  # no BG/NBD columns for it
    assert blend_slugs(Absent((BUY,)), on, BASE) == []  # churn: BG/NBD says nothing about "does not occur"
    assert blend_slugs(ValueSum((BUY,), at_least=100.0), on, BASE) == []
    assert blend_slugs(Sequence(VIEW, BUY, timedelta(days=1)), on, BASE) == []
    assert blend_slugs(AnyOf((Occurs((BUY,)), Absent((VIEW,)))), on, BASE) == []


def test_ecdf_knots_collapse_a_point_mass_to_its_mid_share() -> None:
    # Quantiles at shares 0, .25, .5, .75, 1 of [0, 0, 0, 2, 5]: the zeros span shares 0–0.5.
    knots = ecdf_knots([0.0, 0.0, 0.0, 2.0, 5.0], [0.0, 0.25, 0.5, 0.75, 1.0])
    assert knots == [(0.0, 0.25), (2.0, 0.75), (5.0, 1.0)]


def test_piecewise_linear_interpolates_and_is_flat_outside(spark: SparkSession) -> None:
    knots = [(0.0, 0.25), (2.0, 0.75), (5.0, 1.0)]
    df = spark.createDataFrame([(-1.0,), (0.0,), (1.0,), (3.5,), (5.0,), (9.0,), (None,)], "x double")
    got = [r.y for r in df.select(piecewise_linear(knots, F.col("x")).alias("y")).collect()]
    # 1.0 is halfway 0→2: 0.25 + 0.5·0.5; 3.5 is halfway 2→5: 0.75 + 0.5·0.25.
    assert got == [0.25, 0.25, 0.5, 0.875, 1.0, 1.0, None]


def test_blend_averages_the_two_quantiles_keeps_the_gbt_score_and_survives_save(spark: SparkSession,
                                                                                 tmp_path) -> None:
    # 100 training rows: score i/100; rate 0 for i ≤ 40 (a point mass, shares 0–0.4), else 101 − i, so
    # the rate ranks the other rows in the reverse order. Hence F_score(s) ≈ s, F_rate(0) ≈ 0.2 (the mass's
    # mid-share) and F_rate(v) ≈ 0.4 + v/100 for v in 1..60.
    rows = [(i / 100, 0.0 if i <= 40 else float(101 - i)) for i in range(1, 101)]
    train = spark.createDataFrame(rows, "raw_score double, bgnbd_rate__purchase_completed double")
    model = QuantileBlend(slugs=["purchase_completed"], scoreCol="raw_score").fit(train)
    assert isinstance(model, QuantileBlendModel)
    model.write().overwrite().save(str(tmp_path / "blend"))
    reloaded = QuantileBlendModel.load(str(tmp_path / "blend"))
    probe = spark.createDataFrame(
        [("top", 1.0, 60.0), ("low_score", 0.01, 60.0), ("no_rate", 1.0, 0.0), ("middle", 0.5, 10.0),
         ("beyond", 3.0, 500.0)],
        "user_id string, raw_score double, bgnbd_rate__purchase_completed double")
    got = {r.user_id: r for r in reloaded.transform(probe).collect()}
    assert got["top"][GBT_SCORE] == 1.0 and got["low_score"][GBT_SCORE] == 0.01
    expected = {"top": 0.5 * 1.0 + 0.5 * 1.0, "low_score": 0.5 * 0.0 + 0.5 * 1.0, "no_rate": 0.5 * 1.0 + 0.5 * 0.2,
                "middle": 0.5 * 0.5 + 0.5 * 0.5}
    for user, value in expected.items():
        assert got[user].raw_score == pytest.approx(value, abs=0.015), user
    # Beyond the training range both CDFs are flat at the top knot's mid-share (the maxima sit at shares
    # 0.995–1, so 0.9975); the ε·gbt_score term still orders it above "top".
    assert got["beyond"].raw_score > got["top"].raw_score
    assert got["beyond"].raw_score == pytest.approx((1 - 1e-6) * 0.9975 + 1e-6 * 3.0, abs=1e-9)
    assert got["top"].raw_score <= 1.0  # a probability's range: (1 − ε)·quantiles + ε·gbt_score


SNAPSHOTS = [datetime(2026, 5, d, tzinfo=timezone.utc) for d in (4, 11, 18)]
CUSTOMER_BASE = ["count_all__buy", "span_days__buy", "first_days__buy"]
FRAME_SCHEMA = ("snapshot_time timestamp, user_id string, count_all__buy double, span_days__buy double, "
                "first_days__buy double, signal double, label double")


def customer_frame(spark: SparkSession, label_from: str):
    """40 users per snapshot, all 60 days old and buying on the snapshot's day (t_x = T), 1–5 purchases.

    With t_x = T the BG/NBD rate P(alive)·(r + x)/(α + T) rises with x whatever the fitted parameters, so
    the rate ranks users by their purchase count. `label_from="count"`: label 1 iff 4+ purchases (the rate
    ranks perfectly); `"signal"`: label 1 iff `signal` is 1, which is independent of the count.
    """
    rows = []
    for t in SNAPSHOTS:
        for i in range(40):
            count, signal = float(1 + i % 5), float(i // 5 % 2)
            label = float(count >= 4) if label_from == "count" else signal
            rows.append((t, f"u{i}", count, 60.0, 60.0, signal, label))
    return spark.createDataFrame(rows, FRAME_SCHEMA)


SPLITS_ANYTHING = GbtParams(max_iter=5, max_depth=2, step_size=0.3, subsampling_rate=1.0, min_instances_per_node=1)
SPLITS_NOTHING = GbtParams(max_iter=5, max_depth=2, step_size=0.3, subsampling_rate=1.0, min_instances_per_node=1000)


def test_auto_keeps_the_gbt_alone_when_the_blend_ranks_worse_on_the_newest_snapshot(spark: SparkSession) -> None:
    # The GBT separates the classes by `signal` (validation AUC-PR 1); averaging in a rate that is
    # unrelated to the label lets some negatives overtake some positives, so the blend's AUC-PR is < 1.
    frame = customer_frame(spark, "signal")
    settings = TrainingSettings(gbt=SPLITS_ANYTHING, search=(), seed=3)
    result = fit_with_time_validation(frame, [*CUSTOMER_BASE, "signal"], settings, ["buy"])
    assert result.validation_snapshot == SNAPSHOTS[-1] and result.n_validation == 40
    alone, blended = result.candidates  # one fit judged twice: the GBT's own score first
    assert (alone.params, alone.blended, blended.blended) == (SPLITS_ANYTHING, False, True)
    assert alone.validation_auc_pr == pytest.approx(1.0)
    assert blended.validation_auc_pr < 0.99
    assert result.blended is False
    assert not any(isinstance(s, QuantileBlendModel) for s in result.model.stages)
    assert GBT_SCORE not in result.model.transform(frame).columns

    forced = fit_with_time_validation(frame, [*CUSTOMER_BASE, "signal"], replace_blend(settings, "bgnbd"), ["buy"])
    assert forced.blended is True and forced.candidates == ()  # `bgnbd` and no search: nothing to judge
    assert isinstance(forced.model.stages[-1], QuantileBlendModel)


def test_auto_keeps_the_blend_when_it_ranks_better_on_the_newest_snapshot(spark: SparkSession) -> None:
    # 1000 rows per leaf: the GBT cannot split 80 rows, so its score is one constant (AUC-PR = the base
    # rate, 16/40 = 0.4); the blend ranks by the rate, i.e. the purchase count, which is the label.
    frame = customer_frame(spark, "count")
    settings = TrainingSettings(gbt=SPLITS_NOTHING, search=(), seed=3)
    result = fit_with_time_validation(frame, [*CUSTOMER_BASE, "signal"], settings, ["buy"])
    alone, blended = result.candidates
    assert alone.validation_auc_pr == pytest.approx(0.4)
    assert blended.validation_auc_pr == pytest.approx(1.0)
    assert result.blended is True
    assert isinstance(result.model.stages[-1], QuantileBlendModel)
    scored = result.model.transform(frame.where(F.col("snapshot_time") == SNAPSHOTS[-1])).collect()
    low = max(r.raw_score for r in scored if r.label == 0.0)
    assert min(r.raw_score for r in scored if r.label == 1.0) > low


def replace_blend(settings: TrainingSettings, blend: str) -> TrainingSettings:
    from dataclasses import replace

    return replace(settings, score_blend=blend)
