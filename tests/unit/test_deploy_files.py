"""The files for Docker/Prometheus/Grafana users stay true to the code, though CI runs none."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from churnstream.observability.runtime import instrument_producer, instrument_scorer
from churnstream.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def exported_names() -> set[str]:
    settings = Settings()
    names: set[str] = set()
    for registry in (
        instrument_scorer(settings, metadata=None).registry,
        instrument_producer(settings).registry,
    ):
        for family in registry.collect():
            names.update(sample.name for sample in family.samples)
            names.add(family.name)
    return names


def test_grafana_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads((REPO / "grafana-dashboard.json").read_text())
    queried = set(re.findall(r"churnstream_[a-z_]+", json.dumps(dashboard)))
    assert queried, "the dashboard queries nothing"
    exported = exported_names()
    # histograms and labelled counters may have no sample until observed: compare families
    families = {re.sub(r"_(bucket|count|sum|total)$", "", n) for n in exported}
    missing = {q for q in queried if re.sub(r"_(bucket|count|sum|total)$", "", q) not in families}
    assert not missing, f"dashboard queries unknown metrics: {sorted(missing)}"


def test_prometheus_scrapes_the_documented_ports() -> None:
    config = yaml.safe_load((REPO / "prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    }
    assert {t.rsplit(":", 1)[1] for t in targets} == {"9108", "9109"}
    readme = (REPO / "README.md").read_text()
    assert "--metrics-port 9108" in readme and "--metrics-port 9109" in readme


def test_compose_file_is_valid_yaml_with_redpanda() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert "redpanda" in compose["services"]
    assert "19092:19092" in compose["services"]["redpanda"]["ports"]
