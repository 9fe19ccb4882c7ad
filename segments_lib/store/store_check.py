"""Before a night starts: is the MLflow tracking store reachable, and how to name it without its secrets.

Scoring must know which registered model produced each membership row, so a night without its tracking
store stops before any write. The probe is a plain TCP connect with a short timeout: MLflow's own HTTP
client retries with backoff for minutes before it gives up.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit, urlunsplit

from segments_lib.config import MlflowConfig
from segments_lib.store.tracking import SCORE_WITH_LAST_CHAMPION

PROBE_TIMEOUT_S = 5.0
DEFAULT_PORTS = {"http": 80, "https": 443}


def mask_uri(uri: str) -> str:
    """The URI with any password replaced by '***' ('http://user:***@host'), fit for logs and summaries."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def unreachable_reason(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why an http(s) tracking server cannot be reached, or None (reachable, or a local store)."""
    parts = urlsplit(uri)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"cannot connect to {parts.hostname}:{port} within {timeout_s:.0f}s ({exc})"


def tracking_store_refusal(cfg: MlflowConfig, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """The message a job stops with when its tracking store is unreachable, or None when it can go on.

    With `on_unreachable: score_with_last_champion` the job goes on: each segment's night then scores
    from its champion copy (`store_down_reason`), or writes nothing when it has none.
    """
    if cfg.on_unreachable == SCORE_WITH_LAST_CHAMPION:
        return None
    reason = unreachable_reason(cfg.tracking_uri, timeout_s)
    if reason is None:
        return None
    return (f"MLflow tracking store is unreachable at {mask_uri(cfg.tracking_uri)}: {reason}. "
            "The night stopped before scoring; no membership was written. "
            "Fix the store or mlflow.tracking_uri (or $MLFLOW_TRACKING_URI) and rerun the night, or set "
            "mlflow.on_unreachable: score_with_last_champion to score from the champion copies.")


def store_down_reason(cfg: MlflowConfig, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why a night must score from its champion copy: the store is unreachable and the policy allows it.

    None when the store answers or the policy is `fail` (a night then uses the store, and fails when it
    cannot).
    """
    if cfg.on_unreachable != SCORE_WITH_LAST_CHAMPION:
        return None
    reason = unreachable_reason(cfg.tracking_uri, timeout_s)
    return None if reason is None else f"MLflow tracking store unreachable at {mask_uri(cfg.tracking_uri)}: {reason}"
