"""The ranking score of an `occurs` segment: the GBT's score averaged with BG/NBD's, as quantiles.

Why: on Online Retail (benchmarks/RESULTS.md, issue 19) the GBT on the project's features and the
fitted BG/NBD's expected purchase rate rank next-period buyers about equally well, but not the same
customers well: the trees see recent behaviour in windows, the probabilistic model sees each
customer's whole history against their own pace and extrapolates beyond the training range. Their
average ranks better than either at most (cutoff, horizon) cells. Probabilities and rates live on
different scales, so each is first mapped to its quantile among the training rows (an empirical CDF
with linear interpolation between stored knots), and the two quantiles are averaged:

    raw_score = (1 − ε) · (½ · F_gbt(gbt_score) + ½ · F_rate(Σ bgnbd_p_any__<target event>)) + ε · gbt_score

where `bgnbd_p_any` is BG/NBD's probability of at least one occurrence within the segment's horizon
(model.pipeline.BgNbdModel); models trained before it existed blend the instantaneous rate `bgnbd_rate`.

The ε term (as in calibration) keeps users the GBT tells apart apart where both CDFs are flat (beyond
the training range, or the many users with a zero rate); the (1 − ε) keeps the score in [0, 1] like a
probability, which the calibrator's output relies on. The GBT's own score stays as `gbt_score`.

Only targets that mean "the user does the event again" get the blend (`blend_slugs`): BG/NBD models
the purchase process, so it says nothing useful about "does not occur", sequences or value sums.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from segments_lib.features.spec import event_slug
from segments_lib.language.definitions import AnyOf, Occurs, Target, TrainingSettings

GBT_SCORE = "gbt_score"
QUANTILE_POINTS = 201  # knots at every half percentile
QUANTILE_ERROR = 0.001  # approxQuantile's relative rank error: 0.1 %, far below the knots' spacing
TIE_BREAK = 1e-6


def blend_slugs(target: Target, settings: TrainingSettings, customer_base_slugs: Sequence[str]) -> list[str]:
    """Event slugs whose BG/NBD rate joins the GBT's score; empty when the blend does not apply.

    It applies to `occurs` (or `any_of` of `occurs`) targets with `score_blend: auto` or `bgnbd`, over the
    target's events that have BG/NBD columns among the features (`customer_base_slugs`); with `auto`,
    model.pipeline.fit_with_time_validation still decides on the validation fold whether to keep it.
    """
    if settings.score_blend == "none":
        return []
    terms = target.terms if isinstance(target, AnyOf) else (target,)
    if not all(isinstance(term, Occurs) for term in terms):
        return []
    present = set(customer_base_slugs)
    slugs = [event_slug(name) for term in terms for name in term.events]
    return [s for s in dict.fromkeys(slugs) if s in present]


def rate_column(slugs: Sequence[str], family: str = "bgnbd_rate") -> Column:
    """The BG/NBD term the blend ranks by, summed over the target's events (a monotone stand-in for "any")."""
    return sum((F.col(f"{family}__{s}") for s in slugs[1:]), F.col(f"{family}__{slugs[0]}"))


def ecdf_knots(quantiles: Sequence[float], probabilities: Sequence[float]) -> list[tuple[float, float]]:
    """(value, cumulative share) knots with strictly increasing values.

    Repeated quantile values (a point mass, e.g. the many users with a zero rate) collapse to one knot
    at the middle of the shares they span, so every user of the mass gets the mass's mid-rank.
    """
    knots: list[tuple[float, float]] = []
    for value, group in itertools.groupby(zip(quantiles, probabilities, strict=True), key=lambda qp: qp[0]):
        shares = [p for _, p in group]
        knots.append((float(value), float(np.mean([shares[0], shares[-1]]))))
    return knots


def piecewise_linear(knots: Sequence[tuple[float, float]], x: Column) -> Column:
    """f(x), linear between the knots (strictly increasing x) and flat beyond them; null stays null."""
    if not knots:
        raise ValueError("piecewise_linear needs at least one knot")
    xs = F.array(*[F.lit(float(k)) for k, _ in knots])
    ys = F.array(*[F.lit(float(v)) for _, v in knots])
    below = F.size(F.filter(xs, lambda k: k <= x))  # knots at or below x: the segment to interpolate on
    x_lo, x_hi = F.element_at(xs, below), F.element_at(xs, below + 1)
    y_lo, y_hi = F.element_at(ys, below), F.element_at(ys, below + 1)
    inside = y_lo + (y_hi - y_lo) * (x - x_lo) / (x_hi - x_lo)
    return (F.when(x.isNull(), F.lit(None).cast("double"))
            .when(below == 0, F.lit(float(knots[0][1])))
            .when(below == len(knots), F.lit(float(knots[-1][1])))
            .otherwise(inside))


class _HasBlend(Params):
    slugs = Param(Params._dummy(), "slugs", "target event slugs whose BG/NBD rates are blended",
                  TypeConverters.toListString)
    scoreCol = Param(Params._dummy(), "scoreCol", "the GBT score column, replaced by the blend",
                     TypeConverters.toString)
    knots = Param(Params._dummy(), "knots", 'JSON {"score": [[x, F]...], "rate": [[x, F]...]}',
                  TypeConverters.toString)
    family = Param(Params._dummy(), "family", "BG/NBD column family blended: bgnbd_rate or bgnbd_p_any",
                   TypeConverters.toString)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(family="bgnbd_rate")  # models saved before the parameter existed blended the rate


class QuantileBlendModel(Model, _HasBlend, DefaultParamsReadable, DefaultParamsWritable):
    """Replaces `scoreCol` by the quantile average; the GBT's score is kept as `gbt_score`."""

    @keyword_only
    def __init__(self, slugs: list[str] | None = None, scoreCol: str = "raw_score", knots: str = "{}",
                 family: str = "bgnbd_rate") -> None:
        super().__init__()
        self._set(**self._input_kwargs)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        knots = json.loads(self.getOrDefault(self.knots))
        score_col = self.getOrDefault(self.scoreCol)
        gbt = F.col(GBT_SCORE)
        quantiles = (F.lit(0.5) * piecewise_linear([tuple(k) for k in knots["score"]], gbt)
                     + F.lit(0.5) * piecewise_linear([tuple(k) for k in knots["rate"]],
                                                     rate_column(self.getOrDefault(self.slugs),
                                                                 self.getOrDefault(self.family))))
        blended = F.lit(1.0 - TIE_BREAK) * quantiles + F.lit(TIE_BREAK) * gbt
        return dataset.withColumn(GBT_SCORE, F.col(score_col)).withColumn(score_col, blended)


class QuantileBlend(Estimator, _HasBlend):
    """Stores the training rows' quantiles of the GBT score and of the summed BG/NBD term (`family`)."""

    @keyword_only
    def __init__(self, slugs: list[str] | None = None, scoreCol: str = "raw_score",
                 family: str = "bgnbd_rate") -> None:
        super().__init__()
        self._set(**self._input_kwargs)

    def _fit(self, dataset: DataFrame) -> QuantileBlendModel:
        slugs = self.getOrDefault(self.slugs)
        if not slugs:
            raise ValueError("QuantileBlend needs at least one event slug")
        score_col = self.getOrDefault(self.scoreCol)
        probabilities = [float(p) for p in np.linspace(0.0, 1.0, QUANTILE_POINTS)]
        family = self.getOrDefault(self.family)
        columns = dataset.select(F.col(score_col).cast("double").alias("score"),
                                 rate_column(slugs, family).alias("rate"))
        score_q, rate_q = columns.approxQuantile(["score", "rate"], probabilities, QUANTILE_ERROR)
        if not score_q or not rate_q:
            raise ValueError("QuantileBlend: the training rows are empty")
        knots = {"score": ecdf_knots(score_q, probabilities), "rate": ecdf_knots(rate_q, probabilities)}
        return QuantileBlendModel(slugs=slugs, scoreCol=score_col, knots=json.dumps(knots), family=family)
