"""The two small segments the job-level tests train: purchase (medium) and notification clicks (low)."""

from __future__ import annotations


def two_small_segments(min_examples: int = 20, max_iter: int = 8, retrain_every: str | None = None) -> str:
    """Segments YAML with tiny GBTs (depth 3, `max_iter` trees) on 2 snapshots a week apart.

    `min_examples` is both min_positives and min_negatives; `retrain_every` (e.g. "30d") keeps one
    champion through a short backfill.
    """
    retrain = f"\n      retrain_every: {retrain_every}" if retrain_every else ""
    return f"""
segments:
  - name: likely_to_purchase
    kind: conversion
    target: {{occurs: {{events: [Purchase Completed]}}}}
    past_window: 14d
    prediction_window: 7d
    precision_level: medium
    eligible: {{active_in: 14d}}
    training: &small
      snapshots: 2
      stride: 7d
      min_positives: {min_examples}
      min_negatives: {min_examples}{retrain}
      gbt: {{max_iter: {max_iter}, max_depth: 3}}
      search: []
  - name: engagement_booster
    kind: engagement
    target: {{occurs: {{events: [Click Notification]}}}}
    past_window: 14d
    prediction_window: 7d
    precision_level: low
    eligible: {{active_in: 14d}}
    training: *small
"""
