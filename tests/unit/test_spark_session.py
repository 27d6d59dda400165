"""The SparkSession's options and the checks that turn a failed start into one line."""

from __future__ import annotations

import socket
from contextlib import closing
from pathlib import Path

import pytest

from churnstream.exceptions import SparkError
from churnstream.spark import session
from churnstream.spark.session import SparkOptions


def test_parse_conf_takes_repeated_pairs_last_wins() -> None:
    conf = session.parse_conf(["spark.a=1", "spark.b=x=y", "spark.a=2", "spark.c="])
    assert conf == {"spark.a": "2", "spark.b": "x=y", "spark.c": ""}


@pytest.mark.parametrize("bad", ["spark.a", "=1", ""])
def test_parse_conf_refuses_pairs_without_key_or_equals(bad: str) -> None:
    with pytest.raises(SparkError, match="KEY=VALUE"):
        session.parse_conf([bad])


def test_master_flag_then_spark_submit_then_env_then_local() -> None:
    assert session.resolve_master("spark://h:7077", {"MASTER": "yarn"}) == "spark://h:7077"
    assert session.resolve_master(None, {"PYSPARK_GATEWAY_PORT": "1", "MASTER": "yarn"}) is None
    assert session.resolve_master(None, {"MASTER": "yarn"}) == "yarn"
    assert session.resolve_master(None, {}) == "local[*]"


def test_defaults_bind_the_driver_locally_and_user_conf_wins() -> None:
    conf = session.session_conf(
        SparkOptions(master="local[2]", conf={"spark.ui.enabled": "true"}), env={}
    )
    assert conf["spark.ui.enabled"] == "true"
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"
    cluster = session.session_conf(SparkOptions(master="spark://10.1.2.3:7077"), env={})
    assert "spark.driver.host" not in cluster  # executors elsewhere must reach the driver
    assert cluster["spark.ui.enabled"] == "false"
    local_cluster = session.session_conf(SparkOptions(master="spark://127.0.0.1:7077"), env={})
    assert local_cluster["spark.driver.host"] == "127.0.0.1"


def test_no_java_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SparkError, match="no Java runtime found"):
        session.check_java({"PATH": str(tmp_path)})
    with pytest.raises(SparkError, match="JAVA_HOME=.* has no bin/java"):
        session.check_java({"JAVA_HOME": str(tmp_path), "PATH": ""})


def test_missing_jar_is_named(tmp_path: Path) -> None:
    present = tmp_path / "a.jar"
    present.touch()
    session.check_jars({"spark.jars": f"{present},https://repo/x.jar"})
    with pytest.raises(SparkError, match=r"spark.jars names .*missing\.jar"):
        session.check_jars({"spark.jars": f"{present},{tmp_path / 'missing.jar'}"})


def test_unreachable_master_fails_fast_in_one_line() -> None:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(SparkError, match=f"cannot reach the Spark master .*127.0.0.1:{port}"):
            session.check_master_reachable(f"spark://127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(SparkError, match="invalid Spark master URL"):
        session.check_master_reachable("spark://h:notaport")
    session.check_master_reachable("local[2]")  # nothing to reach


def test_reachable_master_passes() -> None:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        session.check_master_reachable(f"spark://127.0.0.1:{sock.getsockname()[1]}")
