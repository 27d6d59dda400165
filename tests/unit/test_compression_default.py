"""The default codec is one every Kafka client reads with nothing extra installed."""

from __future__ import annotations

from churnstream.settings import Settings
from churnstream.settings.sections import ProducerSettings


def test_every_producer_config_defaults_to_gzip() -> None:
    # kafka-python (the replaced system's clients) reads gzip and uncompressed records
    # without codec libraries; lz4, snappy and zstd need libraries they do not install.
    assert ProducerSettings().compression == "gzip"
    settings = Settings()
    plain = settings.kafka.producer_config(settings.producer)
    transactional = settings.kafka.transactional_producer_config(settings.producer, "txn")
    assert plain["compression.type"] == transactional["compression.type"] == "gzip"
