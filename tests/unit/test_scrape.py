"""The one /metrics parser, read against what churnstream's own exporters expose."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from churnstream.observability import names
from churnstream.observability.metrics.drift import DriftObserver
from churnstream.observability.metrics.producer import ProducerMetrics
from churnstream.observability.metrics.scorer import PrometheusScorerObserver
from churnstream.observability.scrape import parse_metrics


def exported() -> tuple[PrometheusScorerObserver, CollectorRegistry]:
    registry = CollectorRegistry()
    observer = PrometheusScorerObserver(registry)
    ProducerMetrics(registry)
    DriftObserver(None, registry)
    return observer, registry


def test_every_name_is_exposed_by_the_exporters() -> None:
    """A metric renamed in the exporter but not in names.py (or the reverse) fails here."""
    _, registry = exported()
    page = parse_metrics(generate_latest(registry).decode())
    constants = {k: v for k, v in vars(names).items() if k.isupper()}
    assert len(constants) >= 25
    missing = sorted(v for v in constants.values() if not page.has(v))
    assert missing == []


def test_totals_sum_label_sets_and_tell_absent_from_zero() -> None:
    observer, registry = exported()
    observer.consumed.inc(120)
    observer.dead_letters.labels(error_type="validation_error").inc(7)
    observer.dead_letters.labels(error_type="inference_error").inc(3)
    observer.lag.labels(topic="raw", partition="0").set(5)
    observer.lag.labels(topic="raw", partition="1").set(4)
    page = parse_metrics(generate_latest(registry).decode())
    assert page.total(names.SCORER_CONSUMED) == 120
    assert page.total(names.SCORER_DEAD_LETTERS) == 10
    assert page.total(names.SCORER_LAG) == 9
    assert page.total(names.SCORER_DEAD_LETTER_CODES) == 0  # exposed, no label set yet
    assert page.total("churnstream_no_such_metric") is None
    lags = {
        (labels["topic"], labels["partition"]): v for labels, v in page.labelled(names.SCORER_LAG)
    }
    assert lags == {("raw", "0"): 5, ("raw", "1"): 4}


def test_label_values_are_unescaped() -> None:
    text = 'churnstream_model_info{version="a \\"b\\"\\\\c"} 1\n'
    [(labels, value)] = parse_metrics(text).labelled(names.MODEL_INFO)
    assert labels == {"version": 'a "b"\\c'} and value == 1


def test_an_empty_page_has_nothing_and_garbage_is_an_error() -> None:
    assert parse_metrics("").total(names.SCORER_CONSUMED) is None
    with pytest.raises(ValueError):
        parse_metrics("this is { not prometheus\n")
