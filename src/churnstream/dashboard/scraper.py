"""The scorer's numbers for the dashboard: its ``/metrics`` page, or its group's lag."""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from typing import Any

from churnstream.dashboard.state import DashboardState
from churnstream.observability import names
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

SCRAPE_INTERVAL_S = 2.0
SCRAPE_TIMEOUT_S = 1.5


def parse_scorer_metrics(text: str) -> dict[str, Any]:
    """The few scorer numbers the dashboard shows, from a ``/metrics`` page."""
    from prometheus_client.parser import text_string_to_metric_families

    lag: dict[str, float] = {}
    psi: dict[str, float] = {}
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == names.SCORER_LAG:
                lag[f"{labels.get('topic')}[{labels.get('partition')}]"] = value
            elif name == names.SCORER_CONSUMED:
                out["consumed"] = value
            elif name == names.SCORER_SCORED:
                out["scored"] = value
            elif name == names.SCORER_REDELIVERED:
                out["redelivered_batches"] = value
            elif name == names.MODEL_INFO and value == 1:
                out["model_version"] = labels.get("version")
            elif name == names.DRIFT_PSI:
                psi[labels.get("feature", "?")] = value
            elif name == names.DRIFT_DETECTED:
                out["drift_detected"] = bool(value)
            elif name == names.SCORER_RUNNING:
                out["running"] = bool(value)
    out["lag_by_partition"] = lag
    out["lag"] = sum(lag.values()) if lag else None
    if psi:
        out["drift_psi"] = psi
    return out


class MetricsScraper(threading.Thread):
    """Every few seconds: the scorer's metrics (if a URL is given), else its group's lag."""

    def __init__(
        self,
        state: DashboardState,
        *,
        metrics_url: str | None,
        settings: Settings | None = None,
        scorer_group: str | None = None,
        raw_topic: str | None = None,
        interval_s: float = SCRAPE_INTERVAL_S,
    ) -> None:
        super().__init__(name="dashboard-scraper", daemon=True)
        self.state = state
        self.metrics_url = metrics_url
        self.settings = settings
        self.scorer_group = scorer_group
        self.raw_topic = raw_topic
        self.interval_s = interval_s
        self._stop_event = threading.Event()
        self._last: tuple[float, float] | None = None

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout_s)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.state.set_scrape(self.scrape_once())
            except Exception as exc:  # noqa: BLE001 - shown on the page, retried next time
                self.state.set_scrape({"ok": False, "error": str(exc), "source": self._source()})
            self._stop_event.wait(self.interval_s)

    def _source(self) -> str:
        return "metrics" if self.metrics_url else "offsets"

    def scrape_once(self) -> dict[str, Any]:
        if self.metrics_url:
            url = self.metrics_url
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"metrics URL must be http(s): {url}")
            with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:  # noqa: S310
                text = response.read().decode("utf-8")
            data = parse_scorer_metrics(text)
            now = time.monotonic()
            consumed = data.get("consumed")
            if isinstance(consumed, float) and self._last is not None:
                then, before = self._last
                data["rate"] = max(0.0, (consumed - before) / max(now - then, 1e-9))
            if isinstance(consumed, float):
                self._last = (now, consumed)
            return {"ok": True, "source": "metrics", **data}
        if self.settings is not None and self.scorer_group and self.raw_topic:
            from churnstream.kafka import admin
            from churnstream.observability.cluster import consumer_groups

            kafka = self.settings.kafka
            described = admin.describe_topics(
                kafka, [self.raw_topic], timeout_s=SCRAPE_TIMEOUT_S * 2
            )
            ends = {(t.name, p.partition): p.high for t in described for p in t.partitions}
            groups = consumer_groups(
                kafka, ends, only=[self.scorer_group], timeout_s=SCRAPE_TIMEOUT_S * 2
            )
            lag = sum(t.lag for g in groups for t in g.topics if t.topic == self.raw_topic)
            return {"ok": True, "source": "offsets", "lag": lag, "group": self.scorer_group}
        return {"ok": False, "source": "none"}
