"""The Spark ML pipeline, its time-based fit, holdout evaluation and one segment's training run."""

# Pipelines saved before the package split name their score stage `segments_lib.model.PositiveProbability`;
# Spark ML's reader imports that path, so it stays importable here.
from segments_lib.model.pipeline import PositiveProbability

__all__ = ["PositiveProbability"]
