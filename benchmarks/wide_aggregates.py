"""Per-feature statistics side by side (wide) against unpivoted to (feature, value) (long), on a demo training frame.

    .venv/bin/python -m jobs.demo                    # once: the demo workspace (events and validated events)
    .venv/bin/python -m benchmarks.wide_aggregates   # the demo's churn_risk training frame, 3 rounds

Training's data profile (null share, min, mean, max per feature on the holdout rows) and the drift
histograms (a count per column and bin) were written as one aggregate per (feature, statistic) side
by side: 688 on the demo's 172 features, which Spark runs without generated code. The library now
unpivots the rows and groups by feature (`model.training.feature_profile`, `promise.drift`). This
measures both on the same persisted frame, alternating, in one process, and checks they agree.
"""

from __future__ import annotations

import argparse
import time
from datetime import date

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from segments_lib.config import load_config
from segments_lib.language.segment_config import load_segments
from segments_lib.model.training import (
    KEYS,
    PROFILE_STATS,
    build_training_frame,
    feature_profile,
    is_holdout_row,
    segment_calendar,
)
from segments_lib.store import validated
from segments_lib.store.session import build_session


def wide_profile(rows: DataFrame, feature_cols: list[str]) -> pd.DataFrame:
    """The former profile: four aggregates per feature in one `agg`."""
    aggregates = [agg for c in feature_cols
                  for agg in (F.avg(F.col(c).isNull().cast("double")).alias(f"{c}|null_share"),
                              F.min(c).alias(f"{c}|min"), F.avg(c).alias(f"{c}|mean"), F.max(c).alias(f"{c}|max"))]
    row = rows.agg(*aggregates).first().asDict()
    return pd.DataFrame([{"feature": c, **{s: row[f"{c}|{s}"] for s in PROFILE_STATS}} for c in feature_cols])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segment", default="churn_risk", help="a segment of conf/segments.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    cfg = load_config("local")
    spark = build_session(cfg.spark, app_name="wide-aggregates")
    segment = next(s for s in load_segments(cfg.segments_file, cfg.precision_levels) if s.name == args.segment)
    calendar = segment_calendar(segment, date.fromisoformat(cfg.demo.end_date))
    frame, feature_cols = build_training_frame(validated.read_events(spark, cfg), segment, calendar)
    frame = frame.select(*KEYS, "label", *feature_cols).localCheckpoint(eager=True)
    holdout = frame.where(is_holdout_row(calendar, segment.training.seed))
    print(f"{segment.name}: {frame.count()} training rows, {holdout.count()} held out, {len(feature_cols)} features")
    timings: dict[str, list[float]] = {"wide": [], "long": []}
    results: dict[str, pd.DataFrame] = {}
    for _ in range(args.rounds):
        for name, profile in (("wide", wide_profile), ("long", feature_profile)):
            start = time.perf_counter()
            results[name] = profile(holdout, feature_cols)
            timings[name].append(time.perf_counter() - start)
    wide, long = (results[n].set_index("feature")[list(PROFILE_STATS)].to_numpy(dtype=float) for n in ("wide", "long"))
    for name, seconds in timings.items():
        print(f"{name}: " + ", ".join(f"{s:.2f} s" for s in seconds) + f" (best {min(seconds):.2f} s)")
    print(f"long / wide, best of each: {min(timings['long']) / min(timings['wide']):.2f}; "
          f"same statistics to 1e-9: {np.allclose(wide, long, rtol=1e-9, equal_nan=True)}")


if __name__ == "__main__":
    main()
