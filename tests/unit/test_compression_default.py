"""The default codec is one every Kafka client reads with nothing extra installed."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from pydantic import ValidationError

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


def test_gzip_is_written_at_level_1_unless_set() -> None:
    # The level changes only the writer's CPU and the bytes on disk: a gzip reader reads
    # every level (the interop test reads the scorer's outputs with kafka-python).
    settings = Settings()
    plain = settings.kafka.producer_config(settings.producer)
    transactional = settings.kafka.transactional_producer_config(settings.producer, "txn")
    assert plain["compression.level"] == transactional["compression.level"] == 1

    zlib_default = ProducerSettings(gzip_level=6)
    assert settings.kafka.producer_config(zlib_default)["compression.level"] == 6


def test_the_gzip_level_is_left_out_for_other_codecs() -> None:
    settings = Settings()
    lz4 = ProducerSettings(compression="lz4")
    assert "compression.level" not in settings.kafka.producer_config(lz4)


def test_a_gzip_level_outside_zlibs_range_is_refused() -> None:
    for level in (-1, 10):
        with pytest.raises(ValidationError, match="gzip_level"):
            ProducerSettings(gzip_level=level)


def test_librdkafka_accepts_the_default_producer_config() -> None:
    settings = Settings()
    conf = settings.kafka.producer_config(settings.producer)
    conf.pop("logger", None)
    Producer(conf).flush(0)  # raises KafkaException on a property librdkafka refuses
