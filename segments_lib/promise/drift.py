"""Population stability index (PSI) between the calibration snapshot and tonight's scoring snapshot.

PSI = Σ (a_i − e_i) · ln(a_i / e_i) over bins i, where e_i and a_i are the shares of the expected
(baseline) and actual (current) rows in bin i. Bins are quantiles of the *expected* distribution,
right-closed: bin i holds cut_{i-1} < x ≤ cut_i, so `bins` equal-mass bins when there are no ties
(tied cut points are merged, so a feature that is mostly 0 gets fewer, unequal bins). Nulls — for
features, "never happened" — are a bin of their own. An empty bin's share is raised to
`EMPTY_BIN_SHARE` (1e-4) so the logarithm stays finite; a bin empty on both sides then adds exactly 0.

Rules of thumb: < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 large shift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

EMPTY_BIN_SHARE = 1e-4
# The score column and the training-time baseline artifact that tonight's drift compares against.
SCORE_COLUMN = "score"
DRIFT_BASELINE = "drift_baseline.json"
DEFAULT_RELATIVE_ERROR = 1e-3


def _cut_points(quantiles: Sequence[float]) -> list[float]:
    return sorted({float(q) for q in quantiles if q is not None and not math.isnan(q)})


def _probabilities(bins: int) -> list[float]:
    if bins < 2:
        raise ValueError(f"bins must be at least 2, found {bins}")
    return [i / bins for i in range(1, bins)]


def psi_from_counts(expected: Sequence[float], actual: Sequence[float]) -> float:
    """PSI of two histograms over the same bins (counts or shares); empty bins get `EMPTY_BIN_SHARE`."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.shape != a.shape:
        raise ValueError(f"histograms need the same bins, found {e.shape} and {a.shape}")
    if e.sum() <= 0 or a.sum() <= 0:
        return float("nan")  # nothing to compare: an empty frame has no distribution
    e_share = np.maximum(e / e.sum(), EMPTY_BIN_SHARE)
    a_share = np.maximum(a / a.sum(), EMPTY_BIN_SHARE)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def _histogram(values: np.ndarray, cuts: list[float]) -> np.ndarray:
    """Counts per right-closed bin, then the null bin last."""
    is_null = np.isnan(values)
    index = np.searchsorted(np.asarray(cuts, dtype=float), values[~is_null], side="left")
    counts = np.bincount(index, minlength=len(cuts) + 1).astype(float)
    return np.append(counts, float(is_null.sum()))


def _bin_index(column: Column, cuts: list[float]) -> Column:
    """Number of cut points strictly below the value: the right-closed bin, null for a null value."""
    above = [F.when(column > F.lit(c), 1).otherwise(0) for c in cuts]
    # `null > c` is null, and `otherwise(0)` would put nulls in the first bin: keep them out explicitly.
    return F.when(column.isNotNull(), sum(above[1:], above[0]) if above else F.lit(0))


def _histogram_counts(frame: DataFrame, columns: Sequence[str], cuts: Sequence[list[float]]) -> list[list[float]]:
    """Rows per right-closed bin of each column, then its null bin: one aggregation over `frame`.

    Each column's bin index is projected once, then unpivoted to one (column, bin) row per cell and
    counted per pair: a narrow aggregate Spark compiles, where a count per (column, bin) side by side
    (over 200 for the 20 watched features and the score) ran without generated code.
    """
    indexed = frame.select(*[_bin_index(F.col(name), column_cuts).alias(f"b{j}")
                             for j, (name, column_cuts) in enumerate(zip(columns, cuts, strict=True))])
    bin_columns = [f"b{j}" for j in range(len(columns))]
    counted = (indexed.unpivot([], bin_columns, "column", "bin")
               .groupBy("column", "bin").agg(F.count(F.lit(1)).alias("n")).collect())
    histograms = [[0.0] * (len(column_cuts) + 2) for column_cuts in cuts]
    for row in counted:
        histogram = histograms[int(row["column"][1:])]
        histogram[-1 if row["bin"] is None else int(row["bin"])] += float(row["n"])
    return histograms


def psi_baseline(baseline: DataFrame, columns: Sequence[str], bins: int = 10,
                 relative_error: float = DEFAULT_RELATIVE_ERROR) -> dict[str, Any]:
    """The expected side of PSI, small enough to store with a model: each column's cut points and counts.

    Two Spark jobs however many columns: one `approxQuantile` for every column, then one aggregation
    counting rows per (column, bin). A column with no non-null values has a single value bin beside
    the null bin. Training stores this as `drift_baseline.json`, so a night compares against it
    without rebuilding the holdout snapshot's features.
    """
    columns = list(columns)
    _check_columns(baseline, columns, "baseline")
    if not columns:
        return {"bins": bins, "columns": {}}
    quantiles = baseline.approxQuantile(columns, _probabilities(bins), relative_error)
    cuts = [_cut_points(q) for q in quantiles]
    counts = _histogram_counts(baseline, columns, cuts)
    return {"bins": bins, "columns": {name: {"cuts": column_cuts, "counts": column_counts}
                                      for name, column_cuts, column_counts in zip(columns, cuts, counts, strict=True)}}


def psi_against(baseline: dict[str, Any], current: DataFrame, columns: Sequence[str] | None = None
                ) -> list[tuple[str, float]]:
    """PSI of each baseline column (or of `columns`, a subset) in `current`: one aggregation over `current`."""
    stored = baseline["columns"]
    columns = list(stored) if columns is None else list(columns)
    unknown = [c for c in columns if c not in stored]
    if unknown:
        raise ValueError(f"psi_against: the baseline has no column(s) {unknown}; it has {sorted(stored)}")
    _check_columns(current, columns, "current")
    if not columns:
        return []
    cuts = [list(stored[c]["cuts"]) for c in columns]
    actual = _histogram_counts(current, columns, cuts)
    return [(name, psi_from_counts(stored[name]["counts"], a)) for name, a in zip(columns, actual, strict=True)]


def _check_columns(frame: DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"PSI: {what} frame lacks column(s) {missing}")
    types = dict((f.name, f.dataType) for f in frame.schema.fields)
    not_numeric = [c for c in columns if not isinstance(types[c], NumericType)]
    if not_numeric:
        raise ValueError(f"PSI: column(s) {not_numeric} are not numeric; PSI needs numbers")


def feature_psi(baseline: DataFrame, current: DataFrame, columns: Sequence[str], bins: int = 10,
                relative_error: float = DEFAULT_RELATIVE_ERROR) -> list[tuple[str, float]]:
    """PSI of each column, current against baseline, in the order of `columns`. NaN when a frame is empty."""
    return psi_against(psi_baseline(baseline, columns, bins, relative_error), current, columns)


def psi(expected: DataFrame | Sequence[float] | np.ndarray, actual: DataFrame | Sequence[float] | np.ndarray,
        bins: int = 10, column: str = "score") -> float:
    """PSI of one distribution: two DataFrames (their `column`) or two arrays (NaN and None are the null bin).

    Arrays use the inverted-CDF quantile (a value of the data, like Spark's exact approxQuantile),
    so both paths bin the same data the same way.
    """
    if isinstance(expected, DataFrame) and isinstance(actual, DataFrame):
        return feature_psi(expected, actual, [column], bins)[0][1]
    if isinstance(expected, DataFrame) or isinstance(actual, DataFrame):
        raise TypeError("psi: pass two DataFrames or two arrays, not one of each")
    e = np.asarray([np.nan if v is None else v for v in expected], dtype=float)
    a = np.asarray([np.nan if v is None else v for v in actual], dtype=float)
    present = e[~np.isnan(e)]
    quantiles = np.quantile(present, _probabilities(bins), method="inverted_cdf") if present.size else []
    cuts = _cut_points(list(quantiles))
    return psi_from_counts(_histogram(e, cuts), _histogram(a, cuts))


def top_drifting(psis: Sequence[tuple[str, float]], n: int = 5) -> str:
    """'name=0.412, other=0.187' for the n largest finite PSIs, largest first (for `segment_runs`)."""
    finite = [(name, value) for name, value in psis if value is not None and not math.isnan(value)]
    ranked = sorted(finite, key=lambda item: (-item[1], item[0]))[:n]
    return ", ".join(f"{name}={value:.3f}" for name, value in ranked)
