"""``predict --engine spark`` refuses bad input in one line, before any JVM starts.

No Spark session here: every check below runs before one would (input layout and columns,
Java, the master, the jars); tests/integration/test_spark_predict.py runs real jobs.
"""

from __future__ import annotations

import socket
from contextlib import closing
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnstream.cli import app
from churnstream.exceptions import DataError
from churnstream.schemas import FEATURE_COLUMNS, ID_COLUMN
from churnstream.spark.predict import input_layout, output_format

pytest.importorskip("pyspark")
runner = CliRunner()
COLUMNS = [ID_COLUMN, *FEATURE_COLUMNS]


def one_line_failure(*args: str) -> str:
    result = runner.invoke(app, ["predict", "--engine", "spark", *args])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def write_csv(path: Path, columns: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(",".join(columns) + "\n")
    return path


def test_missing_input(tmp_path: Path) -> None:
    line = one_line_failure("-i", str(tmp_path / "nope"), "-o", str(tmp_path / "o.parquet"))
    assert "does not exist" in line


def test_missing_column_in_csv_and_parquet(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "a.csv", [c for c in COLUMNS if c != "tenure"])
    line = one_line_failure("-i", str(csv), "-o", str(tmp_path / "o.parquet"))
    assert "missing column 'tenure'" in line
    parts = tmp_path / "parts"
    parts.mkdir()
    pd.DataFrame({c: ["x"] for c in COLUMNS if c != "Contract"}).to_parquet(
        parts / "part-0.parquet"
    )
    line = one_line_failure("-i", str(parts), "-o", str(tmp_path / "o.parquet"))
    assert "missing column 'Contract'" in line


def test_unreadable_or_unknown_input(tmp_path: Path) -> None:
    corrupt = tmp_path / "bad.parquet"
    corrupt.write_bytes(b"not parquet at all")
    assert "cannot read" in one_line_failure("-i", str(corrupt), "-o", str(tmp_path / "o.csv"))
    other = tmp_path / "a.json"
    other.write_text("{}")
    assert "must end in .csv or .parquet" in one_line_failure(
        "-i", str(other), "-o", str(tmp_path / "o.csv")
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no .csv or .parquet" in one_line_failure(
        "-i", str(empty), "-o", str(tmp_path / "o.csv")
    )


def test_unreachable_master(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "a.csv", COLUMNS)
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        line = one_line_failure(
            "--master", f"spark://127.0.0.1:{port}", "-i", str(csv), "-o", str(tmp_path / "o")
        )
    assert f"cannot reach the Spark master spark://127.0.0.1:{port}" in line


def test_no_jdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv = write_csv(tmp_path / "a.csv", COLUMNS)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    line = one_line_failure("-i", str(csv), "-o", str(tmp_path / "o.parquet"))
    assert "has no bin/java" in line and "JDK 17" in line
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "no Java runtime found" in one_line_failure(
        "-i", str(csv), "-o", str(tmp_path / "o.parquet")
    )


def test_missing_jar(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "a.csv", COLUMNS)
    line = one_line_failure(
        "--spark-conf", f"spark.jars={tmp_path / 'gone.jar'}", "-i", str(csv), "-o", "o.parquet"
    )
    assert "spark.jars names" in line and "gone.jar" in line


def test_spark_flags_need_the_spark_engine(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "a.csv", COLUMNS)
    result = runner.invoke(
        app, ["predict", "--master", "local[2]", "-i", str(csv), "-o", str(tmp_path / "o.csv")]
    )
    assert result.exit_code != 0
    assert "--master and --spark-conf need --engine spark" in result.output


def test_layout_of_partitioned_parts_and_output_format(tmp_path: Path) -> None:
    write_csv(tmp_path / "in" / "day=1" / "region=eu" / "part-0.csv", COLUMNS)
    write_csv(tmp_path / "in" / "_temporary" / "junk.parquet", ["x"])
    layout = input_layout(tmp_path / "in")
    assert (layout.format, layout.partition_columns) == ("csv", ("day", "region"))
    assert output_format(tmp_path / "out.parquet", layout) == "parquet"
    assert output_format(tmp_path / "out", layout) == "csv"
    write_csv(tmp_path / "in" / "day=2" / "region=us" / "part-0.parquet", COLUMNS)
    with pytest.raises(DataError, match="mixes"):
        input_layout(tmp_path / "in")
