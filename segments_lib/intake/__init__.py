"""Events in: the event contract and validation, and the generated or loaded sources (demo, Online Retail)."""
