"""The embedded broker's lifecycle, on real processes."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churnstream.cli.broker import app as broker_app
from churnstream.exceptions import BrokerError
from churnstream.kafka import admin, reader
from churnstream.ops import devbroker
from churnstream.settings import KafkaSettings
from churnstream.settings.sections import BrokerSettings, TopicSettings

SettingsFactory = Callable[..., BrokerSettings]

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def test_kafka_start_status_stop_restart_keeps_data(
    tmp_path: Path, produce: Callable[..., int], embedded_settings: SettingsFactory
) -> None:
    settings = embedded_settings("kafka", tmp_path / "state")
    kafka = KafkaSettings(bootstrap_servers=settings.bootstrap)
    try:
        first = devbroker.start(settings)
        assert first.running and first.answering and first.engine == "kafka"
        assert first.pid is not None and _alive(first.pid)
        assert first.start_s is not None and first.start_s < settings.start_timeout_s
        pid_file = json.loads((tmp_path / "state" / devbroker.PID_FILE).read_text())
        assert pid_file["engine"] == "kafka" and pid_file["port"] == settings.port
        assert pid_file["pid"] == first.pid and isinstance(pid_file["proc_start"], int)

        again = devbroker.start(settings)  # already running: same process, no error
        assert again.pid == first.pid and again.start_s is None
        current = devbroker.status(settings)
        assert current.running and current.answering and current.pid == first.pid
        assert current.log_file is not None and current.log_file.stat().st_size > 0

        topic = TopicSettings(name="restart-check", partitions=1)
        admin.create_topics(kafka, [topic])
        assert produce(settings.bootstrap, topic.name, [(b"k", b'{"n": 1}')]) == 1

        assert devbroker.stop(settings) is True
        assert not _alive(first.pid)
        assert not (tmp_path / "state" / devbroker.PID_FILE).exists()
        assert not devbroker.status(settings).running
        assert not devbroker.is_answering(settings.bootstrap, 0.5)
        assert devbroker.stop(settings) is False  # nothing left to stop

        second = devbroker.start(settings)
        assert second.pid != first.pid
        records = reader.dump_topic(kafka, topic.name, limit=10, idle_s=1.0)
        assert [(r["key"], r["value"]) for r in records] == [("k", {"n": 1})]
        # The broker's own log is written, at INFO and not DEBUG.
        log_text = (tmp_path / "state" / devbroker.LOG_FILE).read_text()
        assert "Kafka Server started" in log_text
        assert "] DEBUG " not in log_text
    finally:
        devbroker.stop(settings)


def test_port_taken_by_another_process_is_a_clear_error(
    tmp_path: Path, embedded_settings: SettingsFactory
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = embedded_settings("kafka", tmp_path / "state", port=port)
        started = time.monotonic()
        with pytest.raises(BrokerError, match=rf"127\.0\.0\.1:{port}.*another process"):
            devbroker.start(settings)
        assert time.monotonic() - started < 5
    assert not (tmp_path / "state" / devbroker.PID_FILE).exists()


def test_process_dying_during_start_reports_its_log(
    tmp_path: Path, embedded_settings: SettingsFactory
) -> None:
    settings = embedded_settings("kafka", tmp_path / "state", heap="1q")  # JVM refuses
    with pytest.raises(BrokerError) as info:
        devbroker.start(settings)
    message = str(info.value)
    assert "exited with code" in message
    assert "Invalid maximum heap size" in message  # the tail of the JVM's own output
    assert "\n" not in message
    assert not devbroker.status(settings).running


def test_cli_start_status_stop_on_tansu(tmp_path: Path, embedded_settings: SettingsFactory) -> None:
    settings = embedded_settings("tansu", tmp_path / "state")
    args = ["--state-dir", str(settings.state_dir), "--port", str(settings.port)]
    runner = CliRunner()
    try:
        result = runner.invoke(broker_app, ["start", "--engine", "tansu", *args])
        assert result.exit_code == 0, result.output
        assert "started in" in result.output and f"tansu at {settings.bootstrap}" in result.output

        result = runner.invoke(broker_app, ["start", "--engine", "tansu", *args])
        assert result.exit_code == 0 and "already running" in result.output

        result = runner.invoke(broker_app, ["status", "--json", *args])
        assert result.exit_code == 0, result.output
        status = json.loads(result.output)
        assert status["running"] and status["answering"] and status["engine"] == "tansu"
        assert status["bootstrap"] == settings.bootstrap and _alive(status["pid"])
        assert status["log_file"] == str(settings.state_dir / devbroker.LOG_FILE)

        result = runner.invoke(broker_app, ["stop", *args])
        assert result.exit_code == 0 and "broker stopped" in result.output
        assert not _alive(status["pid"])
        result = runner.invoke(broker_app, ["status", *args])
        assert result.exit_code == 0 and "not running" in result.output
    finally:
        devbroker.stop(settings)


def test_ensure_running_uses_a_broker_that_already_answers(
    tmp_path: Path, kafka_bootstrap: str, embedded_settings: SettingsFactory
) -> None:
    if "," in kafka_bootstrap:
        pytest.skip("needs a single bootstrap server")
    host, port = kafka_bootstrap.rsplit(":", 1)
    settings = embedded_settings("kafka", tmp_path / "other", host=host, port=int(port))
    status = devbroker.ensure_running(settings)
    assert status.answering and not status.running and status.pid is None
    assert not (tmp_path / "other" / devbroker.PID_FILE).exists()
