"""The scorer's producer lingers (it flushes each batch anyway); the event producer does not."""

from __future__ import annotations

from churnstream.settings import Settings
from churnstream.settings.sections import ProducerSettings
from churnstream.streaming.publish import open_publisher
from tests.unit.test_recovery import OPTIONS


def test_the_event_producer_sends_at_once_and_the_scorer_lingers() -> None:
    settings = Settings()
    assert settings.kafka.producer_config(settings.producer)["linger.ms"] == 0
    assert settings.kafka.producer_config(settings.producer.for_scorer())["linger.ms"] == 5


def test_for_scorer_changes_the_linger_only() -> None:
    producer = ProducerSettings(linger_ms=1, scorer_linger_ms=7, gzip_level=3)
    scorer = producer.for_scorer()
    assert scorer.linger_ms == 7
    assert scorer.model_dump(exclude={"linger_ms"}) == producer.model_dump(exclude={"linger_ms"})


def test_the_scorers_publisher_is_built_with_the_scorer_linger() -> None:
    # No broker is needed: librdkafka connects lazily, and the config is what is checked.
    settings = Settings(producer=ProducerSettings(linger_ms=0, scorer_linger_ms=9))
    publisher = open_publisher(settings, OPTIONS)
    try:
        assert publisher.producer._config["linger.ms"] == 9
    finally:
        publisher.producer.flush(0)
