from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from churnstream.exceptions import ConfigError
from churnstream.settings import Settings, load_settings, masked_dump, with_overrides

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_shipped_yaml_equals_builtin_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNSTREAM_CONFIG", str(REPO_ROOT / "config" / "churnstream.yaml"))
    from_yaml = Settings()
    monkeypatch.delenv("CHURNSTREAM_CONFIG")
    monkeypatch.chdir(REPO_ROOT.parent)  # no config/ here: built-in defaults only
    assert from_yaml == Settings()


def test_precedence_yaml_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "yaml:1", "client_id": "y"}}))
    monkeypatch.setenv("CHURNSTREAM_CONFIG", str(cfg))
    assert load_settings().kafka.bootstrap_servers == "yaml:1"
    monkeypatch.setenv("CHURNSTREAM_KAFKA__BOOTSTRAP_SERVERS", "env:2")
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "env:2"
    assert settings.kafka.client_id == "y"  # untouched yaml value survives the env layer
    flagged = load_settings(**{"kafka.bootstrap_servers": "flag:3", "consumer.group_id": None})
    assert flagged.kafka.bootstrap_servers == "flag:3"
    assert flagged.consumer.group_id == settings.consumer.group_id


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(Exception, match="frozen"):
        settings.kafka.bootstrap_servers = "x"  # type: ignore[misc]


def test_bad_override_is_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match="consumer.max_batch_records"):
        with_overrides(Settings(), {"consumer.max_batch_records": 0})
    with pytest.raises(ConfigError, match="unknown setting"):
        with_overrides(Settings(), {"kafka.nope": 1})


def test_bad_env_value_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNSTREAM_PRODUCER__COMPRESSION", "brotli")
    with pytest.raises(ConfigError, match="producer.compression"):
        load_settings()


def test_secrets_masked_and_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNSTREAM_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("CHURNSTREAM_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("CHURNSTREAM_KAFKA__SASL_USERNAME", "alice")
    monkeypatch.setenv("CHURNSTREAM_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    settings = load_settings()
    assert isinstance(settings.kafka.sasl_password, SecretStr)
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(masked_dump(settings))
    conf = settings.kafka.client_config()
    assert conf["sasl.password"] == "hunter2"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["security.protocol"] == "SASL_PLAINTEXT"
    # overrides keep the secret's value, not its mask
    again = with_overrides(settings, {"kafka.client_id": "other"})
    assert again.kafka.client_config()["sasl.password"] == "hunter2"


def test_consumer_config_commits_by_hand() -> None:
    settings = Settings()
    conf = settings.kafka.consumer_config(settings.consumer, "g")
    assert conf["enable.auto.commit"] is False
    assert conf["enable.auto.offset.store"] is False
    assert conf["session.timeout.ms"] == 6000
    prod = settings.kafka.producer_config(settings.producer)
    assert prod["enable.idempotence"] is True and prod["acks"] == "all"


def test_embedded_broker_detection() -> None:
    assert Settings().uses_embedded_broker
    other = with_overrides(Settings(), {"kafka.bootstrap_servers": "kafka.prod:9092"})
    assert not other.uses_embedded_broker
