"""Reasons per member: the three features that push a member's score up most, in plain words (issue 21 item 5).

Method: exact path-dependent TreeSHAP (Lundberg et al. 2020) on the pipeline's tree ensemble, computed on
the executors. The trees are read once on the driver (Spark's GBT through the JVM, xgboost's booster
from its JSON model) and broadcast; `mapInPandas` runs over the members' assembled feature vectors only
(a small share of the scored users).

Within one tree, a leaf's value reaches a coalition S of features with the path-dependent weight
v · Π_{j∈S} o_j(x) · Π_{j∈U∖S} z_j, where U are the features split on along the leaf's path, o_j(x)
is 1 when x satisfies every split on j along it and z_j the product of the covers' fractions of those
splits. That is a product game, so its Shapley value is closed-form:
φ_i = v (o_i − z_i) Σ_k c_k k!(m−1−k)!/m!, with c_k the coefficients of Π_{j∈U∖i} (z_j + o_j t) and
m = |U|. Summed over leaves and trees (times the tree weights) it equals what TreeSHAP's EXTEND /
UNWIND recursion gives, vectorised over rows instead of recursing per row. Per row the values add up
to the ensemble's margin (Spark's rawPrediction[1]; xgboost's margin less its base score) minus the
expected margin over the training covers (xgboost's covers are hessian sums, as in its own `pred_contribs`).

What is explained is the GBT's margin. The BG/NBD blend and the isotonic calibrator after it are
monotone in it for a fixed user, so a feature pushing the margin up pushes the calibrated score up.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from segments_lib.features.spec import event_slug
from segments_lib.model.pipeline import FEATURES_VECTOR, NEVER_SENTINEL, ensemble_stage, model_inputs
from segments_lib.model.trainers import ensemble_input_count, is_xgboost_model

log = logging.getLogger(__name__)

REASON_COLUMNS = ("reason_1", "reason_2", "reason_3")
_VECTOR_COL = "__reasons_x"
# A contribution this close to 0 is float noise of features that never split, not a push up.
_POSITIVE = 1e-12


@dataclass(frozen=True)
class Split:
    feature: int
    threshold: float | None  # continuous: x <= threshold goes left (strict: float32(x) < threshold)
    left_categories: frozenset[float] | None  # categorical: x in the set goes left
    goes_left: bool  # the side this path takes
    strict: bool = False  # xgboost's rule: the input as float32, strictly below the (float32) threshold


@dataclass(frozen=True)
class Leaf:
    value: float  # tree weight × leaf prediction: its share of the margin
    splits: tuple[Split, ...]  # root to leaf
    zero_fraction: tuple[tuple[int, float], ...]  # (feature, product of cover fractions along the path)


@dataclass(frozen=True)
class Forest:
    """The GBT as plain Python data: picklable, so it can be broadcast to the executors."""
    leaves: tuple[Leaf, ...]
    n_features: int
    expected_margin: float  # Σ leaf value × cover share: the margin of "no feature known"


def read_forest(ensemble: Any) -> Forest:
    """Every leaf of every tree of a fitted Spark GBT or xgboost model, with its path, read on the driver."""
    if is_xgboost_model(ensemble):
        return xgboost_forest(ensemble.get_booster().save_raw("json"))
    return _spark_forest(ensemble)


def xgboost_forest(model_json: bytes | str) -> Forest:
    """The trees of an xgboost model (its JSON form: `Booster.save_raw("json")`), learning rate included.

    A node i is a leaf when `left_children[i]` is -1, and then `split_conditions[i]` holds its value (xgboost
    keeps the leaf value and the split threshold in one field). `sum_hessian` is the cover. Inputs are
    never missing here (the pipeline fills nulls before the vector), so the default direction is unused.
    """
    model = json.loads(model_json)["learner"]
    booster = model["gradient_booster"]
    if booster.get("name") != "gbtree":
        raise ValueError(f"reasons read gbtree boosters only, found {booster.get('name')!r}")
    leaves: list[Leaf] = []
    expected = 0.0
    for tree in booster["model"]["trees"]:
        left, right = tree["left_children"], tree["right_children"]
        feature, condition, cover = tree["split_indices"], tree["split_conditions"], tree["sum_hessian"]
        root_cover = float(cover[0])
        stack: list[tuple[int, tuple[Split, ...], dict[int, float]]] = [(0, (), {})]
        while stack:
            node, path, zero = stack.pop()
            if left[node] == -1:
                value = float(condition[node])
                leaves.append(Leaf(value, path, tuple(sorted(zero.items()))))
                expected += value * float(cover[node]) / root_cover
                continue
            f = int(feature[node])
            for child, goes_left in ((left[node], True), (right[node], False)):
                share = float(cover[child]) / float(cover[node]) if cover[node] > 0 else 0.0
                stack.append((child, (*path, Split(f, float(condition[node]), None, goes_left, strict=True)),
                              {**zero, f: zero.get(f, 1.0) * share}))
    n_features = int(model["learner_model_param"]["num_feature"])
    return Forest(tuple(leaves), n_features, expected)


def _spark_forest(gbt: Any) -> Forest:
    """Spark GBT's trees, read through the JVM on the driver (a few py4j calls a node)."""
    leaves: list[Leaf] = []
    expected = 0.0
    for tree, weight in zip(gbt.trees, gbt.treeWeights, strict=True):
        root = tree._java_obj.rootNode()
        # Covers are the weighted training counts Spark keeps per node (impurityStats.count), so the
        # path-dependent expectation is over the weighted rows the tree was grown on. Each py4j call is
        # a round trip, so every node's cover is read once and handed down.
        root_cover = float(root.impurityStats().count())
        stack: list[tuple[Any, float, tuple[Split, ...], dict[int, float]]] = [(root, root_cover, (), {})]
        while stack:
            node, cover, path, zero = stack.pop()
            if node.getClass().getSimpleName() == "LeafNode":
                value = float(weight) * float(node.prediction())
                leaves.append(Leaf(value, path, tuple(sorted(zero.items()))))
                expected += value * cover / root_cover
                continue
            split = node.split()
            feature = int(split.featureIndex())
            if split.getClass().getSimpleName() == "ContinuousSplit":
                threshold, categories = float(split.threshold()), None
            else:
                threshold, categories = None, frozenset(float(c) for c in split.leftCategories())
            for child, left in ((node.leftChild(), True), (node.rightChild(), False)):
                child_cover = float(child.impurityStats().count())
                share = child_cover / cover if cover > 0 else 0.0
                stack.append((child, child_cover, (*path, Split(feature, threshold, categories, left)),
                              {**zero, feature: zero.get(feature, 1.0) * share}))
    return Forest(tuple(leaves), int(gbt.numFeatures), expected)


def _follows(x: np.ndarray, split: Split) -> np.ndarray:
    column = x[:, split.feature]
    categories = split.left_categories
    if categories is not None:
        left = np.isin(column, list(categories))
    elif split.strict:
        left = column.astype(np.float32) < np.float32(split.threshold)
    else:
        left = column <= split.threshold
    return left if split.goes_left else ~left


def shap_values(forest: Forest, x: np.ndarray) -> np.ndarray:
    """Exact path-dependent TreeSHAP values, rows × features; each row sums to margin − expected_margin."""
    n = x.shape[0]
    phi = np.zeros((n, forest.n_features))
    for leaf in forest.leaves:
        features = [f for f, _ in leaf.zero_fraction]
        zero = dict(leaf.zero_fraction)
        one = {f: np.ones(n, dtype=bool) for f in features}
        for split in leaf.splits:
            one[split.feature] &= _follows(x, split)
        m = len(features)
        # k!(m−1−k)!/m!: the Shapley weight of a coalition of k of the other m − 1 path features.
        weights = [math.factorial(k) * math.factorial(m - 1 - k) / math.factorial(m) for k in range(m)]
        for i in features:
            # Coefficients of Π_{j≠i} (z_j + o_j t): entry k sums the coalitions of k other features.
            coef = [np.ones(n)]
            for j in features:
                if j != i:
                    o_j, z_j = one[j].astype(float), zero[j]
                    coef = [coef[0] * z_j, *(coef[k] * z_j + coef[k - 1] * o_j for k in range(1, len(coef))),
                            coef[-1] * o_j]
            gain = sum(w * c for w, c in zip(weights, coef, strict=True))
            phi[:, i] += leaf.value * (one[i].astype(float) - zero[i]) * gain
    return phi


# ---- plain words ----------------------------------------------------------------------------------------

def _number(value: float) -> str:
    """7.0 → '7', 2.456 → '2.5', 0.3125 → '0.31': whole numbers stay whole, the rest keeps 2 significant digits."""
    if float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 10:
        return f"{value:,.0f}"
    return f"{value:.2g}" if abs(value) < 1 else f"{value:.1f}"


def _window(text: str) -> str:
    """'28d' → '28 days', '1d' → '1 day', '36h' → '36 hours' (spec.format_duration spellings)."""
    match = re.fullmatch(r"(\d+)([dhms])", text)
    if match is None:
        return text
    count, unit = int(match.group(1)), {"d": "day", "h": "hour", "m": "minute", "s": "second"}[match.group(2)]
    return f"1 {unit}" if count == 1 else f"{count} {unit}s"


def _days_ago(days: float) -> str:
    if days < 1:
        return f"{_number(days * 24)} hours ago"
    return "1 day ago" if _number(days) == "1" else f"{_number(days)} days ago"


_GAP_STATS = {"mean": "average", "min": "shortest", "max": "longest", "last": "most recent"}


def phrase(column: str, value: float | None, event_names: Mapping[str, str] | None = None) -> str:
    """A feature column and its value as a short phrase, e.g. ('freq_28d__purchase_completed', 7) →
    '7 Purchase Completed events in the last 28 days'.

    `event_names` maps event slugs back to the event names (`spec.event_slug`); a slug without one
    reads with spaces. None (or the never-happened sentinel) reads as "never". Unknown names:
    '<column> = <value>'.
    """
    names = event_names or {}

    def event(slug: str) -> str:
        return names.get(slug, slug.replace("_", " "))

    never = value is None or (isinstance(value, float) and math.isnan(value)) or abs(value) >= NEVER_SENTINEL
    v = 0.0 if never else float(value)  # type: ignore[arg-type]
    family, _, rest = column.partition("__")
    slugs = rest.split("__") if rest else []
    one = event(slugs[0]) if len(slugs) == 1 else ""
    if column == "tenure_days":
        return "no activity seen yet" if never else f"first seen {_days_ago(v)}"
    if column == "trend_7d_vs_rest":
        if never:
            return "no recent activity to compare"
        if v == 0:
            return "as active in the last 7 days as before"
        return f"{'more' if v > 0 else 'less'} active in the last 7 days than before (trend {v:+.2f})"
    if match := re.fullmatch(r"active_days_(\w+)", column):
        return f"active on {_number(v)} of the last {_window(match.group(1))}"
    if match := re.fullmatch(r"distinct_events_(\w+)", column):
        return f"{_number(v)} different event types in the last {_window(match.group(1))}"
    if len(slugs) == 1:
        if match := re.fullmatch(r"freq_(\w+)", family):
            noun = "event" if v == 1 else "events"
            return f"{_number(v)} {one} {noun} in the last {_window(match.group(1))}"
        if family == "recency_days":
            return f"never did {one}" if never else f"last {one} {_days_ago(v)}"
        if match := re.fullmatch(r"gap_(mean|min|max|std|last)_h", family):
            if never:
                return f"fewer than two {one} events in the past window"
            stat = match.group(1)
            if stat == "std":
                return f"time between {one} events varies by {_number(v)} hours"
            return f"{_GAP_STATS[stat]} time between {one} events: {_number(v)} hours"
        if match := re.fullmatch(r"value_sum_(\w+)", family):
            return f"{one} value of {_number(v)} in the last {_window(match.group(1))}"
        if family in ("value_mean", "value_max"):
            if never:
                return f"no valued {one} in the past window"
            return f"{'average' if family == 'value_mean' else 'largest'} {one} value {_number(v)}"
        if family == "count_all":
            return f"{_number(v)} {one} {'event' if v == 1 else 'events'} in all history"
        if family == "first_days":
            return f"never did {one}" if never else f"first {one} {_days_ago(v)}"
        if family == "span_days":
            return f"never did {one}" if never else f"{one} events span {_number(v)} days, first to last"
        if family == "rate_all":
            return f"{_number(v * 7)} {one} per week since the first one"
        if family == "silence_to_gap":
            if never:
                return f"fewer than two {one} events to compare with"
            return f"silent for {_number(v)} times the usual gap between {one} events"
        if family == "bgnbd_p_alive":
            return f"BG/NBD: {v:.0%} chance of still being an active {one} customer"
        if family == "bgnbd_rate":
            return f"BG/NBD: {_number(v * 7)} expected {one} per week"
        if family == "bgnbd_p_any":
            return f"BG/NBD: {v:.0%} chance of {one} within the prediction window"
    if len(slugs) == 2:
        first, then = event(slugs[0]), event(slugs[1])
        if family == "pair_mean_h":
            if never:
                return f"no {first} followed by {then}"
            return f"on average {_number(v)} hours from {first} to the next {then}"
        if match := re.fullmatch(r"pair_unfollowed_(\w+)", family):
            return f"{_number(v)} {first} not followed by {then} within {_window(match.group(1))}"
    return f"{column} = {'null' if never else _number(v)}"


# ---- the DataFrame step ---------------------------------------------------------------------------------

def top_reasons(phi: np.ndarray, x: np.ndarray, names: list[str], event_names: Mapping[str, str] | None = None,
                ) -> list[tuple[str | None, str | None, str | None]]:
    """Per row, the phrases of the (at most) three features with the largest positive SHAP values."""
    rows: list[tuple[str | None, str | None, str | None]] = []
    # A stable sort keeps vector order among equal values, so reruns name the same features.
    order = np.argsort(-phi, axis=1, kind="stable")[:, : len(REASON_COLUMNS)]
    for r in range(phi.shape[0]):
        found = [phrase(names[i], float(x[r, i]), event_names) for i in order[r] if phi[r, i] > _POSITIVE]
        found += [None] * (len(REASON_COLUMNS) - len(found))
        rows.append((found[0], found[1], found[2]))
    return rows


def _null_reasons(df: DataFrame) -> DataFrame:
    return df.select("*", *[F.lit(None).cast(StringType()).alias(c) for c in REASON_COLUMNS])


def with_reasons(members_features: DataFrame, model: PipelineModel, feature_cols: list[str],
                 event_names: Iterable[str] = ()) -> DataFrame:
    """`members_features` (user_id and the model's feature columns) with reason_1, reason_2, reason_3.

    Call it with members only: the work is per row. `event_names` are the events' display names
    (their slugs are in the column names). A model without a GBT stage, or whose vector does not match
    its inputs, gets null reasons and a warning, never an error.
    """
    try:
        ensemble = ensemble_stage(model)
    except ValueError:
        log.warning("reasons: the scoring model has no tree ensemble to explain; reason_1..3 stay null")
        return _null_reasons(members_features)
    names = model_inputs(model, feature_cols)
    inputs = ensemble_input_count(ensemble)
    if inputs != len(names):
        log.warning("reasons: the ensemble reads %d features but the pipeline names %d; reason_1..3 stay null",
                    inputs, len(names))
        return _null_reasons(members_features)
    # The stages before the ensemble (null fill, BG/NBD, assembler) build exactly the vector it was trained on.
    assembling = PipelineModel(stages=model.stages[: model.stages.index(ensemble)])
    forest = members_features.sparkSession.sparkContext.broadcast(read_forest(ensemble))
    slugs = {event_slug(e): e for e in event_names}
    keep = members_features.columns
    vectors = assembling.transform(members_features).select(*keep, vector_to_array(F.col(FEATURES_VECTOR))
                                                            .alias(_VECTOR_COL))
    schema = StructType([*members_features.schema.fields, *(StructField(c, StringType()) for c in REASON_COLUMNS)])
    return vectors.mapInPandas(_explainer(forest, names, slugs, keep), schema=schema)


def _explainer(forest: Any, names: list[str], slugs: dict[str, str], keep: list[str],
               ) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    def explain(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            out = batch[keep].copy()
            if batch.empty:
                for c in REASON_COLUMNS:
                    out[c] = pd.Series(dtype=object)
                yield out
                continue
            x = np.vstack([np.asarray(v, dtype=float) for v in batch[_VECTOR_COL]])
            reasons = top_reasons(shap_values(forest.value, x), x, names, slugs)
            for k, c in enumerate(REASON_COLUMNS):
                out[c] = [r[k] for r in reasons]
            yield out
    return explain
