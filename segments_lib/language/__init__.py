"""The segment language: definitions, the segments file, targets, eligibility and the snapshot calendar."""
