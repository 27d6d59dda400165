"""A running scorer as its HTTP endpoints show it: ``/health/live|ready`` and ``/metrics``.

:func:`parse_health` and :func:`scorer_counters` are pure (unit-tested without processes);
:func:`fetch_health` and :func:`fetch_counters` ask a scorer and return nothing rather than
raise when it does not answer.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from churnstream.observability import names

logger = logging.getLogger(__name__)

#: What ``status`` shows of the scorer's /metrics: each summed over its labels.
_COUNTERS = {
    "consumed": names.SCORER_CONSUMED,
    "scored": names.SCORER_SCORED,
    "dead_lettered": names.SCORER_DEAD_LETTERS,
    "batches": names.SCORER_BATCHES,
    "redelivered_batches": names.SCORER_REDELIVERED,
    "lag": names.SCORER_LAG,
}


@dataclass(frozen=True)
class HealthAnswer:
    """One answer of ``/health/live`` or ``/health/ready``."""

    ok: bool
    status: int
    checks: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """``model X, broker reachable, lag 0 (max 10000)`` or what fails."""
        c = self.checks
        if not c:
            return f"HTTP {self.status}"
        parts = []
        if not c.get("running", True):
            parts.append("loop not running")
        parts.append(f"model {c['model_version']}" if c.get("model_loaded") else "no model")
        parts.append("broker reachable" if c.get("broker_reachable") else "broker UNREACHABLE")
        lag = c.get("lag")
        lag_text = "unknown" if lag is None else f"{int(lag):,}"
        parts.append(f"lag {lag_text} (max {c.get('max_lag')})")
        if c.get("stalled"):
            parts.append(f"STALLED ({c.get('seconds_since_poll')}s since the last poll)")
        return ", ".join(parts)


def parse_health(status: int, body: bytes) -> HealthAnswer:
    """Read a health endpoint's answer: 200/503 with ``{"status", "checks"}``."""
    checks: Mapping[str, Any] = {}
    try:
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("checks"), dict):
            checks = data["checks"]
    except (ValueError, UnicodeDecodeError):
        pass
    return HealthAnswer(ok=status == 200, status=status, checks=checks)


def scorer_counters(metrics_text: str) -> dict[str, float]:
    """Totals from the scorer's ``/metrics``: consumed, scored, dead_lettered, batches,
    redelivered_batches (each summed over labels) and lag (summed over partitions); a
    metric the page does not expose is left out."""
    from churnstream.observability.scrape import parse_metrics

    page = parse_metrics(metrics_text)
    totals = {key: page.total(name) for key, name in _COUNTERS.items()}
    return {key: total for key, total in totals.items() if total is not None}


def fetch_health(base_url: str, which: str, timeout_s: float) -> HealthAnswer | None:
    """``/health/<which>`` of the scorer at ``base_url``; None when nothing answers."""
    url = f"{base_url}/health/{which}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310
            return parse_health(resp.status, resp.read())
    except urllib.error.HTTPError as exc:
        return parse_health(exc.code, exc.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        logger.debug("no answer from %s: %s", url, exc)
        return None


def fetch_counters(base_url: str, timeout_s: float) -> dict[str, float]:
    """:func:`scorer_counters` of the scorer at ``base_url``; empty when nothing answers."""
    url = f"{base_url}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310
            return scorer_counters(resp.read().decode("utf-8", errors="replace"))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        logger.debug("no metrics from %s: %s", url, exc)
        return {}
