"""Stage logs with timings, so long jobs show where they are and where the time went."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)
    for noisy in ("py4j", "urllib3", "alembic", "mlflow.store.db.utils", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class StageTimer:
    """Collects `stage name → seconds` and logs each stage's start and end."""
    def __init__(self, logger: logging.Logger, prefix: str = "") -> None:
        self.logger = logger
        self.prefix = prefix
        self.durations: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        label = f"{self.prefix}{name}"
        self.logger.info("▶ %s", label)
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.durations[name] = self.durations.get(name, 0.0) + elapsed
            self.logger.info("✔ %s (%.1fs)", label, elapsed)

    @property
    def total(self) -> float:
        return sum(self.durations.values())
