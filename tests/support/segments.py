"""The two small segments the job-level tests train: purchase (medium) and notification clicks (low)."""

from __future__ import annotations


def two_small_segments(min_examples: int = 20, max_iter: int = 8, retrain_every: str | None = None) -> str:
    """Segments YAML with tiny GBTs (depth 3, `max_iter` trees) on 2 snapshots a week apart.

    `min_examples` is both min_positives and min_negatives; `retrain_every` (e.g. "30d") keeps one
    champion through a short backfill.
    """
    retrain = f"\n      retrain_every: {retrain_every}" if retrain_every else ""
    small_training = f"""&small
      snapshots: 2
      stride: 7d
      min_positives: {min_examples}
      min_negatives: {min_examples}{retrain}
      gbt: {{max_iter: {max_iter}, max_depth: 3}}
      search: []"""
    return "\nsegments:" + "".join([
        _segment("likely_to_purchase", "conversion", "Purchase Completed", "medium", small_training),
        _segment("engagement_booster", "engagement", "Click Notification", "low", "*small"),
    ]) + "\n"


def _segment(name: str, kind: str, event: str, level: str, training: str) -> str:
    """One segment: `event` within 7 days, for users active in the last 14."""
    return f"""
  - name: {name}
    kind: {kind}
    target: {{occurs: {{events: [{event}]}}}}
    past_window: 14d
    prediction_window: 7d
    precision_level: {level}
    eligible: {{active_in: 14d}}
    training: {training}"""
