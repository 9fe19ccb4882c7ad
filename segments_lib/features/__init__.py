"""Recency / frequency / duration features: the per-segment spec and the one-pass engine."""
