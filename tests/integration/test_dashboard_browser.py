"""The live dashboard in a real headless Chromium, fed by a real scorer on a real broker.

Chromium comes from Debian (``apt-get install -y chromium``; ``.ci/run`` installs it) and is
driven by Playwright with ``executable_path`` (Playwright's own browser download does not
work here). Outside CI the test skips without Chromium; with ``CI=true`` it fails instead.

The screenshot goes to ``test-artifacts/dashboard.png``; with ``UPDATE_DOCS_SCREENSHOT=1``
it is also copied to ``docs/dashboard.png`` (the README's picture).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from churnstream.dashboard.app import DashboardServer, create_app
from churnstream.dashboard.follower import Follower, FollowOptions
from churnstream.dashboard.scraper import MetricsScraper
from churnstream.dashboard.state import DashboardState
from churnstream.settings import load_settings
from tests.integration.kafka_io import send_raw
from tests.integration.streams import Pump, records, start_scorer, wait_for
from tests.integration.test_observability import bad_messages

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = REPO_ROOT / "test-artifacts" / "dashboard.png"
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "dashboard.png"
CHROMIUM_FLAGS = [
    # --headless comes from Playwright's headless=True; the user-data-dir is a fresh tmp dir.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EVENTS = 2400
RATE = 200.0

TopicFactory = Callable[..., str]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        message = "Chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI must install it (.ci/run does)")
        pytest.skip(message)
    return found


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("playwright is not installed (it is in the dev extra)")
        pytest.skip("playwright is not installed")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1440, "height": 1000},
        )
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.js_errors = errors
            yield page
        finally:
            context.close()


def number(text: str) -> float | None:
    cleaned = text.replace(",", "").strip()
    return float(cleaned) if re.fullmatch(r"-?\d+(\.\d+)?", cleaned) else None


def test_dashboard_updates_live_in_chromium(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    dataset_path: Path,
    model_dir: Path,
    tmp_path: Path,
    browser_page: Any,
) -> None:
    page = browser_page
    raw, preds, dlq = topic_factory(3), topic_factory(3), topic_factory(1)
    settings = load_settings(**{"kafka.bootstrap_servers": kafka_bootstrap})
    run = start_scorer(
        settings,
        model_dir,
        raw=raw,
        preds=preds,
        dlq=dlq,
        group=f"g-dash-{uuid.uuid4().hex[:8]}",
        reports_dir=None,
        reasons=True,
    )
    state = DashboardState()
    follower = Follower(
        settings,
        FollowOptions(
            predictions_topic=preds, raw_topic=raw, deadletter_topic=dlq, from_beginning=True
        ),
        state,
    )
    scraper = MetricsScraper(state, metrics_url=f"{run.url}/metrics", interval_s=1.0)
    info = {
        "broker": kafka_bootstrap,
        "predictions_topic": preds,
        "raw_topic": raw,
        "deadletter_topic": dlq,
    }
    server = DashboardServer(create_app(state, refresh_ms=500, info=info), port=0).start()
    follower.start()
    scraper.start()
    pump = Pump(settings, raw, records(dataset_path), rate=RATE, total=EVENTS)
    try:
        assert follower.assigned.wait(30), "dashboard consumer got no partitions"
        assert run.loop.assigned.wait(30), "scorer got no partitions"
        page.goto(server.url)
        page.wait_for_function("document.getElementById('info').textContent.includes('broker')")
        assert page.title() == "churnstream · live"

        pump.start()
        send_raw(kafka_bootstrap, raw, bad_messages())
        # The numbers change by themselves while events flow.
        readings: list[float] = []
        for _ in range(6):
            time.sleep(1.0)
            value = number(page.inner_text("#kpi-predictions"))
            if value is not None:
                readings.append(value)
        assert len(set(readings)) >= 3, readings
        assert readings == sorted(readings) and readings[-1] > 0, readings
        wait_for(lambda: (number(page.inner_text("#kpi-throughput")) or 0) > 0, 10, "throughput")
        wait_for(lambda: number(page.inner_text("#kpi-lag")) is not None, 15, "lag from /metrics")
        time.sleep(2.0)  # a little more history on the time charts for the picture
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACT), full_page=True)

        pump.join(60)
        wait_for(
            lambda: number(page.inner_text("#kpi-predictions")) == EVENTS, 60, "all predictions"
        )
        wait_for(lambda: number(page.inner_text("#kpi-dead")) == len(bad_messages()), 20, "DLQ")
        charts = page.evaluate(
            """() => Object.fromEntries(
                ["chart-contract", "chart-internet", "chart-dead", "chart-latency",
                 "chart-throughput", "chart-churn"].map(id => [id, Chart.getChart(id).data]))"""
        )
        rows = page.locator("#top-risk tbody tr")
        assert rows.count() == 15
        first_probability = float(rows.nth(0).locator("td").nth(2).inner_text())
        assert 0.5 < first_probability <= 1.0
        # The scorer's churnstream.reasons header, as "feature=value, ..." per customer.
        reasons = [rows.nth(i).locator("td").nth(6).inner_text() for i in range(rows.count())]
        status = page.inner_text("#status")
        footer = page.inner_text("#footer")
    finally:
        pump.stop_event.set()
        follower.stop()
        scraper.stop()
        server.close()
        run.finish()

    assert not page.js_errors, page.js_errors
    contract_labels = charts["chart-contract"]["labels"]
    assert {label.split(" (")[0] for label in contract_labels} <= {
        "Month-to-month",
        "One year",
        "Two year",
    }
    assert len(contract_labels) == 3  # every prediction was joined with its input
    assert len(charts["chart-internet"]["labels"]) == 3
    assert charts["chart-dead"]["labels"] == ["validation_error"]
    assert charts["chart-dead"]["datasets"][0]["data"] == [4]
    assert all(v is not None and v > 0 for v in charts["chart-latency"]["datasets"][1]["data"])
    assert max(charts["chart-throughput"]["datasets"][0]["data"]) > RATE / 4
    assert status in ("live", "idle 10 s") or status.startswith("idle")
    assert "customers scored" in footer
    assert all(re.fullmatch(r"\w+=[^,]+(, \w+=[^,]+){0,2}", text) for text in reasons), reasons
    assert ARTIFACT.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACT, DOCS_SCREENSHOT)
